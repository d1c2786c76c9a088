"""The operator's actions over HTTP (README, "Actions"): operator tokens only (a token that may
only read gets 403), each with a reason, each audited; the actions themselves are app/actions.py.
`GET /v1/audit` reads the audit log with any reading token, within its scope."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.actions import ActionRefused, Actions
from app.http.auth import (
    actor_of,
    require_operator,
    require_token,
    scope_of,
    service_of,
)
from app.http import fleet
from app.http.errors import ApiError
from app.queries import AmbiguousSession, UnknownSession

operator = APIRouter(prefix="/v1", dependencies=[Depends(require_operator)], tags=["actions"])
reader = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["actions"])

Reason = Field(..., min_length=1, max_length=500, description="Why: recorded in the audit log.")


class RecoverBody(BaseModel):
    reason: str = Reason
    action: Literal["auto", "abort", "release"] = Field(
        "auto", description="abort: may abort the active work; release: only release the lane; auto: abort "
                            "when work is active, else release.")
    gatewayId: str | None = Field(None, max_length=128)


class DismissBody(BaseModel):
    reason: str = Reason
    gatewayId: str | None = Field(None, max_length=128)


def _actions(request: Request) -> Actions:
    return service_of(request).actions


def _session(request: Request, key: str, gateway_id: str | None) -> Any:
    try:
        return service_of(request).queries.resolve(scope_of(request), key, gateway_id)
    except UnknownSession:
        hint = " on this instance: name its gatewayId, so the gateway's instance is asked" if (
            service_of(request).ownership.shared and gateway_id is None) else ""
        raise ApiError(404, "not_found", f"no such session{hint}") from None
    except AmbiguousSession as exc:
        raise ApiError(409, "ambiguous", "several gateways have this session key: give gatewayId",
                       [{"loc": ["body", "gatewayId"], "msg": gateway} for gateway in exc.gateways]) from None


def _refused(exc: ActionRefused) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@operator.post("/sessions/{sessionKey:path}/recover", status_code=202,
               summary="Ask the gateway to recover one session now (audited)")
async def recover(request: Request, sessionKey: str, body: RecoverBody) -> Any:
    if body.gatewayId is not None and (owner := await fleet.owner_of(request, body.gatewayId)):
        return await fleet.forward(request, owner)
    session = _session(request, sessionKey, body.gatewayId)
    try:
        done = await _actions(request).recover(session, mode=body.action, reason=body.reason, actor=actor_of(request))
    except ActionRefused as exc:
        raise _refused(exc) from None
    return JSONResponse({"requestId": str(done.audit_id), "audit": done.entry}, status_code=202)


@operator.post("/sessions/{sessionKey:path}/dismiss", summary="Take a session off the needs-human list (audited)")
async def dismiss(request: Request, sessionKey: str, body: DismissBody) -> Any:
    if body.gatewayId is not None and (owner := await fleet.owner_of(request, body.gatewayId)):
        return await fleet.forward(request, owner)
    session = _session(request, sessionKey, body.gatewayId)
    try:
        done = await _actions(request).dismiss(session, reason=body.reason, actor=actor_of(request))
    except ActionRefused as exc:
        raise _refused(exc) from None
    return {"auditId": str(done.audit_id), "audit": done.entry}


class BulkFilter(BaseModel):
    attention: Literal["long_running", "stalled", "stuck"] | None = None
    reason: str | None = Field(None, max_length=64)
    gatewayId: str | None = Field(None, max_length=128)
    needsHuman: bool | None = None


class BulkBody(BaseModel):
    filter: BulkFilter
    reason: str = Reason
    dryRun: bool = Field(True, description="true (the default): only say which sessions would be recovered.")


@operator.post("/recoveries", summary="Recover a filtered set of sessions (dry run first; audited; paced per gateway)")
async def recover_many(request: Request, body: BulkBody) -> dict[str, Any]:
    if fleet.is_fleet_read(request):  # each instance acts on its own gateways' sessions
        return await fleet.recoveries(request, body.model_dump())
    wanted = body.filter
    sessions = service_of(request).queries.under_attention(
        scope_of(request), attention=wanted.attention, reason=wanted.reason, gateway_id=wanted.gatewayId,
        needs_human=wanted.needsHuman)
    try:
        return await _actions(request).recover_many(sessions, reason=body.reason, actor=actor_of(request),
                                                    dry_run=body.dryRun)
    except ActionRefused as exc:
        raise _refused(exc) from None


class MaintenanceBody(BaseModel):
    until: int = Field(..., description="When it ends by itself: epoch ms, at most 24 h ahead.")
    reason: str = Reason


class EndBody(BaseModel):
    reason: str = Reason


def _gateway_in_scope(request: Request, gateway: str) -> None:
    scope = scope_of(request)
    if scope is not None and gateway not in scope:
        raise ApiError(404, "not_found", "no such gateway")


async def _gateway_here(request: Request, gateway: str) -> str | None:
    """A gateway's maintenance is its owner's to apply: the owner's address, or None once the
    gateway is this instance's (taken here if nobody holds it)."""
    owner = await fleet.owner_of(request, gateway)
    if owner is not None:
        return owner
    if not await service_of(request).ownership.claim(gateway, ask=False):
        raise ApiError(503, "gateway_moving", f"gateway {gateway} is moving between instances; retry",
                       headers=[(b"retry-after", b"1")])
    return None


@operator.put("/gateways/{gatewayId}/maintenance", summary="Put a gateway in maintenance until a deadline (audited)")
async def begin_maintenance(request: Request, gatewayId: str, body: MaintenanceBody) -> Any:
    _gateway_in_scope(request, gatewayId)
    if (owner := await _gateway_here(request, gatewayId)) is not None:
        return await fleet.forward(request, owner)
    try:
        done = await _actions(request).maintenance(gatewayId, until=body.until, reason=body.reason,
                                                   actor=actor_of(request))
    except ActionRefused as exc:
        raise _refused(exc) from None
    return {"auditId": str(done.audit_id), "audit": done.entry}


@operator.delete("/gateways/{gatewayId}/maintenance", summary="End a gateway's maintenance now (audited)")
async def end_maintenance(request: Request, gatewayId: str, body: EndBody) -> Any:
    _gateway_in_scope(request, gatewayId)
    if (owner := await _gateway_here(request, gatewayId)) is not None:
        return await fleet.forward(request, owner)
    try:
        done = await _actions(request).maintenance(gatewayId, until=None, reason=body.reason, actor=actor_of(request))
    except ActionRefused as exc:
        raise _refused(exc) from None
    return {"auditId": str(done.audit_id), "audit": done.entry}


@reader.get("/audit", summary="Operators' actions, newest first: who, what, when, why, result")
async def audit(request: Request, limit: int = Query(100, ge=1, le=1000),
                cursor: str | None = Query(None, pattern=r"^\d{1,18}$")) -> dict[str, Any]:
    journal = service_of(request).journal
    rows = await asyncio.to_thread(journal.audit, int(cursor) if cursor else None, limit + 1, scope_of(request))
    items = [{"id": str(rid), **entry} for rid, entry in rows[:limit]]
    return {"items": items, "nextCursor": str(rows[limit - 1][0]) if len(rows) > limit else None}
