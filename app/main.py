"""The composition root: settings in, a running service with its HTTP face out.

`app.main:app` is the ASGI application; `create_app(settings)` builds one (tests build several).
Everything with state is created in the lifespan (app/service.py) and hangs off `app.service`.
Nothing imports this module back.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
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
        restore = _tell_on_stop_signals(service)
        try:
            yield
        finally:
            restore()
            await service.close()

    return build_http_app(settings, lifespan)


def _tell_on_stop_signals(service: Service) -> Callable[[], None]:
    """Chain SIGTERM and SIGINT: the service hears of the stop first (its open change streams
    end at once, app/http/stream.py), then the server's own handler runs as before. A server
    drains open requests before the lifespan's shutdown, so this is the only early word the
    service gets. Only from the main thread, where signal handlers live (a test's in-process
    client runs the lifespan elsewhere); returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: Any) -> None:
        service.stopping()
        chained = previous.get(sig)
        if callable(chained):
            chained(sig, frame)
        elif chained == signal.SIG_DFL:  # no server handler: what the signal would have done
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, chained in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, chained)

    return restore


def __getattr__(name: str) -> Any:
    # `app.main:app` is built on first access, so importing this module never reads the environment.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
