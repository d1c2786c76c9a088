"""Applying one event to the store: session state, activity markers, usage, gateway verdicts, keepalives."""

from __future__ import annotations

from app.events import (
    ACTIVITY_TYPES,
    GATEWAY_RECOVERY_TYPES,
    GATEWAY_VERDICT_TYPES,
    KEEPALIVE_TYPE,
    KNOWN_TYPES,
    METRICS_ONLY_TYPES,
    SESSION_STATE_TYPES,
    Event,
)
from app.store.dedupe import dedupe_key
from app.store.markers import (
    _int_or_none,
    _marker,
)
from app.store.model import (
    ACCEPTED,
    DEFAULT_GATEWAY,
    DUPLICATE,
    FUTURE_TOLERANCE_MS,
    HISTORY_LIMIT,
    IDLE,
    IGNORED,
    MAX_TOMBSTONES,
    PROCESSING,
    REJECTED,
    RUN_MAPPING_GRACE_MS,
    TOMBSTONE_MS,
    Activity,
    ApplyResult,
    GatewayInfo,
    Session,
    _intern,
)


class EventAppliers:
    """What each event type does to its session.

    Part of `Store` (app/store/store.py), which owns the state these methods change.
    """

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
        if session.verifying is not None or session.needs_human is not None:
            _moved(session, ts)
        session.last_activity = max(session.last_activity, ts)
        session.generation += 1
        session.clear_monitor_memory()
        if event.type == "message.queued":
            session.queue_depth = event.queueDepth if event.queueDepth is not None else session.queue_depth + 1
        elif event.type == "session.state":
            entering = session.state != PROCESSING
            self._set_state(session, _intern(event.state or IDLE))
            if event.queueDepth is not None:
                session.queue_depth = event.queueDepth
            elif session.state == IDLE:
                session.queue_depth = max(0, session.queue_depth - 1)
            if session.state == PROCESSING:
                if entering:
                    session.active_queued_turn = session.queue_depth > 0
            elif session.state == IDLE:
                session.active_queued_turn = False
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
        if session.verifying is not None or session.needs_human is not None:
            _moved(session, ts)
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
        if event.gatewayVersion is not None:
            info.gateway_version = event.gatewayVersion
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


def _moved(session: Session, ts: int) -> None:
    """An event the gateway sent for the session: evidence that a recovery asked for before `ts`
    helped (the monitor closes the verification), and it leaves the needs-human list."""
    pending = session.verifying
    if pending is not None and pending["evidenceAt"] is None and ts >= pending["requestedAt"]:
        pending["evidenceAt"] = ts
    if session.needs_human is not None and ts >= session.needs_human["since"]:
        session.needs_human = None
