"""POST /v1/events: the hot path, as a raw ASGI endpoint (README, "HTTP API"; docs/security.md).

FastAPI's per-request machinery costs more than the whole of decoding and applying a batch, so
the app serves ingest ahead of its middleware stack and router (app/http/application.py); its
schema is added to the OpenAPI document by hand (app/http/openapi.py). Everything a client sends ends as a 2xx or a 4xx with the error envelope.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import TYPE_CHECKING, Any

import orjson

from app.decoding import (
    BodyError,
    Decoded,
    DecodeSteps,
    Rejection,
    TooManyEvents,
    json_steps,
    ndjson_steps,
)
from app.http.auth import authorize
from app.http.errors import ApiError, error_body
from app.intake import accept_events, rejected_counts
from app.journal import JournalError, JournalStatus
from app.ownership import RETRY_AFTER_S
from app.store import ACCEPTED, DUPLICATE, IGNORED

if TYPE_CHECKING:
    from app.service import Service

DECODE_SLICE_S = 0.001  # decoding on the loop, between two yields

log = logging.getLogger("openclaw.diagnostics.ingest")

INGEST_PATH = "/v1/events"
MAX_INFLATION = 64  # a gzip body may inflate to at most this many times its size...
MIN_INFLATED_CAP = 1 << 20  # ...or to 1 MiB, whichever is larger (and never past max_body_bytes)
# No Content-Type is no JSON: a browser sends such bodies cross-site without asking (a "simple
# request"), so accepting them would let any web page write events.
_JSON_TYPES = frozenset({b"application/json", b"text/json"})
_NDJSON_TYPES = frozenset({b"application/x-ndjson", b"application/ndjson", b"application/jsonl",
                           b"application/x-jsonlines"})




async def serve_ingest(service: Service, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The whole ASGI exchange of one ingest request: every outcome is a JSON answer."""
    headers: list[tuple[bytes, bytes]] = []
    try:
        if scope["method"] != "POST":
            raise ApiError(405, "method_not_allowed", "use POST", headers=[(b"allow", b"POST")])
        status, body = await ingest(service, scope, receive)
    except ApiError as exc:
        status, body, headers = exc.status, exc.body, exc.headers
    except JournalError as exc:
        # the writer logs the failure once; each refused request is counted
        service.recorder.journal_refused("journal_unavailable")
        status, body = 503, error_body("journal_unavailable",
                                       f"nothing was applied or acknowledged: {exc}; retry later", [])
        headers = [(b"retry-after", str(max(1, service.journal.status().retry_after_s)).encode())]
    except Exception:  # a bug, never the client's input: answer, log, stay up
        log.exception("ingest failed")
        status, body = 500, error_body("internal_error", "the service failed to process the request", [])
    payload = orjson.dumps(body)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    *headers],
    })
    await send({"type": "http.response.body", "body": payload})


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {name: value for name, value in scope["headers"]}


async def _read_body(receive: Any, limit: int, timeout_ms: int) -> bytes:
    """The whole body within `timeout_ms`: a client trickling it a byte at a time holds a
    connection (a file descriptor) for no longer than that."""
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ApiError(400, "client_disconnected", "the client went away before the body was read")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise ApiError(408, "request_timeout",
                       f"the body did not arrive within {timeout_ms} ms (OPENCLAW_DIAG_BODY_TIMEOUT_MS)",
                       headers=[(b"connection", b"close")]) from None


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes (OPENCLAW_DIAG_MAX_BODY_BYTES)")


def _too_many(count: int, limit: int) -> ApiError:
    return ApiError(413, "batch_too_large", f"{count} events; at most {limit} (OPENCLAW_DIAG_MAX_BATCH_EVENTS)")


def _gunzip(data: bytes, limit: int) -> bytes:
    # A bomb (a few KB inflating to megabytes of tiny events) would cost a decode far beyond
    # what its sender spent: inflation is capped relative to what was sent. JSON batches of
    # events compress 5-20x; 64x with a 1 MiB floor leaves them room.
    cap = min(limit, max(MIN_INFLATED_CAP, MAX_INFLATION * len(data)))
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, cap + 1)
    except zlib.error as exc:
        raise ApiError(400, "invalid_body", f"the gzip body cannot be decompressed: {exc}") from None
    if cap < limit and (len(out) > cap or decompressor.unconsumed_tail):
        raise ApiError(413, "payload_too_large",
                       f"the gzip body inflates more than {MAX_INFLATION}x ({len(data)} bytes sent); "
                       "send it less compressed or in smaller batches")
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _too_large(limit)
    if not decompressor.eof:
        raise ApiError(400, "invalid_body", "the gzip body is truncated")
    return out


async def _in_slices(steps: DecodeSteps) -> Decoded:
    """Decodes a body, giving the event loop back every DECODE_SLICE_S: one body of 10,000 events
    that all fail validation is ~100 ms of work, and nobody else should wait for it in one piece."""
    slice_ends = time.perf_counter() + DECODE_SLICE_S
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        if time.perf_counter() >= slice_ends:
            await asyncio.sleep(0)
            slice_ends = time.perf_counter() + DECODE_SLICE_S


