"""The monitor: owns time, scans candidate sessions, reports and decides recovery (README, "How it decides").

It runs past 400 lines because one visit of a session is one ordered chain (README, "How it
decides"; docs/design.md, "Closing the loop"): whether it is considered, its verdict under its
gateway's profile, the backoff, whether a recovery may be asked (silence, warm-up, maintenance,
the retry interval, the attempt budget), and what became of the last one (verification, the
needs-human list). The rules themselves live
elsewhere (app/classifier.py, app/store/); what stays here is their order, which split across
modules would be harder to follow than to scroll."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.classifier import (
    STALLED,
    STUCK,
    AttentionResult,
    active_abort_eligible_2026_9,
    classify_session_attention,
    classify_session_attention_2026_9,
    is_terminal_progress_reason,
)
from app.clock import Clock
from app.journal import JournalError
from app.outcomes import RecoveryRequest
from app.records import (
    Record,
    eviction_record,
    maintenance_record,
    memory_record,
    needs_human_record,
    verified_record,
)
from app.settings import Settings
from app.store import IDLE, PROCESSING, Attention, GatewayInfo, Session, Store
from app.vocabulary import (
    BUDGET_SPENT,
    INEFFECTIVE,
    OPENCLAW_2026_9,
    SEED,
    VERIFIED,
    profile_for,
)

log = logging.getLogger("openclaw.diagnostics.monitor")

# The scan yields to the event loop after this much time (checked every few sessions).
SCAN_SLICE_S = 0.002
SCAN_CHECK_EVERY = 64
LATE_TICK_MS = 1_000
EVICTION_SLICE = 1_000  # sessions in one eviction record: applying one holds the loop only briefly
# An eviction wave is spread over ticks: choosing and applying a million at once would stall ingest.
EVICTIONS_PER_TICK = 50_000


class JournalLike(Protocol):
    """Where the monitor's decisions go: applied to the store once committed (app/records.py)."""

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None: ...


class RecoveryRequester(Protocol):
    def request(self, session: Session, request: RecoveryRequest) -> None: ...


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    warn_ms: int
    abort_ms: int
    scan_interval_ms: int = 5_000
    stalled_report_interval_ms: int = 30_000
    gateway_silence_ms: int = 90_000
    session_idle_ttl_ms: int = 1_800_000
    max_sessions: int = 1_000_000
    classifier_profile: str = SEED
    retry_interval_ms: int = 30_000
    verify_ms: int = 60_000
    max_attempts: int = 3
    attempt_window_ms: int = 1_800_000

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: int) -> MonitorConfig:
        fields = {
            "warn_ms": settings.warn_ms,
            "abort_ms": settings.abort_ms,
            "scan_interval_ms": settings.scan_interval_ms,
            "stalled_report_interval_ms": settings.stalled_report_interval_ms,
            "gateway_silence_ms": settings.gateway_silence_ms,
            "session_idle_ttl_ms": settings.session_idle_ttl_ms,
            "max_sessions": settings.max_sessions,
            "classifier_profile": settings.classifier_profile,
            "retry_interval_ms": settings.retry_interval_ms,
            "verify_ms": settings.recovery_verify_ms,
            "max_attempts": settings.recovery_max_attempts,
            "attempt_window_ms": settings.recovery_attempt_window_ms,
        }
        return cls(**{**fields, **overrides})


Listener = Callable[[str, dict[str, Any]], None]


