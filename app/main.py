"""The composition root: settings in, a running service with its HTTP face out.

`app.main:app` is the ASGI application; `create_app(settings)` builds one (tests build several).
Everything with state is created in the lifespan (app/service.py) and hangs off `app.service`.
Nothing imports this module back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app.clock import Clock
from app.http.application import DiagnosticsApp, build_http_app
from app.service import Service
from app.settings import Settings, load_settings
from telemetry.record import Recorder

log = logging.getLogger("openclaw.diagnostics")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None,
               recorder: Recorder | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: DiagnosticsApp) -> AsyncIterator[None]:
        if not settings.reading_tokens():
            log.warning("no OPENCLAW_DIAG_INGEST_TOKENS: the API is unauthenticated (bind stays on %s)", settings.host)
        service = Service(settings, clock=clock, recorder=recorder)
        await service.open()
        app.state.service = app.service = service
        try:
            yield
        finally:
            await service.close()

    return build_http_app(settings, lifespan)


def __getattr__(name: str) -> Any:
    # `app.main:app` is built on first access, so importing this module never reads the environment.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
