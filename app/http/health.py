"""Probes and the Prometheus exposition: `/healthz`, `/readyz`, `/metrics` (README, "Health")."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.http.auth import require_token_for_health, scope_of, service_of

router = APIRouter(dependencies=[Depends(require_token_for_health)], tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready when the journal can commit now and the monitor runs; says why not")
async def readyz(request: Request) -> JSONResponse:
    service = service_of(request)
    journal = service.journal.status()
    monitor_ok = service.monitor.running
    exporter = service.recorder.export_health()
    ready = journal.ready and monitor_ok
    body = {
        "status": "ready" if ready else "unready",
        "journal": "ok" if journal.ready else {"code": journal.code, "reason": journal.reason,
                                                "retryAfterS": journal.retry_after_s},
        "monitor": {"running": monitor_ok, "ticks": service.monitor.ticks, "lastTickAt": service.monitor.last_tick_at},
        "exporter": exporter,  # a failing collector degrades this; it never makes the service unready
        "notify": service.notifier.health(),  # nor does a failing notification target
        "sessions": service.store.session_count,
    }
    headers = {} if ready else {"Retry-After": str(max(1, journal.retry_after_s))}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)


@router.get("/metrics", summary="Prometheus text exposition of every instrument")
async def metrics(request: Request) -> Response:
    # Rendering walks every series: off the event loop, like all work that grows with the data.
    payload, content_type = await asyncio.to_thread(service_of(request).recorder.render_metrics)
    scope = scope_of(request)  # set only when OPENCLAW_DIAG_PROTECT_METRICS asks for a token
    if scope is not None:
        payload = await asyncio.to_thread(only_gateways, payload, scope)
    return Response(payload, media_type=content_type)


_GATEWAY_LABEL = re.compile(rb'[{,]openclaw_gateway="((?:[^"\\]|\\.)*)"')


def only_gateways(exposition: bytes, scope: frozenset[str]) -> bytes:
    """The samples of the gateways in `scope`, and those of no gateway (the service's own)."""
    # label values as the exposition format escapes them (backslash, quote, newline)
    allowed = {gateway.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
               for gateway in scope}
    kept = []
    for line in exposition.splitlines(keepends=True):
        match = _GATEWAY_LABEL.search(line) if not line.startswith(b"#") else None
        if match is None or match.group(1) in allowed:
            kept.append(line)
    return b"".join(kept)
