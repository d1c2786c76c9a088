"""The read API: sessions, one session, attention and gateways, scoped to the caller's gateways
(README, "HTTP API")."""

from __future__ import annotations

import asyncio
import base64
import functools
import heapq
import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request

from app.http.auth import Scope, require_token, scope_of, service_of, visible
from app.http.errors import ApiError
from app.store import Session
from app.vocabulary import KIND_OF_LABEL, SEVERITY

if TYPE_CHECKING:
    from app.service import Service

RECENT_EVENTS = 50


# -- representations ---------------------------------------------------------------------------


def activity_json(session: Session, gateway_now: int) -> dict[str, Any]:
    snapshot = session.snapshot(gateway_now)
    fields = {
        "activeWorkKind": snapshot.active_work_kind,
        "hasActiveEmbeddedRun": snapshot.has_active_embedded_run,
        "activeToolName": snapshot.active_tool_name,
        "activeToolCallId": snapshot.active_tool_call_id,
        "activeToolAgeMs": snapshot.active_tool_age_ms,
        "lastProgressAgeMs": snapshot.last_progress_age_ms,
        "lastProgressReason": snapshot.last_progress_reason,
    }
    return {name: value for name, value in fields.items() if value is not None}


def attention_json(session: Session) -> dict[str, Any] | None:
    attention = session.attention
    if attention is None:
        return None
    return {
        "eventType": attention.event_type,
        "reason": attention.reason,
        "classification": attention.classification,
        "activeWorkKind": attention.active_work_kind,
        "recoveryEligible": attention.recovery_eligible,
        "attentionAgeMs": attention.age_ms,
        "since": attention.since,
    }


def usage_json(session: Session) -> dict[str, Any]:
    totals = session.usage or [0.0] * 6
    names = ("input", "output", "cacheRead", "cacheWrite", "total")
    # Absurd amounts can sum to infinity, which neither int() nor JSON can carry: shown as null
    # rather than failing every read that includes the session.
    usage: dict[str, Any] = {name: int(value) if math.isfinite(value) else None for name, value in zip(names, totals)}
    usage["costUsd"] = totals[5] if math.isfinite(totals[5]) else None
    return usage


def session_json(service: Service, session: Session) -> dict[str, Any]:
    gateway_now = service.gateway_now(session.gateway)
    recoveries = session.recoveries or []
    return {
        "gatewayId": session.gateway,
        "sessionKey": session.session_key,
        "sessionId": session.session_id,
        "state": session.state,
        "queueDepth": session.queue_depth,
        "generation": session.generation,
        "lastActivityAt": session.last_activity,
        "ageMs": max(0, gateway_now - session.last_activity),
        "activity": activity_json(session, gateway_now),
        "attention": attention_json(session),
        "gatewayVerdict": session.gateway_verdict,
        "lastRecovery": recoveries[-1] if recoveries else None,
        "recoveryInFlight": session.inflight is not None,
        "usage": usage_json(session),
    }


def sort_key(session: Session, tick_at: int = 0) -> tuple[int, int, str, str]:
    """Severity, then attention age descending, then key — as a key that does not drift.

    `attention.age_ms` grows with every tick, so a cursor holding an age would skip (or
    repeat) sessions whose age crossed it between two page requests. Every age is refreshed
    on each tick as of the tick's start (`tick_at`), so `tick_at - age_ms` — when the attention
    clock of the session started, in the service's clock — orders exactly like the age,
    and stays put while the session is unchanged.
    """
    attention = session.attention
    if attention is None:
        return (3, 0, session.key, session.gateway)
    return (SEVERITY[attention.event_type], tick_at - attention.age_ms, session.key, session.gateway)


