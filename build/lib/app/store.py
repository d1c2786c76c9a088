"""The session store: owns every session's live state (README, "Event vocabulary").

The store is a deterministic state machine. Each mutation takes its times as arguments (the
receive time of an event, the gateway-clock time of a monitor decision), so that replaying the
journal after a crash rebuilds exactly the same state. It never reads a clock and does no I/O;
the journal and the monitor call it.
"""

from __future__ import annotations

import sys
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.classifier import EMPTY_SNAPSHOT, ActivitySnapshot
from app.events import (
    ACTIVITY_TYPES,
    GATEWAY_RECOVERY_TYPES,
    GATEWAY_VERDICT_TYPES,
    INT64_MAX,
    KEEPALIVE_TYPE,
    KNOWN_TYPES,
    METRICS_ONLY_TYPES,
    SESSION_STATE_TYPES,
    Event,
)
from app.outcomes import SKIPPED_IN_FLIGHT, completion, is_mutating

IDLE, PROCESSING, WAITING = "idle", "processing", "waiting"
_STATE_RANK = {IDLE: 0, WAITING: 1, PROCESSING: 2}

ACCEPTED, DUPLICATE, IGNORED, REJECTED = "accepted", "duplicate", "ignored", "rejected"

DEFAULT_GATEWAY = "default"
TOMBSTONE_MS = 60_000
MAX_TOMBSTONES = 10_000  # per gateway
MAX_GATEWAYS = 10_000
MAX_RUNS_PER_SESSION = 32
RUN_MAPPING_GRACE_MS = 60_000
SKEW_WINDOW_MS = 600_000
SKEW_BUCKET_MS = 60_000
KEEPALIVE_SAMPLES = 5  # the skew of a gateway with keepalives: the median of its last five
FUTURE_TOLERANCE_MS = 5_000  # how far ahead of a keepalive-timed gateway's now an event may be
DEDUPE_MAX_KEYS = 1_000_000
DEDUPE_MAX_AGE_MS = 3_600_000
DEDUPE_BUCKET_MS = 1_000
HISTORY_LIMIT = 20
FORMER_IDS_KEPT = 8

_intern = sys.intern


