"""`GET /v1/stream` for the whole fleet: every live instance's stream, merged (docs/scale-out.md).

Each instance numbers its own changes. The merged stream relays every instance's frames and
gives each one, as its `id:`, the position in EVERY instance's stream it stands for
(`i0=12,i1=7`), so the `Last-Event-ID` a reader comes back with resumes each instance's stream
where that instance left off. An instance's `reset` (its backlog no longer holds the position)
is passed on, naming the instance. Instances that join are picked up on the next look at the
registry; one whose stream breaks is asked again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse

from app.http.auth import service_of
from app.http.errors import ApiError
from app.http.fleet import forwarded_headers, registry

KEEPALIVE_S = 15.0
RETRY_MS = 2_000
ASK_CONNECT_S = 3.0
LOOK_EVERY_S = 5.0  # how often the registry is read for instances that joined
REASK_S = 2.0  # after an instance's stream broke


def parse_position(raw: str | None) -> dict[str, int]:
    """`i0=12,i1=7` -> {"i0": 12, "i1": 7}."""
    if not raw:
        return {}
    position: dict[str, int] = {}
    try:
        for part in raw.split(","):
            name, _, number = part.rpartition("=")
            if not name:
                raise ValueError
            position[name] = int(number)
    except ValueError:
        raise ApiError(422, "validation_failed", "Last-Event-ID is not an id this stream gave",
                       [{"loc": ["header", "Last-Event-ID"], "msg": "instance=id pairs"}]) from None
    return position


def _position_id(position: dict[str, int]) -> bytes:
    return ",".join(f"{name}={number}" for name, number in sorted(position.items())).encode()


async def _relay(client: httpx.AsyncClient, name: str, url: str, headers: dict[str, str],
                 position: dict[str, int], out: asyncio.Queue[tuple[str, int | None, str, bytes]]) -> None:
    """One instance's stream into `out`, again and again until cancelled."""
    while True:
        asked = dict(headers)
        if name in position:
            asked["last-event-id"] = str(position[name])
        try:
            async with client.stream("GET", url.rstrip("/") + "/v1/stream", headers=asked) as response:
                if response.status_code != 200:
                    raise httpx.HTTPStatusError("refused", request=response.request, response=response)
                frame_id: int | None = None
                event = ""
                data = b""
                async for line in response.aiter_lines():
                    if line == "":
                        if event:
                            await out.put((name, frame_id, event, data))
                        frame_id, event, data = None, "", b""
                    elif line.startswith("id: "):
                        frame_id = int(line[4:])
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:].encode()
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(REASK_S)


async def stream(request: Request, raw_last_id: str | None) -> StreamingResponse:
    position = parse_position(raw_last_id)
    service = service_of(request)
    headers = forwarded_headers(request)
    headers["accept"] = "text/event-stream"

    async def events() -> AsyncIterator[bytes]:
        out: asyncio.Queue[tuple[str, int | None, str, bytes]] = asyncio.Queue(maxsize=1_000)
        relays: dict[str, asyncio.Task[None]] = {}
        # sees no change of its own: it is only told when the service stops (the feed is closed)
        stopping = service.changes.subscribe(frozenset())
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=httpx.Timeout(ASK_CONNECT_S, read=None)) as client:
            try:
                yield b"retry: %d\n\n" % RETRY_MS
                looked = quiet_since = -LOOK_EVERY_S
                while not stopping.cut:
                    now = loop.time()
                    if now - looked >= LOOK_EVERY_S:
                        looked = now
                        live, _ = await registry(request)
                        for entry in live:
                            if entry.id not in relays:
                                relays[entry.id] = asyncio.create_task(
                                    _relay(client, entry.id, entry.url, headers, position, out))
                    try:
                        name, frame_id, event, data = await asyncio.wait_for(out.get(), 1.0)
                    except TimeoutError:
                        if loop.time() - quiet_since >= KEEPALIVE_S:
                            quiet_since = loop.time()
                            yield b": keep-alive\n\n"
                        continue
                    quiet_since = loop.time()
                    if event == "reset":
                        yield b"event: reset\ndata: %s\n\n" % orjson.dumps({"instance": name})
                        continue
                    if frame_id is not None:
                        if frame_id <= position.get(name, 0):
                            continue  # already sent (a relay that came back)
                        position[name] = frame_id
                    yield b"id: %s\nevent: %s\ndata: %s\n\n" % (_position_id(position), event.encode(), data)
            finally:
                service.changes.unsubscribe(stopping)
                for task in relays.values():
                    task.cancel()
                for task in relays.values():
                    with contextlib.suppress(BaseException):
                        await task

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

