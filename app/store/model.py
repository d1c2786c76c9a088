"""The session model: a session, its activity and attention, a gateway, and what applying an
event returns. Plain slotted records with their checkpoint form (`to_state` / `from_state`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from app.classifier import EMPTY_SNAPSHOT, ActivitySnapshot
from app.outcomes import RecoveryRequest, request_from
from app.vocabulary import SEED

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
    # the classifier profile it was judged under: the backoff memory beside it belongs to that
    # profile, and a switch starts it afresh (app/monitor.py)
    profile: str = SEED

    def to_state(self) -> list[Any]:
        return [
            self.event_type,
            self.reason,
            self.classification,
            self.active_work_kind,
            self.recovery_eligible,
            self.age_ms,
            self.since,
            self.profile,
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
    inflight: RecoveryRequest | None = None
    recoveries: list[dict[str, Any]] | None = None
    gateway_verdict: dict[str, Any] | None = None
    gateway_recoveries: list[dict[str, Any]] | None = None
    usage: list[float] | None = None  # input, output, cacheRead, cacheWrite, total, costUsd
    # sessionIds this key was linked to before its current one: they still resolve to it
    former_ids: list[str] | None = None
    # the newest journal record that carried an event of this session: where its recent events
    # are read back from (app/journal/interface.py, recent_events)
    last_row: int = 0
    # the turn being processed is a queued message (upstream's activeQueuedTurn): set when the
    # session enters processing with messages queued, cleared when it goes idle; the
    # openclaw-2026.9 profile does not count that message as backlog (docs/design.md)
    active_queued_turn: bool = False
    # a recovery the gateway said it carried out, waiting for it to show the session moved
    # (app/monitor.py decides): {requestedAt, appliedAt, origin, reason, evidenceAt or None}
    verifying: dict[str, Any] | None = None
    # on the needs-human list: {"cause", "since"} (budget_spent | ineffective_twice), or None
    needs_human: dict[str, Any] | None = None

    def snapshot(self, now: int) -> ActivitySnapshot:
        return self.activity.snapshot(now) if self.activity else EMPTY_SNAPSHOT

    def touched_at(self) -> int:
        progress = self.activity.last_progress_at if self.activity else None
        return max(self.last_activity, progress or 0)

    def clear_monitor_memory(self) -> None:
        self.last_stuck_warn_age = None
        self.last_long_running_warn_age = None
        self.stalled_reported_at = None

    def backlog(self) -> int:
        """Queued work behind the message being processed (upstream's resolveDiagnosticQueuedBacklog)."""
        if self.state == PROCESSING and self.active_queued_turn:
            return max(0, self.queue_depth - 1)
        return self.queue_depth

    def is_candidate(self) -> bool:
        # a recovery to verify or a person to call keeps it in the monitor's sight, idle or not
        if self.state == PROCESSING or self.verifying is not None or self.needs_human is not None:
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
            self.active_queued_turn,
            self.verifying,
            self.needs_human,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> Session:
        (gateway, key, skey, sid, state, depth, gen, last, activity, runs, lsw, llw, stalled,
         attention, inflight, recoveries, verdict, grec, usage, former_ids, *rest) = data
        return cls(
            _intern(gateway), key, skey, sid, _intern(state), depth, gen, last,
            Activity.from_state(activity) if activity else None, runs, lsw, llw, stalled,
            Attention(*attention) if attention else None, request_from(inflight) if inflight else None,
            recoveries, verdict, grec, usage,
            former_ids, rest[0] if rest else 0,  # release 0.1 kept no last_row
            len(rest) > 1 and rest[1],  # nor did 0.2 keep active_queued_turn
            rest[2] if len(rest) > 2 else None,  # nor verifications
            rest[3] if len(rest) > 3 else None,  # nor the needs-human list
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
    # the gateway's version, as its forwarder's keepalive reports it (the classifier profile's
    # input: docs/design.md)
    gateway_version: str | None = None
    # an operator's maintenance window: {"until" (service clock), "since", "reason", "actor"}
    maintenance: dict[str, Any] | None = None

    def in_maintenance(self, service_now: int) -> bool:
        """Quiet by intent (app/monitor.py): no recovery, silence expected; ends at its deadline."""
        return self.maintenance is not None and service_now < self.maintenance["until"]

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
            self.gateway_version,
            self.maintenance,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> GatewayInfo:
        gid, first, last, accepted, skew, buckets, queued, dropped, tombstones, *rest = data
        info = cls(_intern(gid), first, last, accepted, skew, buckets, queued, dropped)
        info.tombstones = {(a, b): exp for a, b, exp in tombstones}
        info.keepalive_skews = rest[0] if rest else None  # release 0.1 kept none
        info.gateway_version = rest[1] if len(rest) > 1 else None  # nor did 0.2
        info.maintenance = rest[2] if len(rest) > 2 else None  # nor maintenance windows
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
