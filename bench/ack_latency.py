"""Acknowledgement latency while the journal does its heaviest work (docs/durability.md).

A real service is filled with SESSIONS idle sessions (one `session.state` idle each, in bodies
of 1,000 events); then the paced single-event client (bench/paced_client.py, open loop: a stall is
charged to every request queued behind it) measures the p99 time to a 202 over two windows:

- `p99_ack_checkpoint_ms`: spanning the first checkpoint after the fill, which writes every one
  of those sessions;
- `p99_ack_eviction_ms`: spanning the eviction wave when they all pass their idle TTL at once,
  and the checkpoint that deletes them.

Goal (issue 11): <= 250 ms each, with 1M sessions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx

from bench import servers
from bench.servers import ROOT, log

FILL_BODY = 1_000
RATE = 200  # single-event requests/s during the windows
CHECKPOINT_MS = 10_000
SCAN_MS = 1_000


def _paced(port: int, seconds: float, prefix: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "paced_client.py"), str(port), str(RATE), str(seconds),
         prefix, servers.TOKEN, "8"],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout
    return json.loads(out)


def _fill(port: int, sessions: int, tag: str) -> float:
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {servers.TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
        for start in range(0, sessions, FILL_BODY):
            ts = time.time_ns() // 1_000_000
            body = "[" + ",".join(
                f'{{"type":"session.state","gatewayId":"gw-{n % 8}","sessionKey":"fill:{tag}:{n}",'
                f'"state":"idle","queueDepth":0,"eventId":"{tag}-{n}","ts":{ts}}}'
                for n in range(start, min(sessions, start + FILL_BODY))
            ) + "]"
            response = client.post("/v1/events", content=body)
            if response.status_code != 202:
                raise RuntimeError(f"fill answered {response.status_code}: {response.text[:200]}")
    return time.monotonic() - started


def run(sessions: int, figures: dict[str, float]) -> None:
    tag = f"a{int(time.time())}"
    fill_estimate_s = sessions / 20_000
    ttl_ms = int((fill_estimate_s + 25) * 1000)
    env = {
        "OPENCLAW_DIAG_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_MS),
        "OPENCLAW_DIAG_SCAN_INTERVAL_MS": str(SCAN_MS),
        "OPENCLAW_DIAG_SESSION_IDLE_TTL_MS": str(ttl_ms),
        "OPENCLAW_DIAG_MAX_SESSIONS": str(sessions * 2),
    }
    with servers.uvicorn("app.main:app", env) as service:
        fill_started = time.monotonic()
        fill_s = _fill(service.port, sessions, tag)
        log(f"ack: {sessions} sessions filled in {fill_s:.1f} s ({sessions / fill_s:.0f} events/s)")
        # a window of two checkpoint intervals always holds the checkpoint that writes them all
        during_checkpoint = _paced(service.port, 2 * CHECKPOINT_MS / 1000, f"{tag}-c")
        wave_at = fill_started + ttl_ms / 1000
        time.sleep(max(0.0, wave_at - time.monotonic()))
        # the wave: EVICTIONS_PER_TICK per scan, then the checkpoint that deletes the rows
        wave_s = sessions / 50_000 * SCAN_MS / 1000 + CHECKPOINT_MS / 1000 + 5
        during_eviction = _paced(service.port, wave_s, f"{tag}-e")
        left = httpx.get(f"http://127.0.0.1:{service.port}/readyz").json()["sessions"]
    for name, result in (("checkpoint", during_checkpoint), ("eviction", during_eviction)):
        log(f"ack during the {name}: {result['requests']} requests, {result['failures']} failures, "
            f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
        figures[f"p99_ack_{name}_ms"] = result["p99_ms"]
    log(f"ack: {left} sessions left after the eviction wave (the paced client's own among them)")
    figures["ack_sessions"] = sessions
