"""The in-process benches: one monitor pass (scan) and resident bytes per session (memory).

Both build a real `app.store.Store` through `Store.apply_event`, the same path the ingest route
takes. The monitor runs with null objects for its collaborators (journal, recovery, recorder):
legitimate implementations of their protocols that do nothing, so what is timed is the pass.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app import monitor as monitor_module
from app.clock import ManualClock
from app.decoding import decode_json
from app.events import Event
from app.journal import NullJournal
from app.monitor import Monitor, MonitorConfig
from app.store import Session, Store
from telemetry.record import Recorder

GATEWAYS = 8
WARN_MS = 120_000
ABORT_MS = 300_000
SCAN_INTERVAL_MS = 5_000
MAX_CANDIDATE_AGE_MS = 600_000  # candidate activity ages spread over 0..10 min (warn: 2 min)
TOOL_SHARE = 0.3  # candidates with a tool call open beside the model call
PROBE_PASSES = 3


# -- null collaborators --------------------------------------------------------------------------

class NullRecovery:
    """RecoveryRequester that only counts requests."""

    def __init__(self) -> None:
        self.requests = 0

    def request(self, session: Session, request: dict[str, Any]) -> None:
        self.requests += 1


# -- building stores --------------------------------------------------------------------------

def _gateway(i: int) -> str:
    return f"gw-{i % GATEWAYS}"


def add_idle(store: Store, count: int, start_ts: int, end_ts: int, tag: str = "idle") -> None:
    """`count` idle sessions (one session.state idle event each), times ascending in [start, end)."""
    step = max(1, (end_ts - start_ts) // max(1, count))
    for i in range(count):
        ts = start_ts + i * step
        store.apply_event(Event(
            type="session.state", ts=ts, gatewayId=_gateway(i), state="idle", prevState="processing",
            sessionKey=f"agent:main:{tag}-{i}", sessionId=f"sid-{tag}-{i}", queueDepth=0,
        ), ts)


def add_candidates(store: Store, count: int, now: int, seed: int = 6) -> None:
    """`count` processing sessions, each with a model call open and 30% also a tool call.

    Their last activity is spread over the last 10 minutes (warn is 2): most are past warn and
    get classified (long_running or stalled), the rest take the monitor's fresh-session path.
    """
    rng = random.Random(seed)
    ages = sorted((rng.randrange(MAX_CANDIDATE_AGE_MS) for _ in range(count)), reverse=True)
    for i, age in enumerate(ages):
        ts = now - age
        key, sid, gw, run = f"agent:main:busy-{i}", f"sid-busy-{i}", _gateway(i), f"run-busy-{i}"
        apply = store.apply_event
        apply(Event(type="message.queued", ts=ts, gatewayId=gw, sessionKey=key, sessionId=sid,
                    source="telegram", queueDepth=1), ts)
        apply(Event(type="session.state", ts=ts, gatewayId=gw, sessionKey=key, sessionId=sid,
                    state="processing", prevState="idle", queueDepth=1), ts)
        apply(Event(type="model.call.started", ts=ts, gatewayId=gw, sessionKey=key, sessionId=sid,
                    runId=run, provider="anthropic", model="claude-sonnet-4"), ts)
        if rng.random() < TOOL_SHARE:
            apply(Event(type="tool.execution.started", ts=ts, gatewayId=gw, sessionKey=key, sessionId=sid,
                        runId=run, toolName="exec", toolCallId=f"call-{i}"), ts)


# -- scan ---------------------------------------------------------------------------------------

@dataclass
class ScanResult:
    candidates: int
    tracked: int
    first_cpu_s: float  # the first pass: every classification is new
    cpu_s: float  # a steady-state pass (the figure)
    baseline_cpu_s: float
    max_stall_ms: float  # worst loop-CPU lateness of the probe over the probe passes
    wall_stalls_ms: list[float]  # each probe pass's worst wall-clock lateness
    recoveries: int


def _monitor(store: Store, clock: ManualClock, recovery: NullRecovery) -> Monitor:
    config = MonitorConfig(warn_ms=WARN_MS, abort_ms=ABORT_MS, scan_interval_ms=SCAN_INTERVAL_MS,
                           max_sessions=max(1_000_000, store.session_count))
    return Monitor(store, config, clock=clock, journal=NullJournal(store), recovery=recovery, recorder=Recorder())


async def _cpu(run: Callable[[], Any]) -> float:
    started = time.process_time()
    await run()
    return time.process_time() - started


# The pass's own yield policy, whichever the monitor has: by time (SCAN_SLICE_S, checked every
# SCAN_CHECK_EVERY sessions) or by count (SCAN_CHUNK).
_SLICE_S: float | None = getattr(monitor_module, "SCAN_SLICE_S", None)
_CHECK_EVERY: int = getattr(monitor_module, "SCAN_CHECK_EVERY", 64)
_CHUNK: int = getattr(monitor_module, "SCAN_CHUNK", 1_000)


async def _baseline_pass(store: Store) -> None:
    """The same sessions iterated the way a pass does, with no classification."""
    if _SLICE_S is None:
        for visited, session in enumerate(store.considered(), 1):
            if visited % _CHUNK == 0:
                await asyncio.sleep(0)
            if not store.is_considered(session):
                continue
            store.gateway_info(session.gateway)
        return
    slice_ends = time.perf_counter() + _SLICE_S
    for visited, session in enumerate(store.considered(), 1):
        if visited % _CHECK_EVERY == 0 and time.perf_counter() > slice_ends:
            await asyncio.sleep(0)
            slice_ends = time.perf_counter() + _SLICE_S
        if not store.is_considered(session):
            continue
        store.gateway_info(session.gateway)


async def _probe(stop: asyncio.Event, worst: list[float], interval: float = 0.001) -> None:
    """Measures its own wake-up lateness: how long the loop was kept from it.

    worst[0]: on the wall clock; worst[1]: on the loop thread's CPU clock, i.e. the loop's own
    work that ran while the probe was due (a timeslice the OS gave another process is not a
    stall of this loop, and on a shared 2-core machine it dominates the wall-clock figure).
    """
    while not stop.is_set():
        wall, cpu = time.perf_counter(), time.thread_time()
        await asyncio.sleep(interval)
        worst[0] = max(worst[0], time.perf_counter() - wall - interval)
        worst[1] = max(worst[1], time.thread_time() - cpu - interval)


async def scan_store(store: Store, now: int) -> ScanResult:
    clock = ManualClock(now)
    recovery = NullRecovery()
    monitor = _monitor(store, clock, recovery)
    gc.collect()
    first = await _cpu(lambda: monitor.tick(now))
    clock.now = now + SCAN_INTERVAL_MS
    steady = await _cpu(lambda: monitor.tick(clock.now))
    baseline = await _cpu(lambda: _baseline_pass(store))
    # The stall probe runs during passes of its own (its wake-ups are not charged to the CPU
    # figure); the figure is the worst CPU-clock lateness over PROBE_PASSES passes.
    stalls, wall_stalls = [], []
    for _ in range(PROBE_PASSES):
        stop = asyncio.Event()
        worst = [0.0, 0.0]
        probe = asyncio.create_task(_probe(stop, worst))
        await asyncio.sleep(0.01)
        clock.now += SCAN_INTERVAL_MS
        await monitor.tick(clock.now)
        stop.set()
        await probe
        wall_stalls.append(worst[0] * 1000)
        stalls.append(worst[1] * 1000)
    return ScanResult(store.considered_count, store.session_count, first, steady, baseline,
                      max(stalls), wall_stalls, recovery.requests)


def build_scan_store(candidates: int, tracked: int, now: int) -> Store:
    """`tracked` sessions of which `candidates` are processing; the idle ones are older."""
    store = Store()
    idle = max(0, tracked - candidates)
    if idle:
        add_idle(store, idle, now - 1_500_000, now - MAX_CANDIDATE_AGE_MS)
    add_candidates(store, candidates, now)
    return store


def run_scan(candidates: int, tracked: int, now: int | None = None) -> ScanResult:
    now = now if now is not None else time.time_ns() // 1_000_000
    store = build_scan_store(candidates, tracked, now)
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(scan_store(store, now))


# -- memory ---------------------------------------------------------------------------------------

def _fresh_idle_bodies(i: int, ts: int) -> Iterator[bytes]:
    """A session known from one session.state idle event only (logged, not a figure)."""
    gw = _gateway(i)
    yield (f'{{"type":"session.state","ts":{ts},"gatewayId":"{gw}","sessionKey":"agent:main:mem-{i}",'
           f'"sessionId":"sid-mem-{i}","state":"idle","prevState":"processing","queueDepth":0}}').encode()


def _idle_bodies(i: int, ts: int) -> Iterator[bytes]:
    """An idle session as the store holds most of them: after one agent turn (the bench's cycle)."""
    gw = _gateway(i)
    ids = f'"ts":{ts},"gatewayId":"{gw}","sessionKey":"agent:main:mem-{i}","sessionId":"sid-mem-{i}"'
    run = f'"runId":"run-mem-{i}"'
    model = '"provider":"anthropic","model":"claude-sonnet-4"'
    tool = f'"toolName":"exec","toolCallId":"call-{i}","toolSource":"builtin"'
    yield f'{{"type":"message.queued",{ids},"source":"telegram","queueDepth":1}}'.encode()
    yield f'{{"type":"session.state",{ids},"state":"processing","prevState":"idle","queueDepth":1}}'.encode()
    yield f'{{"type":"model.call.started",{ids},{run},{model}}}'.encode()
    yield f'{{"type":"model.call.completed",{ids},{run},{model},"durationMs":1834}}'.encode()
    yield f'{{"type":"tool.execution.started",{ids},{run},{tool}}}'.encode()
    yield f'{{"type":"tool.execution.completed",{ids},{run},{tool},"durationMs":270}}'.encode()
    yield f'{{"type":"run.progress",{ids},{run},"reason":"tool:exec:completed"}}'.encode()
    yield f'{{"type":"session.state",{ids},"state":"idle","prevState":"processing","queueDepth":0}}'.encode()


def _active_bodies(i: int, ts: int) -> Iterator[bytes]:
    gw = _gateway(i)
    ids = f'"ts":{ts},"gatewayId":"{gw}","sessionKey":"agent:main:mem-{i}","sessionId":"sid-mem-{i}"'
    run = f'"runId":"run-mem-{i}"'
    yield f'{{"type":"message.queued",{ids},"source":"telegram","queueDepth":1}}'.encode()
    yield f'{{"type":"session.state",{ids},"state":"processing","prevState":"idle","queueDepth":1}}'.encode()
    yield f'{{"type":"model.call.started",{ids},{run},"provider":"anthropic","model":"claude-sonnet-4"}}'.encode()
    yield (f'{{"type":"tool.execution.started",{ids},{run},"toolName":"exec","toolCallId":"call-{i}",'
           f'"toolSource":"builtin"}}').encode()


def _traced(build: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


def bytes_per_session(count: int, bodies: Callable[[int, int], Iterator[bytes]]) -> float:
    """Bytes the store keeps per session created by decoding and applying its events.

    Events carry no eventId/seq here: the dedupe window is bounded by key count (1M), not by
    sessions, and is left out of a per-session figure.
    """
    now = time.time_ns() // 1_000_000
    store = Store()
    # Gateways exist before tracing starts: they are per gateway, not per session.
    for g in range(GATEWAYS):
        store.gateway(_gateway(g), now)

    def build() -> Store:
        for i in range(count):
            for body in bodies(i, now):
                for _, event in decode_json(body).events:
                    store.apply_event(event, now)
        return store

    used, kept = _traced(build)
    assert kept.session_count == count, kept.session_count
    return used / count


def bytes_per_dict_entry(count: int) -> float:
    """The anchor: an empty dict entry keyed the same way (the same key strings, made the same way)."""
    def build() -> dict[str, None]:
        entries: dict[str, None] = {}
        for i in range(count):
            entries[f"agent:main:mem-{i}"] = None
        return entries

    used, kept = _traced(build)
    assert len(kept) == count
    return used / count


@dataclass
class MemoryResult:
    sessions: int
    idle: float  # idle after one agent turn (the figure)
    fresh_idle: float  # idle, known from one session.state event
    active: float
    dict_entry: float


def run_memory(count: int) -> MemoryResult:
    return MemoryResult(count, bytes_per_session(count, _idle_bodies), bytes_per_session(count, _fresh_idle_bodies),
                        bytes_per_session(count, _active_bodies), bytes_per_dict_entry(count))
