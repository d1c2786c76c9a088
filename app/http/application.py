"""The ASGI application: FastAPI with the ingest fast path in front of it (README, "HTTP API").

FastAPI's per-request machinery costs more than decoding and applying a whole batch, so
`POST /v1/events` is served ahead of the middleware stack and router, after the same `Host`
check every other route gets (app/http/hosts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from app.http import actions, api, health, page, stream
from app.http.errors import install_error_handlers
from app.http.hosts import HEALTH_PROBES, HostAllowList
from app.http.ingest import INGEST_PATH, serve_ingest
from app.http.openapi import RECOVERY_WEBHOOK_DOC, install_openapi
from app.settings import Settings

if TYPE_CHECKING:
    from app.service import Service


class DiagnosticsApp(FastAPI):
    """FastAPI, with `POST /v1/events` — the hot path — served ahead of its middleware and router."""

    service: Service  # set by the lifespan; a plain attribute, read on every ingest request

    hosts: HostAllowList  # set by create_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            # every route but the probes, the ingest fast path included
            if scope["path"] not in HEALTH_PROBES and not self.hosts.allows(_host_of(scope)):
                await self.hosts.refuse(send)
                return
            if scope["path"] == INGEST_PATH:
                await serve_ingest(self.service, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _host_of(scope: dict[str, Any]) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return value
    return None


def build_http_app(settings: Settings,
                   lifespan: Callable[[DiagnosticsApp], AbstractAsyncContextManager[None]]) -> DiagnosticsApp:
    """The routes, error envelope and OpenAPI document; `lifespan` sets `app.service`."""
    app = DiagnosticsApp(
        title="openclaw-diagnostics",
        version="0.1.0",
        description=(
            "Watches OpenClaw gateway sessions from the outside: long-running, stalled and stuck "
            "sessions, recovery requests, OpenTelemetry.\n\n" + RECOVERY_WEBHOOK_DOC
        ),
        lifespan=lifespan,
    )
    app.hosts = HostAllowList(settings.allowed_hosts, settings.host)
    app.include_router(actions.operator)
    app.include_router(actions.reader)
    app.include_router(api.router)
    app.include_router(stream.router)
    app.include_router(health.router)
    app.include_router(page.router)
    page.install_static_files(app)
    install_error_handlers(app)
    install_openapi(app)
    return app
