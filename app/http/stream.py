"""`GET /v1/stream`: what changes, as Server-Sent Events (README, "Change stream").

Each change is one event: `id:` its number, `event:` its name (app/vocabulary.py, CHANGE_EVENTS), `data:`
its JSON. A reader that comes back with `Last-Event-ID` (the header `EventSource` sends by
itself, or `?lastEventId=`) gets what it missed from the backlog first; if the backlog no longer
holds it, a `reset` event tells it to reload its picture. A token bound to gateways sees only
theirs. A comment line every KEEPALIVE_S keeps proxies from closing a quiet stream, and a
reader that falls too far behind is cut off (it resumes from the backlog).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from app.changes import Change, ChangeFeed
from app.http.auth import require_token, scope_of, service_of
from app.http import fleet_stream
from app.http.errors import ApiError
from app.http.fleet import is_fleet_read

KEEPALIVE_S = 15.0
RETRY_MS = 2_000  # how long EventSource waits before it reconnects

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["changes"])


def frame(change: Change) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (change.id, change.event.encode(), orjson.dumps(change.as_json()))


@router.get(
    "/stream",
    summary="Server-Sent Events of what changes: attention, recoveries, gateways",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "events attention.opened|changed|cleared, recovery.requested|completed, "
                                    "gateway.silent|back; `reset` when the backlog no longer holds Last-Event-ID"}},
)
async def stream(request: Request, lastEventId: str | None = Query(None, max_length=1024)) -> StreamingResponse:
    raw = request.headers.get("last-event-id") or lastEventId
    if is_fleet_read(request):
        return await fleet_stream.stream(request, raw)
    try:
        last_id = int(raw) if raw else None
    except ValueError:
        raise ApiError(422, "validation_failed", "Last-Event-ID is not an id this stream gave",
                       [{"loc": ["header", "Last-Event-ID"], "msg": "an integer"}]) from None
    feed: ChangeFeed = service_of(request).changes
    scope = scope_of(request)
    # subscribe before reading the backlog: nothing published in between is lost (duplicates
    # are skipped by id)
    subscription = feed.subscribe(scope)
    missed, complete = feed.since(last_id, scope)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: %d\n\n" % RETRY_MS
            if not complete:
                yield b"event: reset\ndata: {}\n\n"
            sent = last_id or 0
            for change in missed:
                yield frame(change)
                sent = change.id
            while True:
                try:
                    change = await subscription.next(KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if change is None:
                    return  # cut off, or the service is stopping: the reader comes back
                if change.id > sent:
                    yield frame(change)
                    sent = change.id
        finally:
            feed.unsubscribe(subscription)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
