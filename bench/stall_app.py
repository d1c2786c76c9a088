"""The service as `app.main:app` serves it, plus the bench's loop-stall probe (bench/stall.py).

    uvicorn bench.stall_app:app   # same flags as the service (bench/servers.py)

The probe is the one of bench/inprocess.py (`_probe`): a task sleeping 1 ms in a loop that
measures how late it wakes, on the wall clock and on the loop thread's CPU clock
(`time.thread_time`: the loop's own work while the probe was due). Here it also keeps the 5
worst wake-ups by each clock, with when they happened and how long the cyclic GC ran inside
them (gc.callbacks: collections on any thread hold the GIL), and a count per generation.
A watchdog thread looks every 2 ms whether the probe is more than 10 ms overdue and, if so,
samples the loop thread's Python stack (`sys._current_frames`): each of the worst wake-ups
carries the places most often seen while it was late (the innermost frame, and the innermost
frames of the project's own code).
`GET /bench/stall` answers what it has (JSON); `?reset=1` starts a new window afterwards. Every
other request, and the lifespan, go to the service untouched.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

from app.main import create_app

INTERVAL_S = 0.001
TOP = 5
WATCH_EVERY_S = 0.002
OVERDUE_S = 0.010
MAX_SAMPLES = 50
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _where(frame: Any) -> str:
    """The innermost frame, then up to 3 of the project's own (app/, telemetry/), innermost first."""
    if frame is None:
        return "?"
    inner = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"
    own = []
    while frame is not None and len(own) < 3:
        path = frame.f_code.co_filename
        if path.startswith(_ROOT) and "/bench/" not in path:
            own.append(f"{os.path.relpath(path, _ROOT)}:{frame.f_code.co_name}:{frame.f_lineno}")
        frame = frame.f_back
    return inner + " | " + " < ".join(own)

_service_app = create_app()


class Probe:
    def __init__(self) -> None:
        self.origin = time.time()
        self.origin_perf = time.perf_counter()
        self._gc_started = 0.0
        self._gc_in_sleep = 0.0  # GC seconds since the probe last went to sleep
        self._gc_gen_in_sleep = -1
        self._sleep_started = time.perf_counter()
        self._samples: list[str] = []
        self.loop_thread = threading.get_ident()
        self.reset()

    def watch(self) -> None:
        """Watchdog thread: sample the loop thread's stack while the probe is overdue."""
        while True:
            time.sleep(WATCH_EVERY_S)
            samples = self._samples
            if time.perf_counter() - self._sleep_started > OVERDUE_S and len(samples) < MAX_SAMPLES:
                samples.append(_where(sys._current_frames().get(self.loop_thread)))

    def reset(self) -> None:
        self.window_started = time.perf_counter()
        self.wakes = 0
        self.top_cpu: list[tuple[float, float, float, float, int, str]] = []
        self.top_wall: list[tuple[float, float, float, float, int, str]] = []
        self.over_ms = {"cpu_10": 0, "cpu_20": 0, "wall_10": 0, "wall_20": 0}
        self.gc_count = [0, 0, 0]
        self.gc_s = [0.0, 0.0, 0.0]
        self.gc_max_s = [0.0, 0.0, 0.0]

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
            return
        took = now - self._gc_started
        gen = info.get("generation", 2)
        self.gc_count[gen] += 1
        self.gc_s[gen] += took
        self.gc_max_s[gen] = max(self.gc_max_s[gen], took)
        self._gc_in_sleep += took
        self._gc_gen_in_sleep = max(self._gc_gen_in_sleep, gen)

    async def run(self) -> None:
        while True:
            wall, cpu = time.perf_counter(), time.thread_time()
            self._gc_in_sleep, self._gc_gen_in_sleep = 0.0, -1
            self._samples = samples = []
            self._sleep_started = wall
            await asyncio.sleep(INTERVAL_S)
            late_wall = time.perf_counter() - wall - INTERVAL_S
            late_cpu = time.thread_time() - cpu - INTERVAL_S
            self.wakes += 1
            self._sleep_started = float("inf")  # awake: the watchdog stops sampling
            seen = "; ".join(f"{n}x {where}" for where, n in Counter(samples).most_common(2)) if samples else ""
            entry_cpu = (late_cpu, late_wall, wall - self.origin_perf, self._gc_in_sleep, self._gc_gen_in_sleep, seen)
            entry_wall = (late_wall, late_cpu, wall - self.origin_perf, self._gc_in_sleep, self._gc_gen_in_sleep, seen)
            for heap, entry in ((self.top_cpu, entry_cpu), (self.top_wall, entry_wall)):
                if len(heap) < TOP:
                    heapq.heappush(heap, entry)
                elif entry[0] > heap[0][0]:
                    heapq.heapreplace(heap, entry)
            for clock, late in (("cpu", late_cpu), ("wall", late_wall)):
                if late > 0.010:
                    self.over_ms[f"{clock}_10"] += 1
                if late > 0.020:
                    self.over_ms[f"{clock}_20"] += 1

    def report(self) -> dict[str, Any]:
        def rows(heap: list[tuple[float, float, float, float, int, str]], first: str, second: str) -> list[dict[str, Any]]:
            return [{f"{first}_ms": a * 1000, f"{second}_ms": b * 1000, "at_s": at,
                     "at_unix": self.origin + at, "gc_ms": g * 1000, "gc_generation": gen, "seen": seen}
                    for a, b, at, g, gen, seen in sorted(heap, reverse=True)]

        return {
            "window_s": time.perf_counter() - self.window_started,
            "window_started_s": self.window_started - self.origin_perf,
            "wakes": self.wakes,
            "top_cpu": rows(self.top_cpu, "cpu", "wall"),
            "top_wall": rows(self.top_wall, "wall", "cpu"),
            "over": self.over_ms,
            "gc_count": self.gc_count,
            "gc_ms": [s * 1000 for s in self.gc_s],
            "gc_max_ms": [s * 1000 for s in self.gc_max_s],
            "gc_frozen": gc.get_freeze_count(),
        }


probe = Probe()
_task: asyncio.Task[None] | None = None


async def _answer(send: Any, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _task
    if scope["type"] == "lifespan" and _task is None:
        gc.callbacks.append(probe.on_gc)
        probe.loop_thread = threading.get_ident()
        threading.Thread(target=probe.watch, name="bench-stall-watchdog", daemon=True).start()
        _task = asyncio.get_running_loop().create_task(probe.run(), name="bench-stall-probe")
    if scope["type"] == "http" and scope["path"] == "/bench/stall":
        report = probe.report()
        if b"reset=1" in scope.get("query_string", b""):
            probe.reset()
        await _answer(send, report)
        return
    await _service_app(scope, receive, send)
