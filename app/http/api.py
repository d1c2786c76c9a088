"""The read API: sessions, one session, attention and gateways, scoped to the caller's gateways
(README, "HTTP API")."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from app.http import fleet
from app.http.auth import require_token, scope_of, service_of
from app.http.cursors import decode_cursor, encode_cursor
from app.http.errors import ApiError
from app.queries import AmbiguousSession, Queries, SortKey, UnknownSession


def queries_of(request: Request) -> Queries:
    return service_of(request).queries


# -- routes ------------------------------------------------------------------------------------

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["sessions"])


@router.get("/sessions", summary="Sessions the service tracks, most severe first")
async def list_sessions(
    request: Request,
    attention: Literal["long_running", "stalled", "stuck", "none"] | None = None,
    state: Literal["idle", "processing", "waiting"] | None = None,
    gatewayId: str | None = Query(None, max_length=128),
    needsHuman: bool | None = Query(None, description="Only sessions on (true) or off (false) the needs-human list."),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=4096),
) -> dict[str, Any]:
    after = decode_cursor(cursor) if cursor else None
    if fleet.is_fleet_read(request):
        return await fleet.sessions(request, {"attention": attention, "state": state, "gatewayId": gatewayId,
                                              "needsHuman": needsHuman, "limit": limit, "cursor": cursor}, limit)
    items, next_key, total = await queries_of(request).sessions_page(
        scope_of(request), attention=attention, state=state, gateway_id=gatewayId, after=after, limit=limit,
        needs_human=needsHuman, with_keys=fleet.wants_keys(request))
    return {"items": items, "nextCursor": encode_cursor(next_key) if next_key else None, "total": total}


@router.get("/sessions/{sessionKey:path}", summary="One session in full, with recent events and recovery history")
async def get_session(request: Request, sessionKey: str,
                      gatewayId: str | None = Query(None, max_length=128)) -> Any:
    if gatewayId is not None and (owner := await fleet.owner_of(request, gatewayId)):
        return await fleet.forward(request, owner, fleet.session_path(sessionKey))
    try:
        if gatewayId is None and fleet.is_fleet_read(request):
            return await fleet.find_session(request, sessionKey)
        return await queries_of(request).session_detail(scope_of(request), sessionKey, gatewayId)
    except UnknownSession:
        raise ApiError(404, "not_found", f"no session {sessionKey!r}",
                       [{"loc": ["path", "sessionKey"], "msg": "unknown session"}]) from None
    except AmbiguousSession as exc:
        raise ApiError(409, "ambiguous_session",
                       f"{len(exc.gateways)} gateways have a session {sessionKey!r}; name one with ?gatewayId=",
                       [{"loc": ["query", "gatewayId"], "msg": gateway} for gateway in exc.gateways]) from None


@router.get("/attention", summary="Counts by event type and reason, per gateway, and the oldest sessions under attention")
async def attention_summary(request: Request) -> dict[str, Any]:
    if fleet.is_fleet_read(request):
        return await fleet.attention(request)
    return queries_of(request).attention_summary(scope_of(request))


@router.get("/gateways", summary="Every gateway heard from")
async def gateways(request: Request) -> dict[str, Any]:
    if fleet.is_fleet_read(request):
        return await fleet.gateways(request)
    return {"items": queries_of(request).gateways(scope_of(request))}