async def ingest(service: Service, scope: dict[str, Any], receive: Any) -> tuple[int, dict[str, Any]]:
    settings = service.settings
    headers = _headers(scope)
    header = headers.get(b"authorization")
    # open only when no token of any role is configured
    ok, bound = (authorize(service.tokens, header) if service.tokens or not service.reading_tokens
                 else (False, None))
    # where a rejected event is counted when it names no gateway: the token's only one, if any
    home = next(iter(bound)) if bound is not None and len(bound) == 1 else None
    if not ok:
        if authorize(service.reading_tokens, header)[0]:
            raise ApiError(403, "forbidden", "this token may read but not send events (OPENCLAW_DIAG_INGEST_TOKENS)")
        raise ApiError(401, "unauthorized", "a valid bearer token is required")  # + WWW-Authenticate (errors.py)
    journal_status = service.journal.status()
    if not journal_status.ready:
        raise _refused(service, journal_status)
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type in _NDJSON_TYPES:
        steps = ndjson_steps
    elif content_type in _JSON_TYPES:
        steps = json_steps
    else:
        raise ApiError(415, "unsupported_media_type",
                       "send Content-Type: application/json (an event or an array) or application/x-ndjson")
    encoding = headers.get(b"content-encoding", b"identity").strip().lower()
    if encoding not in (b"identity", b"gzip", b""):
        raise ApiError(415, "unsupported_media_type", "Content-Encoding must be gzip or identity")
    length = headers.get(b"content-length")
    limit = settings.max_body_bytes
    if length is not None and length.isdigit() and int(length) > limit and encoding != b"gzip":
        raise _too_large(limit)
    body = await _read_body(receive, limit, settings.body_timeout_ms)
    if encoding == b"gzip":
        body = _gunzip(body, limit)
    try:
        decoded = await _in_slices(steps(body, settings.max_batch_events))
    except BodyError as exc:
        raise ApiError(400, "invalid_json", f"the body cannot be parsed: {exc}") from None
    except TooManyEvents as exc:
        raise _too_many(exc.count, settings.max_batch_events) from None
    bind_gateways(decoded, bound)
    gateway = request_gateway(service, headers, bound)
    if gateway is not None:
        bind_gateways(decoded, frozenset((gateway,)), "this request is for")  # one request, one gateway
        if not await service.ownership.claim(gateway):
            raise ApiError(503, "gateway_moving",
                           f"gateway {gateway} is moving between instances: nothing was applied; retry",
                           headers=[(b"retry-after", str(RETRY_AFTER_S).encode())])
    if decoded.total and not decoded.events:
        service.recorder.events_counted(rejected_counts(decoded, home))
        details = [error for rejection in decoded.rejected for error in rejection.errors]
        raise ApiError(422, "validation_failed", f"all {decoded.total} events were rejected", details)
    counts = await accept_events(service, decoded, home)
    return 202, {
        "accepted": counts[ACCEPTED],
        "duplicates": counts[DUPLICATE],
        "ignored": counts[IGNORED],
        "rejected": [rejection.as_json() for rejection in sorted(decoded.rejected, key=lambda r: r.index)],
    }


def request_gateway(service: Service, headers: dict[bytes, bytes], bound: frozenset[str] | None) -> str | None:
    """The gateway a request is for: its X-OpenClaw-Gateway header, or its token's only gateway.
    With several instances (docs/scale-out.md) one is required: it is what the proxy routes on
    and what ownership is taken for."""
    header = headers.get(b"x-openclaw-gateway")
    if header is not None:
        name = header.decode("latin-1").strip()
        if not name or len(name) > 128:
            raise ApiError(400, "invalid_header", "X-OpenClaw-Gateway must name one gateway (1-128 characters)")
        if bound is not None and name not in bound:
            raise ApiError(403, "forbidden", f"the token is not bound to gateway {name}")
        return name
    if bound is not None and len(bound) == 1:
        return next(iter(bound))
    if service.ownership.shared:
        raise ApiError(400, "gateway_required",
                       "several instances share the gateways: send X-OpenClaw-Gateway (or use a gateway-bound "
                       "token); one request carries one gateway's events")
    return None


def bind_gateways(decoded: Decoded, bound: frozenset[str] | None, why: str = "the token is bound to") -> None:
    """Events sent with a gateway-bound token belong to its gateways: one without a gatewayId gets
    the token's only gateway; naming another gateway (or none, for a token bound to several) is
    an error."""
    if bound is None:
        return
    only = next(iter(bound)) if len(bound) == 1 else None
    kept = []
    for index, event in decoded.events:
        if event.gatewayId is None and only is not None:
            event.gatewayId = only
        elif event.gatewayId not in bound:
            message = (f"{why} gateway {only}" if only is not None else
                       f"{why} gateways {', '.join(sorted(bound))}: name one of them")
            decoded.rejected.append(Rejection(index, [{"loc": ["body", index, "gatewayId"], "msg": message}],
                                              event.type, only))
            continue
        kept.append((index, event))
    decoded.events = kept


def _refused(service: Service, status: JournalStatus) -> ApiError:
    service.recorder.journal_refused(status.code or "journal_unavailable")
    return ApiError(503, status.code or "journal_unavailable",
                    f"nothing was applied or acknowledged: {status.reason}; retry later",
                    headers=[(b"retry-after", str(max(1, status.retry_after_s)).encode())])


