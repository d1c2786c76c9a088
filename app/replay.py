"""Replay a recorded capture through the service's own store, monitor, classifier and recovery
coordinator, with a simulated clock driven by the events' `ts` (issue 8, `openclaw-diagnostics replay`).

Nothing here re-implements a rule: the core is the service's own (`Service`, app/service.py),
built with a `ManualClock`, the observe executor and the `NullJournal` (replay needs no data
directory); events go through `Store.apply_event`, ticks through `Monitor.tick`. What this
module adds is the clock's driving and the bookkeeping of what the monitor reported — with the
input it reads (`Source`) and the records it reports in (`Verdict`, `Summary`), which is why it
runs past 400 lines.

Time: the simulated clock starts at the first event's `ts` and the monitor ticks every scan
interval from there. Before an event is applied, every tick scheduled strictly before its `ts`
runs; an event is applied with `received_at = ts`, so the store measures a clock skew of 0
and every age is exactly what the capture's own timestamps say. An event older than the clock
(captures are ordered by `seq`, and the gateway dispatches some events asynchronously) is
applied at its own `ts` without moving the clock backwards; an event without `ts` is received
"now" on the simulated clock. After the last event the clock keeps ticking for `tail_ms`, so a
capture that ends on a hung call still gets its verdict.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.clock import ManualClock
from app.decoding import decode_ndjson
from app.formatting import iso_ms
from app.journal import NullJournal
from app.monitor import Monitor, MonitorConfig
from app.recovery import ObserveExecutor, RecoveryCoordinator
from app.service import Service
from app.settings import Settings
from app.store import ACCEPTED, DUPLICATE, IGNORED
from app.vocabulary import SEVERITY
from telemetry.record import Recorder

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(slots=True)
class ReplayConfig:
    settings: Settings  # the service's own settings: replay runs the same core (app/service.py)
    tail_ms: int | None = None  # None: 2 * warn
    monitor: MonitorConfig = field(init=False)

    def __post_init__(self) -> None:
        self.monitor = MonitorConfig.from_settings(self.settings)

    @property
    def effective_tail_ms(self) -> int:
        return 2 * self.monitor.warn_ms if self.tail_ms is None else self.tail_ms


@dataclass(slots=True)
class Verdict:
    """One report the monitor made (not suppressed), with the recovery it requested, if any."""

    at: int  # simulated service time of the tick (= gateway time: skew is 0 in replay)
    payload: dict[str, Any]
    recovery: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "verdict", "at": self.at, "time": iso_ms(self.at), **self.payload}
        body["recovery"] = self.recovery
        body["recoveryOutcome"] = _outcome_fields(self.outcome) if self.outcome else None
        return body


@dataclass(slots=True)
class InvalidLine:
    line: int  # 1-based line number in the input
    errors: list[dict[str, Any]]

    def message(self) -> str:
        parts = []
        for error in self.errors:
            loc = [str(part) for part in error.get("loc", [])[2:]]  # drop "body", index
            parts.append(f"{'.'.join(loc)}: {error['msg']}" if loc else str(error["msg"]))
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {"kind": "invalid", "line": self.line, "errors": self.errors}


@dataclass(slots=True)
class Summary:
    lines: int = 0
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    sessions: set[tuple[str, str]] = field(default_factory=set)
    verdicts: Counter[str] = field(default_factory=Counter)
    verdict_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    recoveries: int = 0
    outcomes_by_status: Counter[str] = field(default_factory=Counter)
    ticks: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    ended_at: int | None = None
    # sessions still under attention when the replay ended (the most severe / oldest first, capped)
    open_attention: list[dict[str, Any]] = field(default_factory=list)
    open_attention_total: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "summary",
            "lines": self.lines,
            "events": self.events,
            "accepted": self.outcomes[ACCEPTED],
            "duplicates": self.outcomes[DUPLICATE],
            "ignored": self.outcomes[IGNORED],
            "invalidLines": self.invalid,
            "sessionsSeen": len(self.sessions),
            "verdicts": dict(sorted(self.verdicts.items())),
            "verdictsByReason": [
                {"eventType": event_type, "reason": reason, "count": count}
                for (event_type, reason), count in sorted(self.verdict_reasons.items())
            ],
            "recoveriesRequested": self.recoveries,
            "recoveryOutcomes": dict(sorted(self.outcomes_by_status.items())),
            "ticks": self.ticks,
            "firstTs": self.first_ts,
            "lastTs": self.last_ts,
            "endedAt": self.ended_at,
            "underAttentionAtEnd": self.open_attention,
            "underAttentionAtEndTotal": self.open_attention_total,
        }


def _outcome_fields(outcome: dict[str, Any]) -> dict[str, Any]:
    keep = ("status", "action", "outcomeReason", "released", "stale", "error")
    return {name: outcome[name] for name in keep if name in outcome}


# -- input ---------------------------------------------------------------------------------------


class Source:
    """An NDJSON capture: a path, `-` for stdin, gzip detected by its magic bytes (or `.gz`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.total_bytes: int | None = None
        self._raw: IO[bytes]
        if path == "-":
            self._raw = sys.stdin.buffer
        else:
            file = Path(path)
            self._raw = file.open("rb")
            self.total_bytes = file.stat().st_size
        self._counter = _CountingReader(self._raw)
        head = self._counter.peek(2)
        stream: IO[bytes]
        buffered = io.BufferedReader(self._counter, buffer_size=1 << 16)
        if head[:2] == GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=buffered, mode="rb")
        else:
            stream = buffered
        self._stream = stream

    @property
    def bytes_read(self) -> int:
        """Bytes consumed from the underlying file (compressed bytes for gzip): for progress."""
        return self._counter.count

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(1-based line number, line) for every line, blank ones included (the caller skips them)."""
        for number, line in enumerate(self._stream, start=1):
            yield number, line

    def close(self) -> None:
        if self.path != "-":
            self._raw.close()


class _CountingReader(io.RawIOBase):
    """Wraps a binary stream, counting the bytes read, with a small peek buffer."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buffer = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._raw.read(size - len(self._buffer))
            if not chunk:
                break
            self._buffer += chunk
        return self._buffer[:size]

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        if self._buffer:
            n = min(len(view), len(self._buffer))
            view[:n] = self._buffer[:n]
            self._buffer = self._buffer[n:]
            self.count += n
            return n
        data = self._raw.read(len(view))
        if not data:
            return 0
        n = len(data)
        view[:n] = data
        self.count += n
        return n


