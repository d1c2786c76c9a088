"""The ingest anchor: a bare ASGI endpoint that only parses the body and answers 202.

Served by the same uvicorn settings and loaded by the same client as the service, it is the
ceiling `ingest_*_ratio` is measured against: what one worker can do when the application does
nothing but read and `orjson.loads` the body.

    uvicorn bench.anchor_app:app --no-access-log --loop uvloop --http httptools
"""

from __future__ import annotations

from typing import Any

import orjson

_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    orjson.loads(b"".join(chunks))
    await send({"type": "http.response.start", "status": 202, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})
