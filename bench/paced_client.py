"""Open-loop client at a fixed rate, in its own process: single-event POSTs for p99_ingest_ms,
or bodies of BATCH events (bench/stall.py's steady batched ingest).

    python bench/paced_client.py PORT RATE SECONDS PREFIX TOKEN [CONNECTIONS] [BATCH]

Request i is due at start + i/RATE whatever happened to the ones before it; its latency is
measured from that due time to the end of its response (so a stalled server is charged for the
requests queued behind it: no coordinated omission). With BATCH, every request is a JSON array
of BATCH events of bench/workload.py's stream. Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import body  # noqa: E402


async def _connection(port: int, token: str, queue: asyncio.Queue, latencies: list[float],
                      failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n"
    ).encode()
    while True:
        item = await queue.get()
        if item is None:
            writer.close()
            return
        due, payload = item
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        latencies.append(time.perf_counter() - due)
        if not status_line.startswith(b"HTTP/1.1 2"):
            failures.append(1)


async def main(port: int, rate: float, seconds: float, prefix: str, token: str, connections: int,
               batch: int = 1) -> dict:
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
                              int(args[5]) if len(args) > 5 else 32, int(args[6]) if len(args) > 6 else 1))
    print(json.dumps(result))