def encode_cursor(key: tuple[int, int, str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int, str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        rank, age, key, gateway = orjson.loads(base64.urlsafe_b64decode(padded))
        if not (isinstance(rank, int) and isinstance(age, int) and isinstance(key, str) and isinstance(gateway, str)):
            raise ValueError
        return (rank, age, key, gateway)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ApiError(422, "validation_failed", "invalid cursor",
                       [{"loc": ["query", "cursor"], "msg": "not a cursor this service issued"}]) from None


def session_pool(service: Service, attention: str | None, gateway_id: str | None, scope: Scope) -> list[Session]:
    """The sessions a listing looks at, copied on the loop (a C-level copy per gateway map); only
    the gateways the caller may see."""
    store = service.store
    if gateway_id is not None and not visible(scope, gateway_id):
        return []
    if attention is not None and attention != "none":
        return [s for s in store.considered() if visible(scope, s.gateway)]  # only considered ones carry attention
    if gateway_id is not None:
        return store.sessions_of(gateway_id)
    if scope is None:
        return list(store.iter_sessions())
    return [session for gateway in scope for session in store.sessions_of(gateway)]


def filter_sessions(pool: list[Session], attention: str | None, state: str | None,
                    gateway_id: str | None) -> list[Session]:
    wanted = KIND_OF_LABEL.get(attention or "")
    selected = []
    for session in pool:
        if gateway_id is not None and session.gateway != gateway_id:
            continue
        if state is not None and session.state != state:
            continue
        current = session.attention
        if attention == "none" and current is not None:
            continue
        if wanted is not None and (current is None or current.event_type != wanted):
            continue
        selected.append(session)
    return selected


def page_of(pool: list[Session], attention: str | None, state: str | None, gateway_id: str | None,
            after: tuple[int, int, str, str] | None, limit: int, tick_at: int) -> tuple[list[Session], int]:
    """One page in the API's order, and the total; pure over its copy, so it can run off the loop."""
    sessions = filter_sessions(pool, attention, state, gateway_id)
    key = functools.partial(sort_key, tick_at=tick_at)
    remaining = sessions if after is None else [s for s in sessions if key(s) > after]
    return heapq.nsmallest(limit + 1, remaining, key=key), len(sessions)


# Listings over more sessions than this are filtered and sorted on a worker thread.
LARGE_LISTING = 20_000


# -- routes ------------------------------------------------------------------------------------

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["sessions"])


@router.get("/sessions", summary="Sessions the service tracks, most severe first")
async def list_sessions(
    request: Request,
    attention: Literal["long_running", "stalled", "stuck", "none"] | None = None,
    state: Literal["idle", "processing", "waiting"] | None = None,
    gatewayId: str | None = Query(None, max_length=128),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = Query(None, max_length=4096),
) -> dict[str, Any]:
    service = service_of(request)
    after = decode_cursor(cursor) if cursor else None
    tick_at = service.monitor.last_tick_at or 0
    pool = session_pool(service, attention, gatewayId, scope_of(request))
    args = (pool, attention, state, gatewayId, after, limit, tick_at)
    # A million sessions take a second to sort: never on the loop that serves ingest.
    page, total = await asyncio.to_thread(page_of, *args) if len(pool) > LARGE_LISTING else page_of(*args)
    next_cursor = encode_cursor(sort_key(page[limit - 1], tick_at)) if len(page) > limit else None
    return {
        "items": [session_json(service, s) for s in page[:limit]],
        "nextCursor": next_cursor,
        "total": total,
    }


@router.get("/sessions/{sessionKey:path}", summary="One session in full, with recent events and recovery history")
async def get_session(request: Request, sessionKey: str, gatewayId: str | None = Query(None, max_length=128)) -> dict[str, Any]:
    service = service_of(request)
    store = service.store
    scope = scope_of(request)
    if gatewayId is not None:
        found = [s for s in [store.find(gatewayId, sessionKey)] if s is not None]
    else:
        found = store.find_all(sessionKey)
    # another gateway's session is unknown here, exactly like one that does not exist
    found = [s for s in found if visible(scope, s.gateway)]
    if not found:
        raise ApiError(404, "not_found", f"no session {sessionKey!r}",
                       [{"loc": ["path", "sessionKey"], "msg": "unknown session"}])
    if len(found) > 1:
        raise ApiError(409, "ambiguous_session", f"{len(found)} gateways have a session {sessionKey!r}; name one with ?gatewayId=",
                       [{"loc": ["query", "gatewayId"], "msg": s.gateway} for s in found])
    session = found[0]
    # Everything in memory is read in one go, before the journal read below yields the loop: a
    # recovery completing meanwhile must not show up in the history of a state it has not changed.
    item = session_json(service, session)
    recoveries = list(reversed(session.recoveries or []))
    gateway_recoveries = list(reversed(session.gateway_recoveries or []))
    keys = {session.key, session.session_key, session.session_id}
    item["recentEvents"] = await asyncio.to_thread(
        service.journal.recent_events, session.gateway, [k for k in keys if k], session.last_row, RECENT_EVENTS
    )
    item["recoveries"] = recoveries
    item["gatewayRecoveries"] = gateway_recoveries
    return item


@router.get("/attention", summary="Counts by event type and reason, per gateway, and the oldest sessions under attention")
async def attention_summary(request: Request) -> dict[str, Any]:
    service = service_of(request)
    by_type: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    per_gateway: dict[str, Counter[str]] = defaultdict(Counter)
    under = []
    scope = scope_of(request)
    for session in service.store.considered():
        attention = session.attention
        if attention is None or not visible(scope, session.gateway):
            continue
        by_type[attention.event_type] += 1
        by_reason[f"{attention.event_type}/{attention.reason}"] += 1
        per_gateway[session.gateway][attention.event_type] += 1
        under.append(session)
    oldest = heapq.nlargest(20, under, key=lambda s: s.attention.age_ms if s.attention else 0)
    return {
        "total": len(under),
        "byEventType": dict(by_type),
        "byReason": [
            {"eventType": key.split("/", 1)[0], "reason": key.split("/", 1)[1], "count": n}
            for key, n in sorted(by_reason.items())
        ],
        "perGateway": {gateway: dict(counts) for gateway, counts in per_gateway.items()},
        "oldest": [session_json(service, s) for s in oldest],
    }


@router.get("/gateways", summary="Every gateway heard from")
async def gateways(request: Request) -> dict[str, Any]:
    service = service_of(request)
    now = service.clock.now_ms()
    items = []
    scope = scope_of(request)
    for info in service.store.gateway_infos():
        if not visible(scope, info.gateway_id):
            continue
        items.append({
            "gatewayId": info.gateway_id,
            "firstHeardAt": info.first_heard,
            "lastHeardAt": info.last_heard,
            "eventsAccepted": info.events_accepted,
            "silent": service.is_silent(info, now),
            "clockSkewMs": info.skew_ms,
            "sessions": service.store.session_count_of(info.gateway_id),
            "forwarderQueued": info.forwarder_queued,
            "forwarderDropped": info.forwarder_dropped,
        })
    items.sort(key=lambda g: g["gatewayId"])
    return {"items": items}


# -- errors ------------------------------------------------------------------------------------