class Monitor:
    def __init__(
        self,
        store: Store,
        config: MonitorConfig,
        *,
        clock: Clock,
        journal: JournalLike,
        recovery: RecoveryRequester,
        recorder: Any,
        warm_until: int | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.journal = journal
        self.recovery = recovery
        self.recorder = recorder
        # After a start that restored sessions, no recovery until this service time.
        self.warm_until = warm_until
        self._profiles: dict[str | None, str] = {}  # gateway version -> profile
        self.listeners: list[Listener] = []
        self.ticks = 0
        self.last_tick_at: int | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="openclaw-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, after_tick: Callable[[], Awaitable[None]] | None = None) -> None:
        scheduled = self.clock.now_ms()
        while True:
            await self.clock.sleep_until(scheduled)
            started = self.clock.now_ms()
            lag = max(0, started - scheduled)
            try:
                await self.tick(started, lag)
            except Exception:  # one bad tick must not end monitoring
                log.exception("monitor tick failed")
            if after_tick is not None:
                await after_tick()
            scheduled += self.config.scan_interval_ms
            if scheduled < self.clock.now_ms() - self.config.scan_interval_ms:
                scheduled = self.clock.now_ms()  # overran by more than a tick: do not burst

    # -- one tick ---------------------------------------------------------------------------

    async def tick(self, now: int | None = None, lag_ms: int = 0) -> None:
        now = self.clock.now_ms() if now is None else now
        begun = time.perf_counter()
        allow_recovery = lag_ms <= LATE_TICK_MS
        store = self.store
        gateway_info = store.gateway_info
        slice_ends = time.perf_counter() + SCAN_SLICE_S
        for visited, session in enumerate(store.considered(), 1):
            if visited % SCAN_CHECK_EVERY == 0 and time.perf_counter() > slice_ends:
                await asyncio.sleep(0)  # let ingest in: the scan never holds the loop for long
                slice_ends = time.perf_counter() + SCAN_SLICE_S
            if not store.is_considered(session):
                continue  # changed or evicted while the scan yielded
            self._visit(session, gateway_info(session.gateway), now, allow_recovery)
        for info in store.gateway_infos():  # maintenance ends by itself at its deadline (journaled)
            if info.maintenance is not None and not info.in_maintenance(now):
                self.journal.submit(maintenance_record(info.gateway_id, None, now), wait=False)
                self.notify("maintenance_ended", {"gatewayId": info.gateway_id, "reason": "deadline",
                                                   "window": info.maintenance})
        self.ticks += 1
        self.last_tick_at = now
        self.recorder.scan_finished((time.perf_counter() - begun) * 1000, lag_ms)
        self.notify("tick", {"now": now})
        # eviction after the scan, within half a tick: the verdicts never wait for it
        await self._evict(now, begun + self.config.scan_interval_ms / 2000)

    def profile_of(self, info: GatewayInfo) -> str:
        """The classifier profile of a gateway's sessions (app/vocabulary.py, profile_for)."""
        version = info.gateway_version
        profile = self._profiles.get(version)
        if profile is None:
            profile = self._profiles[version] = profile_for(self.config.classifier_profile, version)
        return profile

    def _visit(self, session: Session, info: GatewayInfo, now: int, allow_recovery: bool) -> None:
        cfg = self.config
        warn = cfg.warn_ms
        gateway_now = info.now(now)
        if session.verifying is not None:
            self._verify(session, session.verifying, gateway_now)
        age = gateway_now - session.last_activity
        activity = session.activity
        profile = self._profiles.get(info.gateway_version) or self.profile_of(info)
        upstream = profile == OPENCLAW_2026_9
        # The considered-session rule, decided before any snapshot is built (most candidates
        # are fresh): markers are exactly "a kind is set or an embedded run is active".
        idle_queued_stall = (
            session.state == IDLE
            and session.queue_depth > 0
            and activity is not None
            and activity.has_markers()
            and activity.last_progress_at is not None
            and gateway_now - activity.last_progress_at > warn
        )
        if idle_queued_stall:
            attention_age = gateway_now - activity.last_progress_at  # type: ignore[union-attr,operator]
        elif upstream and activity is not None and activity.last_progress_at is not None and activity.has_markers():
            # 2026.9: owned work silent for longer than the session counts (the repeated-request
            # age, its third term, is not forwarded: docs/design.md)
            attention_age = max(age, gateway_now - activity.last_progress_at)
        else:
            attention_age = age
        previous = session.attention
        if previous is not None and previous.profile != profile:
            previous = None  # the profile switched: its backoff memory starts afresh
            stuck_age = long_age = stalled_at = None
        else:
            stuck_age = session.last_stuck_warn_age
            long_age = session.last_long_running_warn_age
            stalled_at = session.stalled_reported_at
        if not ((session.state == PROCESSING and attention_age > warn) or idle_queued_stall):
            if session.attention is not None:
                self.journal.submit(memory_record(session, None, stuck_age, long_age, stalled_at), wait=False)
            return
        snapshot = session.snapshot(gateway_now)
        if upstream:
            queue_depth = session.backlog()
            result = classify_session_attention_2026_9(
                state=session.state,  # type: ignore[arg-type]
                queue_depth=queue_depth,
                activity=snapshot,
                stale_ms=warn,
                abort_ms=cfg.abort_ms,
                now_ms=gateway_now,
            )
        else:
            queue_depth = session.queue_depth
            result = classify_session_attention(
                state=session.state,  # type: ignore[arg-type]
                queue_depth=queue_depth,
                activity=snapshot,
                stale_ms=warn,
            )
        same = (
            previous is not None
            and previous.event_type == result.event_type
            and previous.reason == result.reason
            and previous.active_work_kind == result.active_work_kind
        )
        attention = Attention(
            result.event_type,
            result.reason,
            result.classification,
            result.active_work_kind,
            result.recovery_eligible,
            attention_age,
            previous.since if same and previous is not None else gateway_now,
            profile,
        )
        report = False
        if result.event_type == STALLED:
            if stalled_at is None or gateway_now - stalled_at >= cfg.stalled_report_interval_ms:
                report = True
                stalled_at = gateway_now
        else:
            remembered = stuck_age if result.event_type == STUCK else long_age
            allowed = warn if remembered is None else max(remembered + warn, 2 * remembered)
            if attention_age >= allowed:
                report = True
                if result.event_type == STUCK:
                    stuck_age = attention_age
                else:
                    long_age = attention_age
        if not same:
            self.notify("attention_changed", {
                "gatewayId": session.gateway, "key": session.key, "sessionKey": session.session_key,
                "sessionId": session.session_id, "eventType": result.event_type, "reason": result.reason,
                "classification": result.classification, "activeWorkKind": result.active_work_kind,
                "state": session.state, "ageMs": attention_age, "classifierProfile": profile,
            })
        if report or not same:
            self.journal.submit(memory_record(session, attention, stuck_age, long_age, stalled_at), wait=False)
        else:
            previous.age_ms = attention_age  # type: ignore[union-attr]  # derived, recomputed every tick: not journaled
        if not report and not upstream:
            return  # seed: suppressed means nothing reported and no recovery this tick
        silent = now - info.last_heard > cfg.gateway_silence_ms
        warming = self.warm_until is not None and now < self.warm_until
        quiet = info.maintenance is not None and info.in_maintenance(now)  # an operator's window
        if report:
            payload = self._attention_payload(session, result, snapshot, attention_age, queue_depth,
                                              silent, warming, profile)
            self.recorder.attention_reported(payload)
            self.notify("attention", payload)
        # 2026.9: the backoff throttles the report only; recovery may follow on any eligible tick
        if silent or warming or quiet or not allow_recovery:
            return
        if upstream:
            abort = active_abort_eligible_2026_9(result, snapshot, cfg.abort_ms, gateway_now)
        else:
            abort = self._seed_abort_eligible(result, snapshot, attention_age)
        if not (result.recovery_eligible or abort):
            return
        last = _last_requested_at(session)
        if last is not None and gateway_now - last < cfg.retry_interval_ms:
            return  # whatever the profile: one automatic request per session per retry interval
        if session.needs_human is not None:
            return  # a person has it: no more automatic recoveries
        if _attempts(session, gateway_now - cfg.attempt_window_ms) >= cfg.max_attempts:
            self._needs_human(session, BUDGET_SPENT, gateway_now)
            return
        request = _request(session, result, attention_age, queue_depth, gateway_now,
                           result.active_work_kind if abort else None, abort)
        self.notify("recovery", request.as_json())
        self.recovery.request(session, request)

    # -- closing the loop: verification and the needs-human list ------------------------------

    def _verify(self, session: Session, pending: dict[str, Any], gateway_now: int) -> None:
        """A recovery the gateway said it carried out: it showed the session moved (an event
        stamped after the request: the store noted the first), or the verify window passed."""
        if pending["evidenceAt"] is not None:
            result = VERIFIED
        elif gateway_now - pending["appliedAt"] >= self.config.verify_ms:
            result = INEFFECTIVE
        else:
            return
        future = self.journal.submit(verified_record(session, result, gateway_now))
        assert future is not None
        future.add_done_callback(lambda done: self._verified(done, session))

    def _verified(self, done: asyncio.Future[Any], session: Session) -> None:
        if done.cancelled() or done.exception() is not None:
            return  # not committed: decided again at the next tick
        entry = done.result()
        if entry is None:
            return  # already closed by an earlier record
        payload = {"gatewayId": session.gateway, "sessionKey": session.session_key,
                   "sessionId": session.session_id, **entry}
        self.recorder.recovery_verified(payload)
        self.notify("recovery_verified", payload)
        if session.needs_human is not None and session.needs_human["since"] == entry["at"]:
            self.notify("needs_human", {"gatewayId": session.gateway, "sessionKey": session.session_key,
                                         "sessionId": session.session_id, **session.needs_human})

    def _needs_human(self, session: Session, cause: str, gateway_now: int) -> None:
        future = self.journal.submit(needs_human_record(session, cause, gateway_now))
        assert future is not None

        def put(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None and done.result():
                self.notify("needs_human", {"gatewayId": session.gateway, "sessionKey": session.session_key,
                                             "sessionId": session.session_id, "cause": cause, "since": gateway_now})

        future.add_done_callback(put)

    def _seed_abort_eligible(self, result: AttentionResult, snapshot: Any, attention_age: int) -> bool:
        """Between warn and abort a stalled run is observe-only (README, "How it decides")."""
        if result.event_type != STALLED:
            return False
        abort = self.config.abort_ms
        kind = result.active_work_kind
        lp = snapshot.last_progress_age_ms or 0
        return (
            (result.classification == "stalled_agent_run" and kind == "embedded_run" and attention_age >= abort)
            or (
                result.classification == "blocked_tool_call"
                and kind == "tool_call"
                and (snapshot.active_tool_age_ms or 0) >= abort
                and lp >= abort
            )
            or (
                result.classification == "stalled_agent_run"
                and kind == "model_call"
                and snapshot.has_active_embedded_run is True
                and lp >= abort
            )
        )

    def _attention_payload(
        self, session: Session, result: AttentionResult, snapshot: Any, attention_age: int,
        queue_depth: int, silent: bool, warming: bool, profile: str,
    ) -> dict[str, Any]:
        return {
            "eventType": result.event_type,
            "sessionKey": session.session_key,
            "sessionId": session.session_id,
            "gatewayId": session.gateway,
            "state": session.state,
            "ageMs": attention_age,
            "queueDepth": queue_depth,
            "reason": result.reason,
            "classification": result.classification,
            "activeWorkKind": result.active_work_kind,
            "lastProgressAgeMs": snapshot.last_progress_age_ms,
            "lastProgressReason": snapshot.last_progress_reason,
            "activeToolName": snapshot.active_tool_name,
            "activeToolCallId": snapshot.active_tool_call_id,
            "activeToolAgeMs": snapshot.active_tool_age_ms,
            "terminalProgressStale": is_terminal_progress_reason(snapshot.last_progress_reason),
            "gatewaySilent": silent,
            "warmingUp": warming,
            "classifierProfile": profile,
        }

    def notify(self, kind: str, payload: dict[str, Any]) -> None:
        """Tell the listeners (the change feed's watcher, replay): the monitor's decisions, and
        an operator's maintenance (app/actions.py)."""
        for listener in self.listeners:
            listener(kind, payload)


    # -- eviction ---------------------------------------------------------------------------

    async def _evict(self, now: int, until: float) -> None:
        """TTL and cap eviction after the scan, one slice at a time: each slice's record is
        committed and applied before the next is chosen, so a wave of evictions never queues
        ahead of the ingest requests behind it; it stops at `until` (perf_counter) so the
        tick ends in time, and goes on at the next one."""
        store = self.store
        cfg = self.config
        budget = EVICTIONS_PER_TICK
        while budget > 0 and time.perf_counter() < until:
            chunk = store.evictable(lambda info: info.now(now), cfg.session_idle_ttl_ms, min(budget, EVICTION_SLICE))
            if not chunk:
                break
            budget -= EVICTION_SLICE
            await self._evict_slice(chunk, "ttl")
        excess = min(store.session_count - cfg.max_sessions, budget)
        if excess > 0 and time.perf_counter() < until:
            await self._evict_slice(store.least_recently_active(excess), "cap")

    async def _evict_slice(self, sessions: list[Session], reason: str) -> None:
        """One record per gateway; counted as the records apply (an event in between keeps its
        session; a record that was not committed evicts nothing)."""
        by_gateway: dict[str, list[Session]] = {}
        for session in sessions:
            by_gateway.setdefault(session.gateway, []).append(session)
        for gateway, chosen in by_gateway.items():
            for start in range(0, len(chosen), EVICTION_SLICE):
                future = self.journal.submit(eviction_record(gateway, chosen[start:start + EVICTION_SLICE]))
                assert future is not None
                try:
                    evicted = await future
                except JournalError:
                    return  # chosen again once the journal commits
                if evicted:
                    self.recorder.sessions_evicted(reason, len(evicted))


def _request(
    session: Session, result: AttentionResult, attention_age: int, queue_depth: int, gateway_now: int,
    kind: str | None, allow_abort: bool,
) -> RecoveryRequest:
    return RecoveryRequest(
        gatewayId=session.gateway,
        sessionKey=session.session_key,
        sessionId=session.session_id,
        ageMs=attention_age,
        queueDepth=queue_depth,
        expectedState=session.state,
        stateGeneration=session.generation,
        reason=str(result.reason),
        activeWorkKind=kind,
        allowActiveAbort=allow_abort,
        requestedAt=gateway_now,
    )


# what counts against the attempt budget: a request that reached the executor (README, "Actions")
_ATTEMPTED = frozenset({"aborted", "released", "noop", "failed"})


def _attempts(session: Session, since: int) -> int:
    """Automatic recoveries of the session completed since `since` (gateway clock), and since
    an operator last took it off the needs-human list (a fresh budget from there)."""
    count = 0
    for entry in reversed(session.recoveries or ()):
        kind = entry.get("kind")
        if kind == "dismissed":
            break
        if (kind == "completed" and entry.get("origin", "automatic") == "automatic"
                and entry.get("status") in _ATTEMPTED and entry.get("completedAt", 0) >= since):
            count += 1
    return count


def _last_requested_at(session: Session) -> int | None:
    """When the monitor last asked for this session's recovery (its recovery history)."""
    if session.inflight is not None:
        return session.inflight.requestedAt
    for entry in reversed(session.recoveries or ()):
        if entry.get("kind") == "requested":
            return entry.get("requestedAt")
    return None
