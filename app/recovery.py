"""Recovery: the coordinator (one recovery in flight per session, the generation guard) and
the executors that ask a gateway to act (README, "Recovery webhook contract").

The gateway owns its lanes and runs; this service only asks, and records what it was told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import msgspec

from app.journal import JournalError
from app.outcomes import (
    ACTIONS,
    NO_RECOVERY_TARGET,
    SKIPPED_IN_FLIGHT,
    GatewayAnswer,
    RecoveryOutcome,
    RecoveryRequest,
    failed,
)
from app.records import Record, applied_state_record, completed_record, requested_record
from app.store import IDLE, RecoveryCompletion, Session, Store
from app.vocabulary import SEED, profile_for
from app.webhook_address import AddressBook

log = logging.getLogger("openclaw.diagnostics.recovery")

MAX_ANSWER_BYTES = 64 * 1024  # a recovery outcome is a few hundred bytes

class Executor(Protocol):
    async def execute(self, request: RecoveryRequest) -> RecoveryOutcome: ...

    async def aclose(self) -> None: ...


class ObserveExecutor:
    """The default: nobody is asked, so nothing is released — and the dashboards say so."""

    async def execute(self, request: RecoveryRequest) -> RecoveryOutcome:
        return NO_RECOVERY_TARGET

    async def aclose(self) -> None:
        return None


class WebhookExecutor:
    """POSTs the request to the gateway's recovery webhook; no retry (an abort must not act twice).

    The address and the secret come from the operator's settings, never from the request
    (app/webhook_address.py); no redirect is followed; the answer is read up to MAX_ANSWER_BYTES.
    """

    def __init__(self, addresses: AddressBook, timeout_ms: int = 10_000) -> None:
        self.addresses = addresses
        self._client = httpx.AsyncClient(timeout=timeout_ms / 1000, follow_redirects=False)

    async def execute(self, request: RecoveryRequest) -> RecoveryOutcome:
        address = self.addresses.address(request.gatewayId)
        if address is None:
            return failed("unsafe_gateway_id")
        headers = {"Authorization": f"Bearer {address.token}"} if address.token else {}
        try:
            async with self._client.stream("POST", address.url, json=request.as_json(), headers=headers) as response:
                if response.status_code != 200:
                    return failed("exception", f"webhook answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        return failed("exception", f"webhook answer larger than {MAX_ANSWER_BYTES} bytes")
        except httpx.HTTPError as exc:
            return failed("exception", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        try:
            outcome = msgspec.json.decode(bytes(body), type=GatewayAnswer)
        except msgspec.DecodeError as exc:  # ValidationError included: not JSON, or not the contract
            return failed("exception", f"invalid webhook outcome: {exc}")
        if outcome.action not in ACTIONS[outcome.status]:
            return failed("exception", f"invalid webhook outcome: action {outcome.action} with status {outcome.status}")
        return outcome

    async def aclose(self) -> None:
        await self._client.aclose()


class JournalLike(Protocol):
    """Where the coordinator's records go: applied to the store once committed (app/records.py)."""

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None: ...


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
        profile_setting: str = SEED,
    ) -> None:
        self.store = store
        self.journal = journal
        self.recorder = recorder
        self.executor = executor
        self.now_ms = now_ms
        self.timeout_ms = timeout_ms
        self.profile_setting = profile_setting
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def request(self, session: Session, request: RecoveryRequest) -> None:
        """Called by the monitor (synchronously): the request is journaled in the scan's order, the
        rest runs as a task."""
        future = self.journal.submit(requested_record(session, request))
        assert future is not None
        self._spawn(self._run(session.gateway, session.key, request, future))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, gateway: str, key: str, request: RecoveryRequest, future: asyncio.Future[bool]) -> None:
        try:
            begun = await future
        except JournalError:
            return  # not committed: nothing was asked, nothing is in flight; the monitor asks again
        if not begun:  # another recovery is in flight for the session
            await self._complete(gateway, key, request, SKIPPED_IN_FLIGHT)
            return
        self.recorder.recovery_requested(request.as_json())
        async with self._slots:
            # The gateway is asked only once the request is durable: a crash after this
            # point completes it as failed / service_restarted on the next start.
            try:
                outcome = await asyncio.wait_for(self.executor.execute(request), self.timeout_ms / 1000)
            except asyncio.TimeoutError:
                outcome = failed("exception", f"no answer within {self.timeout_ms} ms")
            except Exception as exc:  # an executor bug must not end the coordinator
                outcome = failed("exception", f"{type(exc).__name__}: {exc}")
        await self._complete(gateway, key, request, outcome)

    async def complete(self, request: RecoveryRequest, outcome: RecoveryOutcome) -> dict[str, Any]:
        """Record an outcome for a request (the executors' answer, or a test's)."""
        key = request.sessionKey or request.sessionId or ""
        return await self._complete(request.gatewayId, key, request, outcome)

    async def _complete(self, gateway: str, key: str, request: RecoveryRequest,
                        outcome: RecoveryOutcome) -> dict[str, Any]:
        """Journal the outcome — retried until it is committed: the gateway may have acted —
        then apply-time decides (the generation guard), and telemetry follows what it decided."""
        delay = 0.05
        while True:
            session = self.store.find(gateway, key)
            info = self.store.gateway_info(gateway)
            profile = profile_for(self.profile_setting, info.gateway_version if info else None)
            future = self.journal.submit(
                completed_record(gateway, key, request, outcome, self._gateway_now(session), profile))
            assert future is not None
            try:
                done: RecoveryCompletion = await future
                break
            except JournalError as exc:
                log.warning("recovery outcome not committed yet, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
        entry = done.entry
        session = self.store.find(gateway, key)
        if done.applied and session is not None:
            # a record of what was applied (docs/durability.md), not a new inbound event
            reason = f"stuck_recovery:{outcome.status}"
            self.journal.submit(applied_state_record(session, reason, session.last_activity), wait=False)
            self.recorder.session_state(session.gateway, IDLE, reason)
        self.recorder.recovery_completed(entry)
        for listener in self.listeners:
            listener("recovery_completed", entry)
        return entry

    def _gateway_now(self, session: Session | None) -> int:
        now = self.now_ms()
        info = self.store.gateway_info(session.gateway) if session is not None else None
        return info.now(now) if info else now

    async def complete_interrupted(self) -> int:
        """Recoveries in flight when the process died end as failed / service_restarted."""
        interrupted = [s for s in self.store.iter_sessions() if s.inflight is not None]
        for session in interrupted:
            request = session.inflight
            assert request is not None
            await self._complete(session.gateway, session.key, request, failed("service_restarted"))
        return len(interrupted)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.executor.aclose()
