"""What an operator may do (README, "Actions"): recover a session, take it off the needs-human
list — each through the same journal, coordinator, generation guard and executor as what the
service does by itself, and each written to the audit log (who by the token's name, never the
token; when; why; what came of it). The HTTP face is app/http/actions.py; this module knows
nothing of HTTP.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from app.journal import JournalError
from app.outcomes import RecoveryRequest
from app.records import audit_record, dismissed_record, maintenance_record
from app.store import Session

if TYPE_CHECKING:
    from app.service import Service

Mode = Literal["auto", "abort", "release"]
MAX_BULK = 1_000  # sessions one bulk recovery may ask for
MAX_MAINTENANCE_MS = 24 * 3_600_000


class ActionRefused(Exception):
    """The action cannot be done; `status` and `code` say how the HTTP face answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Done:
    audit_id: int  # the audit entry's id: what the caller is answered with
    entry: dict[str, Any]


class Actions:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._tasks: set[asyncio.Future[None]] = set()  # paced bulk recoveries under way

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def recover(self, session: Session, *, mode: Mode, reason: str, actor: str) -> Done:
        """Ask the gateway to recover the session now. `abort` may abort its active work,
        `release` only releases the lane, `auto` aborts when work is active and releases
        otherwise. It takes the session off the needs-human list."""
        service = self.service
        if service.settings.recovery_mode == "observe":
            raise ActionRefused(422, "no_executor", "recovery mode is observe: there is nobody to ask "
                                                    "(set OPENCLAW_DIAG_RECOVERY_MODE=webhook)")
        if session.inflight is not None:
            raise ActionRefused(409, "in_flight", "a recovery of this session is already in flight")
        abort = _aborts(session, mode)
        # written down first: an action the audit log cannot hold is not taken
        done = await self._audit(session, "recover", reason, actor, {"mode": mode, "allowActiveAbort": abort,
                                                                    "result": "requested"})
        self._request(session, mode)
        return done

    def _request(self, session: Session, mode: Mode) -> None:
        """An operator's recovery request, through the coordinator; it takes the session off the
        needs-human list."""
        service = self.service
        gateway_now = service.gateway_now(session.gateway)
        abort = _aborts(session, mode)
        attention = session.attention
        request = RecoveryRequest(
            gatewayId=session.gateway, sessionKey=session.session_key, sessionId=session.session_id,
            ageMs=max(0, gateway_now - session.last_activity), queueDepth=session.queue_depth,
            expectedState=session.state, stateGeneration=session.generation,
            # the verdict's reason (a low-cardinality metric attribute); the person's is audited
            reason=str(attention.reason) if attention is not None else "operator_request",
            activeWorkKind=attention.active_work_kind if abort and attention is not None else None,
            allowActiveAbort=abort, requestedAt=gateway_now, origin="operator",
        )
        if session.needs_human is not None:
            service.journal.submit(dismissed_record(session, gateway_now), wait=False)
        service.coordinator.request(session, request)

    async def recover_many(self, sessions: list[Session], *, reason: str, actor: str, dry_run: bool) -> dict[str, Any]:
        """Recover a filtered set (at most MAX_BULK; those with a recovery in flight are left out):
        a dry run only says which; otherwise one audit entry, then the requests, paced per gateway
        at OPENCLAW_DIAG_BULK_RECOVERY_PER_S so that no gateway is flooded."""
        chosen = [s for s in sessions[:MAX_BULK] if s.inflight is None]
        targets = [{"gatewayId": s.gateway, "sessionKey": s.session_key, "sessionId": s.session_id} for s in chosen]
        answer: dict[str, Any] = {"dryRun": dry_run, "sessions": targets, "truncated": len(sessions) > MAX_BULK}
        if dry_run or not chosen:
            return answer
        if self.service.settings.recovery_mode == "observe":
            raise ActionRefused(422, "no_executor", "recovery mode is observe: there is nobody to ask "
                                                    "(set OPENCLAW_DIAG_RECOVERY_MODE=webhook)")
        done = await self._audit(None, "recover_many", reason, actor, {"count": len(chosen), "result": "requested"})
        by_gateway: dict[str, list[Session]] = {}
        for session in chosen:
            by_gateway.setdefault(session.gateway, []).append(session)
        for gateway, batch in by_gateway.items():
            task = asyncio.ensure_future(self._paced(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        answer["auditId"] = str(done.audit_id)
        return answer

    async def _paced(self, batch: list[Session]) -> None:
        """One gateway's share of a bulk recovery: one request every 1/BULK_RECOVERY_PER_S s."""
        clock = self.service.clock
        gap_ms = int(1000 / self.service.settings.bulk_recovery_per_s)
        for n, session in enumerate(batch):
            if n:
                await clock.sleep_until(clock.now_ms() + gap_ms)
            if not self.service.store.holds(session) or session.inflight is not None:
                continue  # gone, or already being recovered
            self._request(session, "auto")

    async def dismiss(self, session: Session, *, reason: str, actor: str) -> Done:
        """Take the session off the needs-human list (a person has it in hand)."""
        if session.needs_human is None:
            raise ActionRefused(409, "not_on_the_list", "the session is not on the needs-human list")
        done = await self._audit(session, "dismiss", reason, actor,
                                 {"cause": session.needs_human["cause"], "result": "dismissed"})
        self.service.journal.submit(dismissed_record(session, self.service.gateway_now(session.gateway)), wait=False)
        return done

    async def maintenance(self, gateway: str, *, until: int | None, reason: str, actor: str) -> Done:
        """Begin a gateway's maintenance until `until` (service clock, at most MAX_MAINTENANCE_MS
        ahead), or end it (None): while it lasts no recovery is requested for its sessions and
        its silence is expected; it ends by itself at the deadline (app/monitor.py)."""
        service = self.service
        info = service.store.gateway_info(gateway)
        if info is None:
            raise ActionRefused(404, "not_found", "no such gateway")
        now = service.clock.now_ms()
        if until is not None and not now < until <= now + MAX_MAINTENANCE_MS:
            raise ActionRefused(422, "validation_failed", "until must be in the future and at most 24 h ahead")
        if until is None and not info.in_maintenance(now):
            raise ActionRefused(409, "not_in_maintenance", "the gateway is not in maintenance")
        window = {"until": until, "since": now, "reason": reason, "actor": actor} if until is not None else None
        done = await self._audit(None, "maintenance" if until is not None else "end_maintenance", reason, actor,
                                 {"until": until, "result": "began" if until is not None else "ended"}, gateway)
        service.journal.submit(maintenance_record(gateway, window, now), wait=False)
        service.monitor.notify("maintenance_began" if window else "maintenance_ended",
                                         {"gatewayId": gateway, "reason": reason, "window": window or info.maintenance})
        return done

    async def _audit(self, session: Session | None, action: str, reason: str, actor: str,
                     details: dict[str, Any], gateway: str | None = None) -> Done:
        entry = {"at": self.service.clock.now_ms(), "actor": actor, "action": action, "reason": reason,
                 "gatewayId": session.gateway if session is not None else gateway,
                 "sessionKey": session.session_key if session is not None else None,
                 "sessionId": session.session_id if session is not None else None, **details}
        future = self.service.journal.submit(audit_record(entry))
        assert future is not None
        try:
            audit_id = await future
        except JournalError as exc:  # the action was taken; its record could not be written yet
            raise ActionRefused(503, "journal_unavailable", f"the audit log cannot be written: {exc}") from exc
        return Done(audit_id, entry)


def _aborts(session: Session, mode: Mode) -> bool:
    """`abort` may abort the active work; `auto` does when work is active; `release` never."""
    active = session.activity is not None and session.activity.has_markers()
    return mode == "abort" or (mode == "auto" and active)
