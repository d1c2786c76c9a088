"""Recovery: the coordinator (one recovery in flight per session, the generation guard) and
the executors that ask a gateway to act (spec: monitor.md, "Coordinator" and "Recovery executors").

The gateway owns its lanes and runs; this service only asks, and records what it was told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.store import IDLE, Session, Store

log = logging.getLogger("openclaw.diagnostics.recovery")

MUTATING = frozenset({"aborted", "released"})


class RecoveryOutcome(BaseModel):
    """What a gateway answers to a recovery request (the webhook's 200 body)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["aborted", "released", "skipped", "noop", "failed"]
    action: Literal["abort_embedded_run", "release_lane", "observe_only", "keep_lane", "none"]
    outcomeReason: str | None = Field(None, max_length=128)
    released: int | None = Field(None, ge=0)
    queuedCount: int | None = Field(None, ge=0)
    aborted: bool | None = None
    drained: bool | None = None
    forceCleared: bool | None = None
    error: str | None = Field(None, max_length=2000)


_ACTIONS = {
    "aborted": {"abort_embedded_run"},
    "released": {"release_lane"},
    "skipped": {"observe_only", "keep_lane"},
    "noop": {"none"},
    "failed": {"none"},
}


def failed(reason: str, error: str | None = None) -> dict[str, Any]:
    outcome: dict[str, Any] = {"status": "failed", "action": "none", "outcomeReason": reason}
    if error is not None:
        outcome["error"] = error
    return outcome


SKIPPED_IN_FLIGHT = {"status": "skipped", "action": "observe_only", "outcomeReason": "already_in_flight"}


class Executor(Protocol):
    async def execute(self, request: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class ObserveExecutor:
    """The default: nobody is asked, so nothing is released — and the dashboards say so."""

    async def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"status": "skipped", "action": "observe_only", "outcomeReason": "no_recovery_target"}

    async def aclose(self) -> None:
        return None


class WebhookExecutor:
    """POSTs the request to the gateway's recovery webhook; no retry (an abort must not act twice)."""

    def __init__(self, url_template: str, token: str = "", timeout_ms: int = 10_000) -> None:
        self.url_template = url_template
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout_ms / 1000, headers=headers)

    def url_for(self, gateway_id: str) -> str:
        return self.url_template.replace("{gatewayId}", quote(gateway_id, safe=""))

    async def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(self.url_for(request["gatewayId"]), json=request)
        except httpx.HTTPError as exc:
            return failed("exception", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if response.status_code != 200:
            return failed("exception", f"webhook answered HTTP {response.status_code}")
        try:
            outcome = RecoveryOutcome.model_validate_json(response.content)
        except ValidationError as exc:
            return failed("exception", f"invalid webhook outcome: {exc.errors()[0]['msg']}")
        if outcome.action not in _ACTIONS[outcome.status]:
            return failed("exception", f"invalid webhook outcome: action {outcome.action} with status {outcome.status}")
        return outcome.model_dump(exclude_none=True)

    async def aclose(self) -> None:
        await self._client.aclose()


def is_mutating(outcome: dict[str, Any]) -> bool:
    return outcome["status"] in MUTATING or (
        outcome["status"] == "noop" and outcome.get("outcomeReason") == "no_active_work"
    )


def completion(request: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """`{...request, status, action, outcomeReason?, released? (> 0 only), stale?}`."""
    entry = {**request, "status": outcome["status"], "action": outcome["action"]}
    if outcome.get("outcomeReason"):
        entry["outcomeReason"] = outcome["outcomeReason"]
    if (outcome.get("released") or 0) > 0:
        entry["released"] = outcome["released"]
    if outcome.get("error"):
        entry["error"] = outcome["error"]
    return entry


class JournalLike(Protocol):
    def record_requested(self, session: Session, request: dict[str, Any]) -> None: ...

    def record_completed(self, session: Session | None, request: dict[str, Any], outcome: dict[str, Any],
                         entry: dict[str, Any], applied: bool, now: int) -> None: ...

    def record_applied_state(self, session: Session, reason: str, at: int) -> None: ...

    def flush(self) -> None: ...

    async def commit(self) -> None: ...


class RecoveryCoordinator:
    def __init__(
        self,
        store: Store,
        journal: JournalLike,
        recorder: Any,
        executor: Executor,
        *,
        now_ms: Callable[[], int],
        concurrency: int = 16,
        timeout_ms: int = 10_000,
    ) -> None:
        self.store = store
        self.journal = journal
        self.recorder = recorder
        self.executor = executor
        self.now_ms = now_ms
        self.timeout_ms = timeout_ms
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def request(self, session: Session, request: dict[str, Any]) -> None:
        """Called by the monitor (synchronously); the executor runs as a task."""
        if session.inflight is not None:
            self._emit_completed(session, request, SKIPPED_IN_FLIGHT, False)
            return
        self.store.set_inflight(session, request)
        self.store.add_recovery(session, {"kind": "requested", **request})
        self.journal.record_requested(session, request)
        self.recorder.recovery_requested(request)
        task = asyncio.create_task(self._run(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: dict[str, Any]) -> None:
        async with self._slots:
            try:
                # The gateway is asked only once the request is durable: a crash after this
                # point completes it as failed / service_restarted on the next start.
                await self.journal.commit()
                outcome = await asyncio.wait_for(self.executor.execute(request), self.timeout_ms / 1000)
            except asyncio.TimeoutError:
                outcome = failed("exception", f"no answer within {self.timeout_ms} ms")
            except Exception as exc:  # an executor bug must not end the coordinator
                outcome = failed("exception", f"{type(exc).__name__}: {exc}")
        self.complete(request, outcome)

    def complete(self, request: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
        store = self.store
        session = store.find(request["gatewayId"], request.get("sessionKey") or request.get("sessionId") or "")
        if session is not None and session.inflight is not request and session.inflight is not None:
            # Two sessions merged while both were in recovery: one stays in flight.
            return self._emit_completed(session, request, SKIPPED_IN_FLIGHT, False)
        applied = False
        stale = False
        if is_mutating(outcome):
            if session is not None and store.is_current(session, request):
                store.apply_recovery(session, request, outcome, self._gateway_now(session))
                applied = True
            else:
                stale = True
        if applied and session is not None:
            # a record of what was applied (monitor.md), not a new inbound event
            reason = f"stuck_recovery:{outcome['status']}"
            self.journal.record_applied_state(session, reason, session.last_activity)
            self.recorder.session_state(session.gateway, IDLE, reason)
        return self._emit_completed(session, request, outcome, applied, stale)

    def _gateway_now(self, session: Session) -> int:
        info = self.store.gateways.get(session.gateway)
        now = self.now_ms()
        return info.now(now) if info else now

    def _emit_completed(
        self, session: Session | None, request: dict[str, Any], outcome: dict[str, Any], applied: bool,
        stale: bool = False,
    ) -> dict[str, Any]:
        entry = completion(request, outcome)
        if stale:
            entry["stale"] = True
        now = self._gateway_now(session) if session is not None else self.now_ms()
        history = {"kind": "completed", "completedAt": now, **entry}
        if session is not None:
            if session.inflight is request:
                self.store.set_inflight(session, None)
            self.store.add_recovery(session, history)
        self.journal.record_completed(session, request, outcome, history, applied, now)
        self.journal.flush()
        self.recorder.recovery_completed(entry)
        for listener in self.listeners:
            listener("recovery_completed", entry)
        return entry

    def complete_interrupted(self) -> int:
        """Recoveries in flight when the process died end as failed / service_restarted."""
        interrupted = [s for s in self.store.iter_sessions() if s.inflight is not None]
        for session in interrupted:
            request = session.inflight
            assert request is not None
            self._emit_completed(session, request, failed("service_restarted"), False)
        return len(interrupted)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.executor.aclose()