# -- the replay itself ------------------------------------------------------------------------------


class Replayer:
    """Feeds lines through Store / Monitor / RecoveryCoordinator; calls back per verdict and per invalid line."""

    def __init__(
        self,
        config: ReplayConfig,
        on_verdict: Callable[[Verdict], None],
        on_invalid: Callable[[InvalidLine], None] | None = None,
    ) -> None:
        self.config = config
        self.on_verdict = on_verdict
        self.on_invalid = on_invalid or (lambda invalid: None)
        self.summary = Summary()
        self.clock = ManualClock()
        # Time is the events': nothing kept, recoveries observed, telemetry discarded.
        self.service = Service(config.settings, clock=self.clock, recorder=Recorder(), journal=NullJournal(),
                               executor=ObserveExecutor())
        self.store = self.service.store
        self.monitor: Monitor
        self.coordinator: RecoveryCoordinator
        self._tick_verdicts: list[Verdict] = []
        self._open: dict[tuple[str, str | None, str | None, int | None], Verdict] = {}
        self._pending = 0
        self._next_tick: int | None = None
        self._waiting: list[tuple[int, Any]] = []  # events without ts before the clock started

    async def start(self) -> None:
        await self.service.open(background=False)  # the replay runs every tick itself
        self.monitor, self.coordinator = self.service.monitor, self.service.coordinator
        self.monitor.listeners.append(self._on_monitor)
        self.coordinator.listeners.append(self._on_coordinator)

    # -- listeners ---------------------------------------------------------------------------

    def _on_monitor(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "attention":
            self._tick_verdicts.append(Verdict(self.clock.now, payload))
        elif kind == "recovery":
            # The monitor announces a request right after the report it belongs to.
            verdict = self._tick_verdicts[-1] if self._tick_verdicts else None
            if verdict is not None:
                verdict.recovery = payload
                self._open[_request_key(payload)] = verdict
            self._pending += 1
            self.summary.recoveries += 1

    def _on_coordinator(self, kind: str, entry: dict[str, Any]) -> None:
        if kind != "recovery_completed":
            return
        self._pending = max(0, self._pending - 1)
        self.summary.outcomes_by_status[f"{entry['status']}/{entry['action']}"] += 1
        verdict = self._open.pop(_request_key(entry), None)
        if verdict is not None and verdict.outcome is None:
            verdict.outcome = entry

    # -- driving -------------------------------------------------------------------------------

    async def _tick(self, at: int) -> None:
        self.clock.now = at
        await self.monitor.tick(at, 0)
        self.summary.ticks += 1
        # Let the coordinator's executor tasks (observe: immediate) finish before the next tick,
        # as they would in the live service within one scan interval.
        for _ in range(1_000):
            if self._pending == 0:
                break
            await asyncio.sleep(0)
        verdicts, self._tick_verdicts = self._tick_verdicts, []
        for verdict in verdicts:
            self.summary.verdicts[verdict.payload["eventType"]] += 1
            self.summary.verdict_reasons[(verdict.payload["eventType"], verdict.payload["reason"])] += 1
            self.on_verdict(verdict)

    async def _advance_to(self, until: int, inclusive: bool) -> None:
        """Run every scheduled tick before `until` (or at it, when inclusive)."""
        interval = self.config.monitor.scan_interval_ms
        next_tick = self._next_tick
        assert next_tick is not None
        while next_tick < until or (inclusive and next_tick == until):
            if not self.store.considered_count:
                # Nothing can be reported: jump to the last scheduled tick before `until` and run
                # that one only (its eviction pass covers everything the skipped ones would have).
                last = until if inclusive else until - 1
                steps = (last - next_tick) // interval
                next_tick += steps * interval
            await self._tick(next_tick)
            next_tick += interval
        self._next_tick = next_tick
        self.clock.now = max(self.clock.now, until)

    async def feed(self, number: int, line: bytes) -> None:
        """One input line (1-based number)."""
        self.summary.lines += 1
        if not line.strip():
            return
        decoded = decode_ndjson(line)
        if decoded.rejected:
            self.summary.invalid += 1
            errors = [
                {**error, "loc": ["body", number - 1, *error.get("loc", [])[2:]]}
                for rejection in decoded.rejected for error in rejection.errors
            ]
            self.on_invalid(InvalidLine(number, errors))
            return
        for _, event in decoded.events:
            self.summary.events += 1
            ts = event.ts
            if self._next_tick is None:
                if ts is None:
                    self._waiting.append((number, event))  # applied when the clock starts
                    continue
                self._start(ts)
                for waiting_number, waiting in self._waiting:
                    self._apply(waiting_number, waiting, ts)
                self._waiting.clear()
            if ts is not None:
                if ts > self.clock.now:
                    await self._advance_to(ts, inclusive=False)
                self.summary.last_ts = ts if self.summary.last_ts is None else max(self.summary.last_ts, ts)
                self._apply(number, event, ts)
            else:
                self._apply(number, event, self.clock.now)

    def _start(self, ts: int) -> None:
        self._next_tick = ts
        self.clock.now = ts
        self.summary.first_ts = ts

    def _apply(self, number: int, event: Any, received_at: int) -> None:
        try:
            result = self.store.apply_event(event, received_at)
        except Exception as exc:  # a store bug must not hide the rest of the capture
            self.summary.invalid += 1
            self.on_invalid(InvalidLine(number, [{"loc": ["body", number - 1], "msg": f"could not be applied: {exc!r}"}]))
            return
        self.summary.outcomes[result.outcome] += 1
        session = result.session
        if session is not None:
            self.summary.sessions.add((session.gateway, session.key))

    async def finish(self) -> Summary:
        if self._next_tick is None:
            if self._waiting:  # no event had a ts: the clock starts at 0
                self._start(0)
                for number, event in self._waiting:
                    self._apply(number, event, 0)
                self._waiting.clear()
            else:
                return self.summary
        end = self.clock.now + self.config.effective_tail_ms
        await self._advance_to(end, inclusive=True)
        await self.service.close()
        self.summary.ended_at = self.clock.now
        under = [s for s in self.store.considered() if s.attention is not None]
        under.sort(key=lambda s: (SEVERITY[s.attention.event_type], -s.attention.age_ms, s.key))  # type: ignore[union-attr]
        self.summary.open_attention_total = len(under)
        self.summary.open_attention = [
            {
                "gatewayId": s.gateway,
                "sessionKey": s.session_key,
                "sessionId": s.session_id,
                "eventType": s.attention.event_type,  # type: ignore[union-attr]
                "reason": s.attention.reason,  # type: ignore[union-attr]
                "attentionAgeMs": s.attention.age_ms,  # type: ignore[union-attr]
            }
            for s in under[:OPEN_ATTENTION_LIMIT]
        ]
        return self.summary


OPEN_ATTENTION_LIMIT = 100


def _request_key(payload: dict[str, Any]) -> tuple[str, str | None, str | None, int | None]:
    return (payload["gatewayId"], payload.get("sessionKey"), payload.get("sessionId"), payload.get("requestedAt"))


async def replay_source(
    source: Source,
    config: ReplayConfig,
    on_verdict: Callable[[Verdict], None],
    on_invalid: Callable[[InvalidLine], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    replayer = Replayer(config, on_verdict, on_invalid)
    await replayer.start()
    for count, (number, line) in enumerate(source.lines(), start=1):
        await replayer.feed(number, line)
        if on_progress is not None and count % 512 == 0:
            on_progress(source.bytes_read)
    summary = await replayer.finish()
    if on_progress is not None:
        on_progress(source.bytes_read)
    return summary


def replay_lines(lines: list[bytes] | list[str], config: ReplayConfig) -> tuple[list[Verdict], list[InvalidLine], Summary]:
    """Convenience for tests and notebooks: replay in-memory lines, collect everything."""
    verdicts: list[Verdict] = []
    invalid: list[InvalidLine] = []

    async def run() -> Summary:
        replayer = Replayer(config, verdicts.append, invalid.append)
        await replayer.start()
        for number, line in enumerate(lines, start=1):
            await replayer.feed(number, line.encode() if isinstance(line, str) else line)
        return await replayer.finish()

    summary = asyncio.run(run())
    return verdicts, invalid, summary
