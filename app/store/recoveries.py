"""The monitor's memory of a session and the recoveries it requested, as the store keeps them."""

from __future__ import annotations

from typing import Any

from app.outcomes import (
    MUTATING,
    SKIPPED_IN_FLIGHT,
    RecoveryOutcome,
    RecoveryRequest,
    completion,
)
from app.store.model import (
    HISTORY_LIMIT,
    IDLE,
    Attention,
    RecoveryCompletion,
    Session,
)
from app.vocabulary import INEFFECTIVE, INEFFECTIVE_TWICE, OPENCLAW_2026_9, SEED


class RecoveryMemory:
    """Monitor memory, in-flight recoveries and their completion.

    Part of `Store` (app/store/store.py), which owns the state these methods change.
    """

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

    def set_inflight(self, session: Session, request: RecoveryRequest | None) -> None:
        self._change(session)
        session.inflight = request

    def add_recovery(self, session: Session, entry: dict[str, Any]) -> None:
        self._change(session)
        session.recoveries = ((session.recoveries or []) + [entry])[-HISTORY_LIMIT:]

    def begin_recovery(self, session: Session, request: RecoveryRequest) -> bool:
        """Record a requested recovery, unless one is already in flight for the session."""
        if session.inflight is not None:
            return False
        self.set_inflight(session, request)
        self.add_recovery(session, {"kind": "requested", **request.as_json()})
        return True

    def complete_recovery(self, session: Session | None, request: RecoveryRequest, outcome: RecoveryOutcome,
                          now: int, profile: str = SEED) -> RecoveryCompletion:
        """Record what the gateway answered; apply a mutating answer that passes the guard (the
        guard and what is applied follow the gateway's profile: docs/design.md)."""
        upstream = profile == OPENCLAW_2026_9
        applied = stale = False
        if session is not None and session.inflight is not None and session.inflight != request:
            # Another request is in flight (two sessions merged while both were in recovery).
            outcome = SKIPPED_IN_FLIGHT
        elif outcome.status in MUTATING if upstream else outcome.mutating:
            # an event the gateway sent for the session after it was asked is the evidence it
            # moved; the gateway's own end of an aborted run often comes before its answer
            moved = session is not None and session.touched_at() >= request.requestedAt
            if session is not None and self.is_current(session, request, outcome, upstream):
                self.apply_recovery(session, request, outcome, now, upstream)
                applied = True
            else:
                stale = True
            if session is not None and outcome.status in MUTATING:
                # did it help? the gateway has to show it (app/monitor.py decides)
                self._change(session)
                session.verifying = {"requestedAt": request.requestedAt, "appliedAt": now, "origin": request.origin,
                                     "reason": request.reason, "evidenceAt": session.touched_at() if moved else None}
                self._reindex(session)
        entry = completion(request, outcome)
        if upstream:
            # 2026.9 reports the work the gateway found, not the work the request named
            if outcome.activeWorkKind is None:
                entry.pop("activeWorkKind", None)
            else:
                entry["activeWorkKind"] = outcome.activeWorkKind
        if stale:
            entry["stale"] = True
        if session is not None:
            if session.inflight == request:
                self.set_inflight(session, None)
            self.add_recovery(session, {"kind": "completed", "completedAt": now, **entry})
        return RecoveryCompletion(entry, applied)

    def finish_verification(self, session: Session, result: str, at: int) -> dict[str, Any] | None:
        """Close a pending verification as `verified` or `ineffective` (a monitor decision, journaled);
        two ineffective in a row put the session on the needs-human list. The history entry, or
        None when there was nothing to close (already closed, or replaced by a newer recovery)."""
        pending = session.verifying
        if pending is None:
            return None
        self._change(session)
        session.verifying = None
        entry = {"kind": "verified", "result": result, "at": at, "appliedAt": pending["appliedAt"],
                 "origin": pending["origin"], "reason": pending["reason"]}
        self.add_recovery(session, entry)
        if result == INEFFECTIVE:
            verdicts = [e["result"] for e in session.recoveries or () if e.get("kind") == "verified"]
            if verdicts[-2:] == [INEFFECTIVE, INEFFECTIVE] and session.needs_human is None:
                session.needs_human = {"cause": INEFFECTIVE_TWICE, "since": at}
        self._reindex(session)
        return entry

    def mark_needs_human(self, session: Session, cause: str, at: int) -> bool:
        if session.needs_human is not None:
            return False
        self._change(session)
        session.needs_human = {"cause": cause, "since": at}
        self._reindex(session)
        return True

    def set_maintenance(self, gateway: str, window: dict[str, Any] | None) -> bool:
        """Begin (a window) or end (None) a gateway's maintenance; False for an unknown gateway."""
        info = self._gateways.get(gateway)
        if info is None:
            return False
        info.maintenance = window  # every checkpoint writes the gateways
        return True

    def dismiss(self, session: Session, at: int) -> bool:
        """An operator took it off the needs-human list (or asked for its recovery): the automatic
        attempts start a fresh budget from here (app/monitor.py counts only those after it)."""
        if session.needs_human is None:
            return False
        self._change(session)
        session.needs_human = None
        self.add_recovery(session, {"kind": "dismissed", "at": at})
        self._reindex(session)
        return True

    def is_current(self, session: Session, request: RecoveryRequest, outcome: RecoveryOutcome,
                   upstream: bool = False) -> bool:
        """The processing-generation guard (README, "Recovery webhook contract"). The 2026.9
        gateways also accept an idle session one generation on for an idle abort: the abort's
        own end of the run moved it."""
        generation, expected = request.stateGeneration, request.expectedState
        if upstream and expected == IDLE and outcome.action == "abort_embedded_run":
            current = session.state == IDLE and session.generation in (generation, generation + 1)
        else:
            current = session.generation == generation and session.state == expected
        if not current:
            return False
        activity = session.activity
        if activity is None:
            return True
        requested_at = request.requestedAt
        return not any(started > requested_at for started in activity.embedded_runs.values())

    def apply_recovery(self, session: Session, request: RecoveryRequest, outcome: RecoveryOutcome,
                       now: int, upstream: bool = False) -> None:
        """A mutating outcome that passed the guard: the session is released to idle."""
        self._change(session)
        status = outcome.status
        released = outcome.released or 0
        queued_count = outcome.queuedCount
        if upstream:
            clears = (status == "released" or (status == "aborted" and released > 0)) and not queued_count
            keeps_queued = request.expectedState == IDLE and (queued_count or 0) > 0
        else:
            clears = (
                status == "released"
                or (status == "aborted" and released > 0 and queued_count == 0)
                or (status == "noop" and outcome.outcomeReason == "no_active_work")
            )
            keeps_queued = status == "aborted" and request.expectedState == IDLE and (queued_count or 0) > 0
        if clears:
            depth = 0
        elif keeps_queued:
            depth = max(session.queue_depth, request.queueDepth)
        else:
            depth = max(0, session.queue_depth - 1)
        self._set_state(session, IDLE)
        session.last_activity = max(session.last_activity, now)
        session.generation += 1
        session.queue_depth = depth
        session.clear_monitor_memory()
        if session.activity is not None:
            session.activity.clear_work()
        gateway = self._gateways.get(session.gateway)
        if gateway is not None:
            self._end_runs(gateway, session, now)
        self._reindex(session)
