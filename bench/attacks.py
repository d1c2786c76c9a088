"""What one hostile client costs everyone else (issue 12): the worst acknowledgement latency of a
well-behaved client (bench/paced_client.py, open loop, 100 single events/s) while each attack
runs against a fresh service.

    python bench/attacks.py [--seconds 8]

Prints `attack_<name>_max_ms` and `attack_<name>_p99_ms` lines. Run the same file from another
checkout (copy it there) to measure that checkout's code: the service is started from the
repository this file sits in.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402

HEADERS = {"Authorization": f"Bearer {servers.TOKEN}", "Content-Type": "application/json"}


def _gzip_bomb(client: httpx.Client, stop: threading.Event) -> None:
    body = gzip.compress(b"[" + b",".join([b'{"type":"x"}'] * 600_000) + b"]", 9)
    while not stop.is_set():
        client.post("/v1/events", content=body, headers={**HEADERS, "Content-Encoding": "gzip"})


def _orphan_ends(client: httpx.Client, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        ts = time.time_ns() // 1_000_000
        body = [{"type": "tool.execution.completed", "gatewayId": "gw-x", "sessionKey": "orphans",
                 "toolName": "exec", "toolCallId": f"c{n + i}", "ts": ts} for i in range(2_000)]
        n += 2_000
        client.post("/v1/events", json=body, headers=HEADERS)


def _many_runs(client: httpx.Client, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        ts = time.time_ns() // 1_000_000
        body = [{"type": "run.started", "gatewayId": "gw-x", "sessionKey": "one", "runId": f"r{n + i}", "ts": ts}
                for i in range(1_000)]
        n += 1_000
        client.post("/v1/events", json=body, headers=HEADERS)


def _gateway_flood(client: httpx.Client, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        body = [{"type": "unknown.type", "gatewayId": f"junk-{n + i}"} for i in range(1_000)]
        n += 1_000
        client.post("/v1/events", json=body, headers=HEADERS)


def _max_batches(client: httpx.Client, stop: threading.Event) -> None:
    """Bodies at the event limit (10,000): the decode of each is ~30 ms of work."""
    body = json.dumps([{"type": "unknown.type", "gatewayId": "gw-x", "seq": i} for i in range(10_000)])
    while not stop.is_set():
        client.post("/v1/events", content=body, headers=HEADERS)


def _bad_batches(client: httpx.Client, stop: threading.Event) -> None:
    """Bodies at the event limit, every event invalid: each one takes the slow, naming path."""
    body = json.dumps([{"type": "run.started", "sessionKey": "k", "ts": "yesterday"}] * 10_000)
    while not stop.is_set():
        client.post("/v1/events", content=body, headers=HEADERS)


ATTACKS: dict[str, Callable[[httpx.Client, threading.Event], None]] = {
    "gzip_bomb": _gzip_bomb,
    "orphan_ends": _orphan_ends,
    "many_runs": _many_runs,
    "gateway_flood": _gateway_flood,
    "max_batches": _max_batches,
    "bad_batches": _bad_batches,
}


def measure(name: str, attack: Callable[[httpx.Client, threading.Event], None], seconds: float) -> dict:
    with servers.uvicorn("app.main:app") as service:
        stop = threading.Event()

        def attacker() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{service.port}", timeout=120) as client:
                try:
                    attack(client, stop)
                except httpx.HTTPError:
                    pass

        thread = threading.Thread(target=attacker, daemon=True)
        thread.start()
        paced = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "paced_client.py"), str(service.port), "100", str(seconds),
             f"atk-{name}", servers.TOKEN, "4"],
            capture_output=True, text=True, timeout=seconds + 300,
        )
        stop.set()
        thread.join(120)
    if paced.returncode != 0:  # the client gave up: the service did not answer within a minute
        return {"requests": 0, "failures": -1, "p50_ms": float("inf"), "p99_ms": float("inf"),
                "max_ms": float("inf")}
    return json.loads(paced.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", help="comma-separated attack names (default: all)")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(ATTACKS)
    for name in chosen:
        attack = ATTACKS[name]
        result = measure(name, attack, args.seconds)
        servers.log(f"{name}: {result['requests']} requests, {result['failures']} failures, "
                    f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
        print(f"attack_{name}_p99_ms {result['p99_ms']:.1f} ms", flush=True)
        print(f"attack_{name}_max_ms {result['max_ms']:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