@dataclass(slots=True, eq=False)
class Activity:
    """A session's run activity: the progress clock and the active work markers."""

    # marker key -> (startedAt, toolName, toolCallId)
    tools: dict[str, tuple[int, str, str | None]] = field(default_factory=dict)
    model_calls: dict[str, int] = field(default_factory=dict)
    # explicit embedded runs (workKey) and run owners ("run:<runId>") -> startedAt
    embedded_runs: dict[str, int] = field(default_factory=dict)
    last_progress_at: int | None = None
    last_progress_reason: str | None = None

    def has_markers(self) -> bool:
        return bool(self.tools or self.model_calls or self.embedded_runs)

    def touch(self, ts: int, reason: str) -> None:
        if self.last_progress_at is None or ts >= self.last_progress_at:
            self.last_progress_at = ts
            self.last_progress_reason = reason

    def clear_work(self) -> None:
        self.tools.clear()
        self.model_calls.clear()
        self.embedded_runs.clear()

    def end_run_owners(self) -> None:
        for key in [k for k in self.embedded_runs if k.startswith("run:")]:
            del self.embedded_runs[key]

    def snapshot(self, now: int) -> ActivitySnapshot:
        kind = None
        if self.tools:
            kind = "tool_call"
        elif self.model_calls:
            kind = "model_call"
        elif self.embedded_runs:
            kind = "embedded_run"
        tool_name = tool_call_id = tool_age = None
        if self.tools:
            started, tool_name, tool_call_id = min(self.tools.values(), key=lambda t: t[0])
            tool_age = max(0, now - started)
        progress_age = None
        if self.last_progress_at is not None:
            progress_age = max(0, now - self.last_progress_at)
        return ActivitySnapshot(
            active_work_kind=kind,
            has_active_embedded_run=True if self.embedded_runs else None,
            active_tool_name=tool_name,
            active_tool_call_id=tool_call_id,
            active_tool_age_ms=tool_age,
            last_progress_age_ms=progress_age,
            last_progress_reason=self.last_progress_reason,
        )

    def merge(self, other: Activity) -> None:
        self.tools.update(other.tools)
        self.model_calls.update(other.model_calls)
        self.embedded_runs.update(other.embedded_runs)
        if other.last_progress_at is not None and (
            self.last_progress_at is None or other.last_progress_at > self.last_progress_at
        ):
            self.last_progress_at = other.last_progress_at
            self.last_progress_reason = other.last_progress_reason

    def to_state(self) -> list[Any]:
        return [
            {k: list(v) for k, v in self.tools.items()},
            self.model_calls,
            self.embedded_runs,
            self.last_progress_at,
            self.last_progress_reason,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> Activity:
        tools, model_calls, embedded, at, reason = data
        return cls(
            {k: (v[0], v[1], v[2]) for k, v in tools.items()}, model_calls, embedded, at, reason
        )


@dataclass(slots=True)
class Attention:
    """The monitor's latest classification of a considered session."""

    event_type: str
    reason: str
    classification: str
    active_work_kind: str | None
    recovery_eligible: bool
    age_ms: int
    since: int

    def to_state(self) -> list[Any]:
        return [
            self.event_type,
            self.reason,
            self.classification,
            self.active_work_kind,
            self.recovery_eligible,
            self.age_ms,
            self.since,
        ]


@dataclass(slots=True, eq=False)
class Session:
    gateway: str
    key: str
    session_key: str | None
    session_id: str | None
    state: str = IDLE
    queue_depth: int = 0
    generation: int = 0
    last_activity: int = 0
    activity: Activity | None = None
    # run ids owned by this session -> mapping expiry (None while the run is active)
    runs: dict[str, int | None] | None = None
    # monitor memory
    last_stuck_warn_age: int | None = None
    last_long_running_warn_age: int | None = None
    stalled_reported_at: int | None = None
    attention: Attention | None = None
    # recovery
    inflight: dict[str, Any] | None = None
    recoveries: list[dict[str, Any]] | None = None
    gateway_verdict: dict[str, Any] | None = None
    gateway_recoveries: list[dict[str, Any]] | None = None
    usage: list[float] | None = None  # input, output, cacheRead, cacheWrite, total, costUsd
    # sessionIds this key was linked to before its current one: they still resolve to it
    former_ids: list[str] | None = None
    # the newest journal record that carried an event of this session: where its recent events
    # are read back from (app/journal.py, recent_events)
    last_row: int = 0

    def snapshot(self, now: int) -> ActivitySnapshot:
        return self.activity.snapshot(now) if self.activity else EMPTY_SNAPSHOT

    def touched_at(self) -> int:
        progress = self.activity.last_progress_at if self.activity else None
        return max(self.last_activity, progress or 0)

    def clear_monitor_memory(self) -> None:
        self.last_stuck_warn_age = None
        self.last_long_running_warn_age = None
        self.stalled_reported_at = None

    def is_candidate(self) -> bool:
        if self.state == PROCESSING:
            return True
        return (
            self.state == IDLE
            and self.queue_depth > 0
            and self.activity is not None
            and self.activity.has_markers()
        )

    def to_state(self) -> list[Any]:
        attention = self.attention
        return [
            self.gateway,
            self.key,
            self.session_key,
            self.session_id,
            self.state,
            self.queue_depth,
            self.generation,
            self.last_activity,
            self.activity.to_state() if self.activity else None,
            self.runs,
            self.last_stuck_warn_age,
            self.last_long_running_warn_age,
            self.stalled_reported_at,
            attention.to_state() if attention else None,
            self.inflight,
            self.recoveries,
            self.gateway_verdict,
            self.gateway_recoveries,
            self.usage,
            self.former_ids,
            self.last_row,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> Session:
        (gateway, key, skey, sid, state, depth, gen, last, activity, runs, lsw, llw, stalled,
         attention, inflight, recoveries, verdict, grec, usage, former_ids, *rest) = data
        return cls(
            _intern(gateway), key, skey, sid, _intern(state), depth, gen, last,
            Activity.from_state(activity) if activity else None, runs, lsw, llw, stalled,
            Attention(*attention) if attention else None, inflight, recoveries, verdict, grec, usage,
            former_ids, rest[0] if rest else 0,  # release 0.1 kept no last_row
        )


@dataclass(slots=True)
class GatewayInfo:
    """What the service knows about one gateway: clock skew, last heard, forwarder stats."""

    gateway_id: str
    first_heard: int
    last_heard: int
    events_accepted: int = 0
    skew_ms: int = 0
    # per-minute minima of (receive - ts) over the last 10 minutes: [bucket start, minimum]
    skew_buckets: list[list[int]] = field(default_factory=list)
    forwarder_queued: int | None = None
    forwarder_dropped: int | None = None
    sessions: dict[str, Session] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # sessionId -> record key
    runs: dict[str, str] = field(default_factory=dict)  # runId -> record key
    tombstones: dict[tuple[str, str], int] = field(default_factory=dict)  # -> expires (gw clock)
    # (receive - ts) of the last keepalives, on their raw ts: once a gateway sends keepalives,
    # its skew is their median and nothing else moves it
    keepalive_skews: list[int] | None = None

    def observe_keepalive(self, received_at: int, ts: int) -> None:
        samples = self.keepalive_skews = [*(self.keepalive_skews or ())[-(KEEPALIVE_SAMPLES - 1):],
                                          received_at - ts]
        ordered = sorted(samples)
        self.skew_ms = ordered[len(ordered) // 2]

    def observe_skew(self, received_at: int, ts: int) -> None:
        sample = received_at - ts
        bucket = received_at - received_at % SKEW_BUCKET_MS
        buckets = self.skew_buckets
        if buckets and buckets[-1][0] == bucket:
            if sample < buckets[-1][1]:
                buckets[-1][1] = sample
                if sample < self.skew_ms:
                    self.skew_ms = sample
            return
        # A new minute: drop the minutes that left the window, then take the minimum once.
        buckets.append([bucket, sample])
        horizon = received_at - SKEW_WINDOW_MS
        while buckets[0][0] + SKEW_BUCKET_MS <= horizon:
            buckets.pop(0)
        self.skew_ms = min(b[1] for b in buckets)

    def now(self, service_now: int) -> int:
        """Gateway now: the service's clock shifted into the gateway's."""
        return service_now - self.skew_ms

    def to_state(self) -> list[Any]:
        return [
            self.gateway_id, self.first_heard, self.last_heard, self.events_accepted, self.skew_ms,
            self.skew_buckets, self.forwarder_queued, self.forwarder_dropped,
            [[k[0], k[1], v] for k, v in self.tombstones.items()],
            self.keepalive_skews,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> GatewayInfo:
        gid, first, last, accepted, skew, buckets, queued, dropped, tombstones, *rest = data
        info = cls(_intern(gid), first, last, accepted, skew, buckets, queued, dropped)
        info.tombstones = {(a, b): exp for a, b, exp in tombstones}
        info.keepalive_skews = rest[0] if rest else None  # release 0.1 kept none
        return info


@dataclass(slots=True)
class ApplyResult:
    outcome: str
    session: Session | None = None
    clamped: bool = False
    stale_state: bool = False
    forwarder_dropped: int = 0
    dedupe_key: tuple[Any, ...] | None = None
    refused: str | None = None  # REJECTED when applied: why (gateway_limit)


@dataclass(slots=True)
class RecoveryCompletion:
    entry: dict[str, Any]  # the completed event's fields (docs/telemetry.md)
    applied: bool  # the session was released by it


class DedupeWindow:
    """The last 1,000,000 idempotency keys, at most an hour old.

    A million keys must stay cheap: the window keeps each key's hash (SipHash on strings, seeded
    per process: not collidable from outside; the window is rebuilt from the journal on start),
    maps it to the start of the one-second bucket it arrived in (one shared int per bucket), and
    drops whole buckets, oldest first, when the count or the age says so.
    """

    __slots__ = ("_seen", "_buckets", "_count", "max_keys", "max_age_ms")

    def __init__(self, max_keys: int = DEDUPE_MAX_KEYS, max_age_ms: int = DEDUPE_MAX_AGE_MS) -> None:
        self._seen: dict[int, int] = {}
        self._buckets: deque[tuple[int, list[int]]] = deque()
        self._count = 0
        self.max_keys = max_keys
        self.max_age_ms = max_age_ms

    def seen(self, key: Any, now: int) -> bool:
        at = self._seen.get(hash(key))
        return at is not None and now - at <= self.max_age_ms

    def add(self, key: Any, now: int) -> None:
        digest = hash(key)
        buckets = self._buckets
        start = now - now % DEDUPE_BUCKET_MS
        if not buckets or buckets[-1][0] < start:
            buckets.append((start, []))
        bucket_start, members = buckets[-1]
        self._seen[digest] = bucket_start
        members.append(digest)
        self._count += 1
        horizon = now - self.max_age_ms
        while buckets and (self._count > self.max_keys or buckets[0][0] + DEDUPE_BUCKET_MS <= horizon):
            old_start, old_members = buckets.popleft()
            self._count -= len(old_members)
            seen = self._seen
            for old in old_members:
                if seen.get(old) == old_start:  # not added again since, in a newer bucket
                    del seen[old]

    def __len__(self) -> int:
        return len(self._seen)


def dedupe_key(gateway: str, event: Event) -> tuple[Any, ...] | None:
    if event.eventId is not None:
        return (gateway, event.eventId)
    if event.seq is not None and event.ts is not None:
        return (gateway, event.seq, event.ts)
    return None


def tool_marker(event: Event) -> str:
    owner = event.runId or event.sessionId or event.sessionKey or "unknown"
    return f"{owner}:{event.toolCallId or event.toolName}"


def model_marker(event: Event) -> str:
    return f"{event.runId or 'unknown'}:{event.provider}:{event.model}"


def embedded_marker(event: Event) -> str:
    return event.workKey or event.sessionId or event.sessionKey or "unknown"


class Store:
    """All gateways and their sessions, the candidate index and the dedupe window."""

    def __init__(self, *, max_clock_skew_ms: int = 60_000, tracker: ChangeTracker | None = None,
                 max_gateways: int = MAX_GATEWAYS) -> None:
        self.max_clock_skew_ms = max_clock_skew_ms
        self.max_gateways = max_gateways
        self.gateways: dict[str, GatewayInfo] = {}
        # gateways with no session, least recently heard first: the ones the bound evicts
        self._sessionless: dict[str, None] = {}
        self.candidates: set[Session] = set()
        self.dedupe = DedupeWindow()
        self.session_count = 0
        # (gateway, state) -> sessions, kept current so the sessions gauge never walks the map
        self.state_counts: Counter[tuple[str, str]] = Counter()
        # what a bound dropped to stay within it, by structure (gateway, run, tombstone), for
        # openclaw.monitor.bounded.evicted
        self.bounded_evictions: Counter[str] = Counter()
        tracker = tracker or _NO_TRACKING
        self.before_change = tracker.before_change
        self.changed = tracker.changed
        self.removed = tracker.removed

    # -- lookups ---------------------------------------------------------------------------

    def gateway(self, gateway_id: str, received_at: int) -> GatewayInfo | None:
        """The gateway, created if new; None when the bound is reached and every gateway has
        sessions (a new one is refused rather than an existing one's sessions dropped)."""
        info = self.gateways.get(gateway_id)
        if info is None:
            if len(self.gateways) >= self.max_gateways:
                if not self._sessionless:
                    return None  # the event is rejected (gateway_limit), and counted as such
                oldest = next(iter(self._sessionless))
                del self._sessionless[oldest]
                del self.gateways[oldest]
                self.bounded_evictions["gateway"] += 1
            gateway_id = _intern(gateway_id)
            info = self.gateways[gateway_id] = GatewayInfo(gateway_id, received_at, received_at)
            self._sessionless[gateway_id] = None
        elif gateway_id in self._sessionless:
            self._sessionless[gateway_id] = self._sessionless.pop(gateway_id)  # heard: to the back
        return info

    def restore_gateway(self, info: GatewayInfo) -> None:
        self.gateways[info.gateway_id] = info
        if not info.sessions:
            self._sessionless[info.gateway_id] = None

    def find(self, gateway_id: str, key: str) -> Session | None:
        info = self.gateways.get(gateway_id)
        if info is None:
            return None
        session = info.sessions.get(key)
        if session is None and key in info.aliases:
            session = info.sessions.get(info.aliases[key])
        return session

    def find_all(self, key: str) -> list[Session]:
        found = []
        for gateway_id in self.gateways:
            session = self.find(gateway_id, key)
            if session is not None:
                found.append(session)
        return found

    def iter_sessions(self) -> Iterator[Session]:
        for info in self.gateways.values():
            yield from info.sessions.values()

    # -- ingest ----------------------------------------------------------------------------

    def apply_event(self, event: Event, received_at: int, bound_gateway: str | None = None) -> ApplyResult:
        """Apply one validated event received at `received_at` (service clock, ms)."""
        gateway_id = event.gatewayId or bound_gateway or DEFAULT_GATEWAY
        info = self.gateway(gateway_id, received_at)
        if info is None:
            return ApplyResult(REJECTED, refused="gateway_limit")
        key = dedupe_key(info.gateway_id, event)
        if key is not None and self.dedupe.seen(key, received_at):
            info.last_heard = max(info.last_heard, received_at)
            return ApplyResult(DUPLICATE)
        if key is not None:
            self.dedupe.add(key, received_at)
        info.last_heard = max(info.last_heard, received_at)
        result = ApplyResult(ACCEPTED, dedupe_key=key)
        kind = event.type
        ts = event.ts
        if kind == KEEPALIVE_TYPE and ts is not None:
            info.observe_keepalive(received_at, ts)  # on its raw ts, before any clamp
        keepalive_clock = info.keepalive_skews is not None
        if ts is None:
            ts = info.now(received_at)
        elif ts > received_at + self.max_clock_skew_ms:
            ts = received_at
            result.clamped = True
        elif keepalive_clock and ts > info.now(received_at) + FUTURE_TOLERANCE_MS:
            # ahead of what the gateway's own keepalives say its clock reads: it can neither age
            # the gateway's sessions nor make its next real event look stale
            ts = info.now(received_at)
            result.clamped = True
        if not keepalive_clock and kind in KNOWN_TYPES:
            info.observe_skew(received_at, ts)  # no keepalives: the freshest known event is the clue
        if kind not in KNOWN_TYPES:
            result.outcome = IGNORED
        elif kind in SESSION_STATE_TYPES:
            self._apply_session_event(info, event, ts, result)
        elif kind in ACTIVITY_TYPES:
            self._apply_activity_event(info, event, ts, result)
        elif kind == "model.usage":
            self._apply_usage(info, event)
        elif kind in GATEWAY_VERDICT_TYPES or kind in GATEWAY_RECOVERY_TYPES:
            self._apply_gateway_verdict(info, event, ts, result)
        elif kind == KEEPALIVE_TYPE:
            self._apply_keepalive(info, event, result)
        elif kind not in METRICS_ONLY_TYPES:  # pragma: no cover - the vocabulary is closed
            result.outcome = IGNORED
        if result.outcome == ACCEPTED:
            info.events_accepted += 1
            session = result.session
            if session is not None and session.key in info.sessions:
                # Keep each gateway's map in order of last event: eviction reads the old end.
                info.sessions[session.key] = info.sessions.pop(session.key)
        return result

    def _resolve(self, info: GatewayInfo, event: Event, create: bool, ts: int) -> Session | None:
        skey, sid = event.sessionKey, event.sessionId
        sessions = info.sessions
        if skey is not None:
            session = sessions.get(skey)
            if sid is not None and info.aliases.get(sid) != skey:
                session = self._link(info, sid, skey, session, ts)
            if session is None and create:
                session = self._create(info, skey, skey, sid, ts)
            elif session is not None and sid is not None and session.session_id != sid:
                self._change(session)
                if session.session_id is not None:
                    session.former_ids = ((session.former_ids or []) + [session.session_id])[-FORMER_IDS_KEPT:]
                session.session_id = sid
            return session
        if sid is not None:
            session = sessions.get(info.aliases.get(sid, sid))
            if session is None and create:
                session = self._create(info, sid, None, sid, ts)
            return session
        if event.runId is not None:
            key = info.runs.get(event.runId)
            if key is not None:
                return sessions.get(key)
        return None

    def _create(self, info: GatewayInfo, key: str, skey: str | None, sid: str | None, ts: int) -> Session:
        session = Session(info.gateway_id, key, skey, sid, IDLE, 0, 0, ts)
        info.sessions[key] = session
        self._sessionless.pop(info.gateway_id, None)
        if sid is not None and skey is not None:
            info.aliases[sid] = key
        self.session_count += 1
        self.state_counts[(session.gateway, IDLE)] += 1
        self.changed(session)
        return session

    def _link(self, info: GatewayInfo, sid: str, skey: str, target: Session | None, ts: int) -> Session | None:
        """Link sessionId to sessionKey; fold a record known only by the id into the key's."""
        previous_key = info.aliases.get(sid)
        if previous_key is not None and previous_key != skey:
            old = info.sessions.get(previous_key)
            if old is not None and (old.session_id == sid or sid in (old.former_ids or ())):
                self._change(old)
                # re-linked: the old record keeps its history, not the id
                if old.session_id == sid:
                    old.session_id = None
                if old.former_ids and sid in old.former_ids:
                    old.former_ids = [i for i in old.former_ids if i != sid] or None
        info.aliases[sid] = skey
        orphan = info.sessions.get(sid) if sid != skey else None
        if orphan is None or orphan.session_key is not None:
            return target
        if target is None:
            # The id-only record becomes the key's record.
            self._change(orphan)
            del info.sessions[sid]
            self.removed(info.gateway_id, sid)
            orphan.key = skey
            orphan.session_key = skey
            info.sessions[skey] = orphan
            self._rekey_runs(info, orphan)
            return orphan
        self._merge(info, target, orphan)
        return target

    def _merge(self, info: GatewayInfo, target: Session, orphan: Session) -> None:
        self._change(target)
        self.before_change(orphan)
        if (orphan.last_activity, _STATE_RANK[orphan.state]) > (target.last_activity, _STATE_RANK[target.state]):
            self._set_state(target, orphan.state)
        target.last_activity = max(target.last_activity, orphan.last_activity)
        target.queue_depth = max(target.queue_depth, orphan.queue_depth)
        target.generation = max(target.generation, orphan.generation) + 1
        target.last_row = max(target.last_row, orphan.last_row)
        target.clear_monitor_memory()
        if orphan.activity is not None:
            if target.activity is None:
                target.activity = orphan.activity
            else:
                target.activity.merge(orphan.activity)
        if orphan.runs:
            target.runs = {**(target.runs or {}), **orphan.runs}
        if orphan.recoveries:
            merged = (target.recoveries or []) + orphan.recoveries
            merged.sort(key=lambda r: r.get("requestedAt") or 0)
            target.recoveries = merged[-HISTORY_LIMIT:]
        if orphan.gateway_recoveries:
            target.gateway_recoveries = ((target.gateway_recoveries or []) + orphan.gateway_recoveries)[-HISTORY_LIMIT:]
        if target.gateway_verdict is None:
            target.gateway_verdict = orphan.gateway_verdict
        if orphan.usage:
            target.usage = [a + b for a, b in zip(target.usage or [0.0] * 6, orphan.usage)]
        if target.inflight is None:
            target.inflight = orphan.inflight
        target.session_id = orphan.session_id or target.session_id
        self._drop(info, orphan)
        self._rekey_runs(info, target)
        self._reindex(target)

    def _claim_run(self, info: GatewayInfo, session: Session, run_id: str, expires: int | None) -> None:
        """Map runId to this session (None: while the run is active); one session owns a run id."""
        previous_key = info.runs.get(run_id)
        if previous_key is not None and previous_key != session.key:
            previous = info.sessions.get(previous_key)
            if previous is not None and previous.runs and run_id in previous.runs:
                self._change(previous)
                del previous.runs[run_id]
        info.runs[run_id] = session.key
        if session.runs is None:
            session.runs = {}
        runs = session.runs
        runs[run_id] = expires
        if len(runs) > MAX_RUNS_PER_SESSION:
            # Bounded, so no event pays for a long history: the oldest ended run goes first, else
            # the oldest (a gateway runs one or two at a time; dozens open means lost ends).
            dropped = next((r for r, until in runs.items() if until is not None), next(iter(runs)))
            del runs[dropped]
            if info.runs.get(dropped) == session.key:
                del info.runs[dropped]
            self.bounded_evictions["run"] += 1

    def _rekey_runs(self, info: GatewayInfo, session: Session) -> None:
        for run_id in session.runs or ():
            info.runs[run_id] = session.key

    def _set_state(self, session: Session, state: str) -> None:
        if state != session.state:
            self.state_counts[(session.gateway, session.state)] -= 1
            self.state_counts[(session.gateway, state)] += 1
            session.state = state

    def _change(self, session: Session) -> None:
        self.before_change(session)
        self.changed(session)

    def _reindex(self, session: Session) -> None:
        if session.is_candidate():
            self.candidates.add(session)
        else:
            self.candidates.discard(session)
            session.attention = None

    def _apply_session_event(self, info: GatewayInfo, event: Event, ts: int, result: ApplyResult) -> None:
        session = self._resolve(info, event, True, ts)
        if session is None:
            result.outcome = IGNORED
            return
        result.session = session
        if event.type == "session.state" and ts < session.last_activity:
            result.stale_state = True  # recorded and counted, no other effect
            return
        self._change(session)
        session.last_activity = max(session.last_activity, ts)
        session.generation += 1
        session.clear_monitor_memory()
        if event.type == "message.queued":
            session.queue_depth = event.queueDepth if event.queueDepth is not None else session.queue_depth + 1
        elif event.type == "session.state":
            self._set_state(session, _intern(event.state or IDLE))
            if event.queueDepth is not None:
                session.queue_depth = event.queueDepth
            elif session.state == IDLE:
                session.queue_depth = max(0, session.queue_depth - 1)
            activity = session.activity
            if session.state == IDLE and activity is not None:
                activity.end_run_owners()
                self._end_runs(info, session, ts)
                if not activity.has_markers():
                    # most sessions rest idle after a turn: keep the progress clock, not three
                    # empty dicts (a third of an idle session's memory)
                    session.activity = Activity(last_progress_at=activity.last_progress_at,
                                                last_progress_reason=activity.last_progress_reason)
        self._reindex(session)

    def _end_runs(self, info: GatewayInfo, session: Session, ts: int) -> None:
        """An idle session has no running run: active run ids keep their mapping only briefly."""
        if not session.runs:
            return
        for run_id, expires in session.runs.items():
            if expires is None:
                session.runs[run_id] = ts + RUN_MAPPING_GRACE_MS

    def _apply_activity_event(self, info: GatewayInfo, event: Event, ts: int, result: ApplyResult) -> None:
        kind = event.type
        creates = kind.endswith(".started") or kind == "run.progress"
        session = self._resolve(info, event, creates, ts)
        if session is None:
            if event.sessionKey is None and event.sessionId is None:
                result.outcome = IGNORED  # a runId that maps to no session (yet)
                return
            if not creates:
                sid = event.sessionId or ""
                self._tombstone(info, event.sessionKey or info.aliases.get(sid, sid), event, ts)
            return
        result.session = session
        activity = session.activity
        if activity is None:
            if not creates:
                self._tombstone(info, session.key, event, ts)
                return
        marker = _marker(event)
        if creates and marker is not None and self._consume_tombstone(info, session.key, marker, ts):
            result.outcome = IGNORED
            result.session = None
            return
        self._change(session)
        if activity is None:
            activity = session.activity = Activity()
        if kind == "tool.execution.started":
            activity.tools[marker] = (ts, event.toolName or "unknown", event.toolCallId)
            activity.touch(ts, _intern(f"tool:{event.toolName}:started"))
        elif kind == "model.call.started":
            activity.model_calls[marker] = ts
            activity.touch(ts, "model_call:started")
        elif kind == "run.progress":
            activity.touch(ts, _intern(event.reason or "progress"))
        elif kind == "run.started":
            self._claim_run(info, session, event.runId or "", None)
            activity.embedded_runs[marker] = ts
            activity.touch(ts, "run:started")
        elif kind == "embedded_run.started":
            activity.embedded_runs[marker] = ts
            activity.touch(ts, "embedded_run:started")
        elif kind.startswith("tool.execution."):
            if activity.tools.pop(marker, None) is None:
                self._tombstone(info, session.key, event, ts)
            activity.touch(ts, _intern(f"tool:{event.toolName}:ended"))
        elif kind.startswith("model.call."):
            if activity.model_calls.pop(marker, None) is None:
                self._tombstone(info, session.key, event, ts)
            activity.touch(ts, "model_call:ended")
        elif kind == "run.completed":
            if marker not in activity.embedded_runs:
                self._tombstone(info, session.key, event, ts)
            activity.clear_work()
            self._claim_run(info, session, event.runId or "", ts + RUN_MAPPING_GRACE_MS)
            activity.touch(ts, "run:completed")
        elif kind == "embedded_run.ended":
            if activity.embedded_runs.pop(marker, None) is None:
                self._tombstone(info, session.key, event, ts)
            if event.clearRunActivity is not False:
                activity.tools.clear()
                activity.model_calls.clear()
            activity.touch(ts, "embedded_run:ended")
        self._expire_runs(info, session, ts)
        self._reindex(session)

    def _expire_runs(self, info: GatewayInfo, session: Session, now: int) -> None:
        runs = session.runs
        if not runs:
            return
        expired = [run_id for run_id, expires in runs.items() if expires is not None and expires < now]
        for run_id in expired:
            del runs[run_id]
            if info.runs.get(run_id) == session.key:
                del info.runs[run_id]

    def _tombstone(self, info: GatewayInfo, session_key: str, event: Event, ts: int) -> None:
        marker = _marker(event)
        if marker is None:
            return
        tombstones = info.tombstones
        tombstones[(session_key, marker)] = ts + TOMBSTONE_MS
        # Oldest first, O(1) per event: drop from the front what expired, and past the cap the
        # oldest whatever its expiry (a forwarder that dropped its oldest events makes many ends
        # without a start; they must not cost every later event a scan).
        while tombstones:
            oldest = next(iter(tombstones))
            if len(tombstones) > MAX_TOMBSTONES:
                self.bounded_evictions["tombstone"] += 1
            elif tombstones[oldest] >= ts:
                break
            del tombstones[oldest]

    def _consume_tombstone(self, info: GatewayInfo, session_key: str, marker: str, ts: int) -> bool:
        expires = info.tombstones.pop((session_key, marker), None)
        return expires is not None and ts <= expires

    def _apply_usage(self, info: GatewayInfo, event: Event) -> None:
        session = self._resolve(info, event, False, 0)
        if session is None or (event.usage is None and event.costUsd is None):
            return
        self._change(session)
        totals = session.usage or [0.0] * 6
        usage = event.usage
        if usage is not None:
            for i, value in enumerate((usage.input, usage.output, usage.cacheRead, usage.cacheWrite, usage.total)):
                if value is not None:
                    totals[i] += value
        if event.costUsd is not None:
            totals[5] += event.costUsd
        session.usage = totals

    def _apply_gateway_verdict(self, info: GatewayInfo, event: Event, ts: int, result: ApplyResult) -> None:
        session = self._resolve(info, event, True, ts)
        if session is None:
            result.outcome = IGNORED
            return
        self._change(session)
        record = {
            name: value
            for name, value in (
                ("eventType", event.type),
                ("ts", ts),
                ("state", event.state),
                ("reason", event.reason),
                ("classification", event.classification),
                ("activeWorkKind", event.activeWorkKind),
                ("ageMs", _int_or_none(event.ageMs)),
                ("queueDepth", event.queueDepth),
                ("lastProgressAgeMs", _int_or_none(event.lastProgressAgeMs)),
                ("lastProgressReason", event.lastProgressReason),
                ("status", event.status),
                ("action", event.action),
                ("outcomeReason", event.outcomeReason),
                ("released", event.released),
            )
            if value is not None
        }
        if event.type in GATEWAY_VERDICT_TYPES:
            session.gateway_verdict = record
        else:
            session.gateway_recoveries = ((session.gateway_recoveries or []) + [record])[-HISTORY_LIMIT:]
        result.session = session

    def _apply_keepalive(self, info: GatewayInfo, event: Event, result: ApplyResult) -> None:
        if event.queued is not None:
            info.forwarder_queued = event.queued
        if event.dropped is not None:
            previous = info.forwarder_dropped
            # A decrease means the forwarder restarted: its new count is all new drops.
            if previous is None:
                result.forwarder_dropped = 0
            elif event.dropped >= previous:
                result.forwarder_dropped = event.dropped - previous
            else:
                result.forwarder_dropped = event.dropped
            info.forwarder_dropped = event.dropped

    # -- monitor memory, recovery, eviction --------------------------------------------------

    def set_monitor_memory(
        self,
        session: Session,
        attention: Attention | None,
        last_stuck_warn_age: int | None,
        last_long_running_warn_age: int | None,
        stalled_reported_at: int | None,
    ) -> None:
        self._change(session)
        session.attention = attention
        session.last_stuck_warn_age = last_stuck_warn_age
        session.last_long_running_warn_age = last_long_running_warn_age
        session.stalled_reported_at = stalled_reported_at

    def set_inflight(self, session: Session, request: dict[str, Any] | None) -> None:
        self._change(session)
        session.inflight = request

    def add_recovery(self, session: Session, entry: dict[str, Any]) -> None:
        self._change(session)
        session.recoveries = ((session.recoveries or []) + [entry])[-HISTORY_LIMIT:]

    def begin_recovery(self, session: Session, request: dict[str, Any]) -> bool:
        """Record a requested recovery, unless one is already in flight for the session."""
        if session.inflight is not None:
            return False
        self.set_inflight(session, request)
        self.add_recovery(session, {"kind": "requested", **request})
        return True

    def complete_recovery(self, session: Session | None, request: dict[str, Any], outcome: dict[str, Any],
                          now: int) -> RecoveryCompletion:
        """Record what the gateway answered; apply a mutating answer that passes the guard."""
        applied = stale = False
        if session is not None and session.inflight is not None and session.inflight != request:
            # Another request is in flight (two sessions merged while both were in recovery).
            outcome = SKIPPED_IN_FLIGHT
        elif is_mutating(outcome):
            if session is not None and self.is_current(session, request):
                self.apply_recovery(session, request, outcome, now)
                applied = True
            else:
                stale = True
        entry = completion(request, outcome)
        if stale:
            entry["stale"] = True
        if session is not None:
            if session.inflight == request:
                self.set_inflight(session, None)
            self.add_recovery(session, {"kind": "completed", "completedAt": now, **entry})
        return RecoveryCompletion(entry, applied)

    def is_current(self, session: Session, request: dict[str, Any]) -> bool:
        """The processing-generation guard (monitor.md, coordinator step 5)."""
        if session.generation != request["stateGeneration"] or session.state != request["expectedState"]:
            return False
        activity = session.activity
        if activity is None:
            return True
        requested_at = request["requestedAt"]
        return not any(started > requested_at for started in activity.embedded_runs.values())

    def apply_recovery(self, session: Session, request: dict[str, Any], outcome: dict[str, Any], now: int) -> None:
        """A mutating outcome that passed the guard: the session is released to idle."""
        self._change(session)
        status = outcome["status"]
        released = outcome.get("released") or 0
        queued_count = outcome.get("queuedCount")
        if (
            status == "released"
            or (status == "aborted" and released > 0 and queued_count == 0)
            or (status == "noop" and outcome.get("outcomeReason") == "no_active_work")
        ):
            depth = 0
        elif status == "aborted" and request["expectedState"] == IDLE and (queued_count or 0) > 0:
            depth = max(session.queue_depth, request["queueDepth"])
        else:
            depth = max(0, session.queue_depth - 1)
        self._set_state(session, IDLE)
        session.last_activity = max(session.last_activity, now)
        session.generation += 1
        session.queue_depth = depth
        session.clear_monitor_memory()
        if session.activity is not None:
            session.activity.clear_work()
        gateway = self.gateways.get(session.gateway)
        if gateway is not None:
            self._end_runs(gateway, session, now)
        self._reindex(session)

    def evict(self, session: Session) -> None:
        info = self.gateways.get(session.gateway)
        if info is None or info.sessions.get(session.key) is not session:
            return
        self._drop(info, session)

    def _drop(self, info: GatewayInfo, session: Session) -> None:
        self.before_change(session)
        del info.sessions[session.key]
        self.session_count -= 1
        self.state_counts[(session.gateway, session.state)] -= 1
        self.candidates.discard(session)
        for sid in (session.session_id, *(session.former_ids or ())):
            if sid is not None and info.aliases.get(sid) == session.key:
                del info.aliases[sid]
        for run_id in session.runs or ():
            if info.runs.get(run_id) == session.key:
                del info.runs[run_id]
        if not info.sessions:
            self._sessionless[info.gateway_id] = None
        self.removed(info.gateway_id, session.key)

    def evictable(self, now_of: Callable[[GatewayInfo], int], ttl_ms: int, limit: int) -> list[Session]:
        """Idle, queue 0, no activity markers, unchanged for ttl_ms (gateway clock): at most `limit`.

        Each gateway's sessions are kept in order of their last event, so this walks only the
        old end of each map and stops at the first session that is still fresh, or after
        `limit` visits. Every session it visits is moved behind the fresh ones: one that may not
        go (work queued, a recovery in flight) is not visited again until newer traffic has
        passed it, and one chosen is not chosen twice while its eviction is being committed.
        So a walk costs what it visits, never what stays.
        """
        found: list[Session] = []
        visits = 0
        for info in self.gateways.values():
            horizon = now_of(info) - ttl_ms
            sessions = info.sessions
            visited = []
            for session in sessions.values():
                if session.touched_at() >= horizon or visits >= limit:
                    break
                visits += 1
                visited.append(session)
                if (
                    session.state == IDLE
                    and session.queue_depth == 0
                    and session.inflight is None
                    and (session.activity is None or not session.activity.has_markers())
                ):
                    found.append(session)
            for session in visited:
                sessions[session.key] = sessions.pop(session.key)
            if visits >= limit:
                break
        return found

    def least_recently_active(self, count: int) -> list[Session]:
        """For the session cap: the oldest idle sessions first, then the oldest of the rest."""
        idle: list[Session] = []
        busy: list[Session] = []
        for info in self.gateways.values():
            for session in info.sessions.values():
                if session.inflight is not None:
                    continue
                (idle if session.state == IDLE else busy).append(session)
                if len(idle) >= count:
                    break
        idle.sort(key=Session.touched_at)
        busy.sort(key=Session.touched_at)
        return (idle + busy)[:count]

    def forget_gateway(self, gateway_id: str) -> int:
        """Drop a gateway and its sessions from memory (not a change: nothing is reported)."""
        info = self.gateways.pop(gateway_id, None)
        self._sessionless.pop(gateway_id, None)
        if info is None:
            return 0
        for session in info.sessions.values():
            self.candidates.discard(session)
            self.state_counts[(gateway_id, session.state)] -= 1
        self.session_count -= len(info.sessions)
        return len(info.sessions)

    # -- restore ----------------------------------------------------------------------------

    def restore_session(self, session: Session) -> None:
        info = self.gateways.get(session.gateway)
        if info is None:
            info = self.gateways[session.gateway] = GatewayInfo(session.gateway, 0, 0)
        info.sessions[session.key] = session
        self._sessionless.pop(session.gateway, None)
        self.session_count += 1
        self.state_counts[(session.gateway, session.state)] += 1
        for former in session.former_ids or ():
            info.aliases.setdefault(former, session.key)
        if session.session_id is not None and session.session_key is not None:
            info.aliases[session.session_id] = session.key
        for run_id in session.runs or ():
            info.runs[run_id] = session.key
        if session.is_candidate():
            self.candidates.add(session)


def _marker(event: Event) -> str | None:
    kind = event.type
    if kind.startswith("tool.execution."):
        return tool_marker(event)
    if kind.startswith("model.call."):
        return model_marker(event)
    if kind in ("run.started", "run.completed"):
        return f"run:{event.runId}"
    if kind.startswith("embedded_run."):
        return embedded_marker(event)
    return None


def _int_or_none(value: float | None) -> int | None:
    """Ages the gateway reported, as integers within int64 (what the journal can store)."""
    return None if value is None else int(min(value, INT64_MAX))


class ChangeTracker(Protocol):
    """Told of every change, so that a checkpoint can write only what changed (app/journal.py)."""

    def before_change(self, session: Session) -> None:
        """`session` is about to change (a checkpoint in progress copies it first)."""

    def changed(self, session: Session) -> None:
        """`session` changed or was created."""

    def removed(self, gateway: str, key: str) -> None:
        """The session stored under (gateway, key) went away (merged or evicted)."""


class _NoTracking:
    def before_change(self, session: Session) -> None:
        return None

    def changed(self, session: Session) -> None:
        return None

    def removed(self, gateway: str, key: str) -> None:
        return None


_NO_TRACKING = _NoTracking()
