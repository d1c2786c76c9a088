"""Open-loop batched ingest at a fixed rate, for the `stall` part (bench/stall.py).

    python bench/paced_batches.py PORT RATE SECONDS PREFIX TOKEN [CONNECTIONS] [BATCH]

bench/paced_client.py's schedule and connections (request i due at start + i/RATE, latency
from that due time), but every request a JSON array of BATCH events of bench/workload.py's
stream (20,000 session keys). Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.paced_client import _connection  # noqa: E402
from bench.workload import body  # noqa: E402


async def main(port: int, rate: float, seconds: float, prefix: str, token: str, connections: int,
               batch: int) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    failures: list[int] = []
    workers = [asyncio.create_task(_connection(port, token, queue, latencies, failures))
               for _ in range(connections)]
    total = int(rate * seconds)
    interval = 1.0 / rate
    start = time.perf_counter() + 0.05
    sent = 0
    while sent < total:
        now = time.perf_counter()
        while sent < total and start + sent * interval <= now:
            queue.put_nowait((start + sent * interval, body(sent * batch, batch, prefix)))
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=seconds + 60)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "requests": len(ordered), "failures": len(failures), "rate": rate, "events": len(ordered) * batch,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main(int(args[0]), float(args[1]), float(args[2]), args[3], args[4],
                              int(args[5]) if len(args) > 5 else 8, int(args[6]) if len(args) > 6 else 100))
    print(json.dumps(result))
