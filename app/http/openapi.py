"""The OpenAPI document: FastAPI's, plus the raw ingest route it cannot see (app/http/ingest.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.events import Event
from app.http.ingest import INGEST_PATH

EXAMPLE_EVENTS = [
    {"type": "session.state", "gatewayId": "gw-1", "sessionKey": "agent:main:main", "sessionId": "9bd4f10f",
     "state": "processing", "reason": "run_started", "queueDepth": 0, "seq": 147, "ts": 1795575850871},
    {"type": "model.call.started", "gatewayId": "gw-1", "sessionKey": "agent:main:main", "runId": "5c23b3a8",
     "provider": "openai", "model": "gpt-5", "seq": 150, "ts": 1795575850900},
]

INGEST_OPENAPI: dict[str, Any] = {
    "post": {
        "tags": ["ingest"],
        "summary": "Ingest diagnostic events (one object, a JSON array, or NDJSON)",
        "description": (
            "Events mirror OpenClaw's diagnostic events (see the events vocabulary in the README). "
            "Partial success: valid events are applied even when others are rejected. Idempotent by "
            "`eventId`, else `(gatewayId, seq, ts)`. `Content-Encoding: gzip` accepted. The 202 is sent "
            "only after the accepted events are committed to the journal."
        ),
        "operationId": "ingest_events",
        "security": [{"bearer": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [{"$ref": "#/components/schemas/Event"},
                                         {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]},
                    "examples": {"batch": {"summary": "A batch", "value": EXAMPLE_EVENTS},
                                 "single": {"summary": "One event", "value": EXAMPLE_EVENTS[0]}},
                },
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "example": "\n".join(orjson.dumps(e).decode() for e in EXAMPLE_EVENTS),
                },
            },
        },
        "responses": {
            "202": {"description": "Accepted (possibly partially)", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/IngestResult"},
                "example": {"accepted": 2, "duplicates": 0, "ignored": 0, "rejected": []}}}},
            "400": {"description": "The body cannot be parsed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "Missing or wrong bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "413": {"description": "Body or batch too large", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "415": {"description": "Unsupported content type or encoding", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "422": {"description": "Every event was rejected", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "example": {"error": {"code": "validation_failed", "message": "all 1 events were rejected",
                                      "details": [{"loc": ["body", 0, "sessionKey"], "msg": "sessionKey, sessionId or runId is required"}]}}}}},
            "503": {"description": "The journal cannot commit; nothing was acknowledged"},
        },
    }
}

RECOVERY_WEBHOOK_DOC = (
    "Recovery webhook (OPENCLAW_DIAG_RECOVERY_MODE=webhook): the service POSTs "
    "`{gatewayId, sessionKey, sessionId, ageMs, queueDepth, expectedState, stateGeneration, reason, "
    "activeWorkKind, allowActiveAbort, requestedAt, origin (automatic|operator)}` to OPENCLAW_DIAG_RECOVERY_WEBHOOK_URL ({gatewayId} "
    "replaced by a safe label only; per-gateway OPENCLAW_DIAG_RECOVERY_WEBHOOK_URLS first). The gateway answers 200 with `{status, action, outcomeReason?, released?, queuedCount?, "
    "aborted?, drained?, forceCleared?, activeWorkKind?}` — status/action one of aborted/abort_embedded_run, "
    "released/release_lane, skipped/observe_only|keep_lane, noop/none, failed/none. Anything else is "
    "recorded as failed/none/exception. No automatic retry."
)


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        (event_schema,), components = msgspec.json.schema_components([Event], ref_template="#/components/schemas/{name}")
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(components)
        schemas["IngestResult"] = {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "ignored": {"type": "integer"},
                "rejected": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "errors": {"type": "array", "items": {"type": "object"}}}}},
            },
        }
        schemas["Error"] = {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"}}}}}}},
        }
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["paths"] = {INGEST_PATH: INGEST_OPENAPI, **schema["paths"]}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
