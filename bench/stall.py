"""The event loop's worst stall under steady batched ingest with a million sessions (`--parts stall`).

A real uvicorn process (bench/servers.py's flags) serves `bench.stall_app:app`: the service
itself plus the 1 ms loop probe of bench/inprocess.py, readable at `GET /bench/stall` (the
service exposes no probe of its own). It is filled with SESSIONS idle sessions (bench/
ack_latency.py's fill: one `session.state` each, every event with an eventId, so the dedupe
window fills too), warmed up under wrk for WARM_S (spanning a checkpoint after the fill, so the
store has been frozen out of the cyclic GC as in a long-running service), then measured for
60 s (`--quick`: 15 s) of steady batched ingest: bench/paced_client.py posts BATCH_RATE
bodies of 100 events a second, open loop (20,000 events/s, about half of what one worker
takes here; bench/workload.py's stream over 20,000 other session keys), and
bench/paced_client.py sends 200 single events/s beside it. Checkpoints every 10 s, so every
window holds some. GC as the service has it (no gc.disable).

Not the figure, logged for context: the same probe during the fill and the warm-up, and during
SATURATED_S of wrk at saturation (32 connections, closed loop) after the window — there the
probe waits behind every ready request of a loop iteration, so its lateness is queueing that
grows with the connection count, not a stall of one piece of work.

- `loop_stall_1m_ms`: the probe's worst lateness on the loop thread's CPU clock over the window
  (as `scan_max_stall_ms`: a time slice the OS gave wrk is not a stall of this loop); the
  wall-clock worst is logged beside it. Goal <= 20 ms.
- `ack_p99_checkpoint_ms` (only when the `ack` part did not run): the paced client's p99 over
  the same window, checkpoints included.

On stderr: the 5 worst wake-ups by each clock, when they happened (seconds into the window)
and how long the cyclic GC ran inside each, and the window's GC counts per generation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench import servers
from bench.ack_latency import _fill, _paced
from bench.servers import ROOT, log

SESSIONS = 1_000_000
CHECKPOINT_MS = 10_000
WARM_S = 15
BATCH_RATE = 200  # bodies of BATCH events a second in the window
SATURATED_S = 10
BATCH = 100
LOAD_SESSIONS = 20_000


def _paced_batches(port: int, seconds: float, prefix: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "paced_client.py"), str(port), str(BATCH_RATE), str(seconds),
         prefix, servers.TOKEN, "8", str(BATCH)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout
    return json.loads(out)


def _report(port: int, reset: bool) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{port}/bench/stall" + ("?reset=1" if reset else ""), timeout=30).json()


def _describe(name: str, report: dict[str, Any]) -> None:
    log(f"stall {name}: {report['wakes']} probe wake-ups in {report['window_s']:.1f} s; "
        f"wake-ups > 10 / > 20 ms: CPU clock {report['over']['cpu_10']} / {report['over']['cpu_20']}, "
        f"wall clock {report['over']['wall_10']} / {report['over']['wall_20']}; GC collections gen0/1/2 "
        f"{'/'.join(str(c) for c in report['gc_count'])}, total "
        f"{'/'.join(f'{ms:.0f}' for ms in report['gc_ms'])} ms, longest "
        f"{'/'.join(f'{ms:.1f}' for ms in report['gc_max_ms'])} ms; {report['gc_frozen']} objects frozen")
    start = report["window_started_s"]
    for clock, other in (("cpu", "wall"), ("wall", "cpu")):
        for n, row in enumerate(report[f"top_{clock}"], 1):
            if clock == "wall" and any(row["at_s"] == r["at_s"] for r in report["top_cpu"]):
                continue  # already listed by the CPU clock
            gc_part = (f"GC gen{row['gc_generation']} ran {row['gc_ms']:.1f} ms inside it" if row["gc_generation"] >= 0
                       else "no GC collection inside it")
            log(f"  worst by {clock} clock #{n}: {row[f'{clock}_ms']:.2f} ms ({other} {row[f'{other}_ms']:.2f} ms) "
                f"at +{row['at_s'] - start:.2f} s "
                f"({time.strftime('%H:%M:%S', time.gmtime(row['at_unix']))}.{int(row['at_unix'] % 1 * 1000):03d} UTC), "
                f"{gc_part}" + (f"; loop stack while late: {row['seen']}" if row.get("seen") else ""))


def run(sessions: int, seconds: float, figures: dict[str, float]) -> None:
    tag = f"l{int(time.time())}"
    env = {
        "OPENCLAW_DIAG_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_MS),
        "OPENCLAW_DIAG_MAX_SESSIONS": str(2 * sessions + 100_000),
    }
    log("stall: a real uvicorn process (bench.stall_app:app = the service + the 1 ms loop probe), "
        "load over HTTP from wrk and the paced client")
    with servers.uvicorn("bench.stall_app:app", env) as service:
        fill_s = _fill(service.port, sessions, tag)
        log(f"stall: {sessions} sessions filled in {fill_s:.1f} s ({sessions / fill_s:.0f} events/s)")
        servers.wrk(service.url, WARM_S, f"{tag}-warm", BATCH, LOAD_SESSIONS)
        _describe("fill + warm-up (not the figure)", _report(service.port, reset=True))
        with ThreadPoolExecutor(max_workers=1) as pool:
            paced = pool.submit(_paced, service.port, seconds, f"{tag}-p")
            batches = _paced_batches(service.port, seconds, f"{tag}-b")
            acks = paced.result()
        report = _report(service.port, reset=True)
        tracked = httpx.get(f"http://127.0.0.1:{service.port}/readyz").json()["sessions"]
        saturated = servers.wrk(service.url, SATURATED_S, f"{tag}-sat", BATCH, LOAD_SESSIONS)
        saturated_report = _report(service.port, reset=False)
    log(f"stall window: {batches['requests']} batches of {BATCH} events at {BATCH_RATE}/s "
        f"({batches['failures']} failures; batch latency p50 {batches['p50_ms']:.1f} ms, p99 {batches['p99_ms']:.1f} ms, "
        f"max {batches['max_ms']:.1f} ms), {tracked} sessions tracked at the end; paced singles 200/s: "
        f"{acks['requests']} requests, {acks['failures']} failures, p50 {acks['p50_ms']:.1f} ms, "
        f"p99 {acks['p99_ms']:.1f} ms, max {acks['max_ms']:.1f} ms")
    _describe("window (the figure)", report)
    log(f"stall at saturation (not the figure): wrk -c32 {saturated.ok_per_s * BATCH:.0f} events/s over "
        f"{saturated.seconds:.1f} s, {saturated.errors} errors")
    _describe("saturated (not the figure)", saturated_report)
    figures["loop_stall_1m_ms"] = report["top_cpu"][0]["cpu_ms"] if report["top_cpu"] else 0.0
    if "ack_p99_checkpoint_ms" not in figures:
        figures["ack_p99_checkpoint_ms"] = acks["p99_ms"]
        log("stall: ack_p99_checkpoint_ms is the paced client's p99 in this window (the ack part did not run)")
