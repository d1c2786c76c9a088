"""The service in this process: the real ASGI app built by app/main.py, its lifespan run by
Starlette's TestClient, with the same reading helpers as the service as a process.

For what needs no process: input validation, escaping, auth, limits. A test that needs one (kill
-9, a full disk, slow clients over a socket, SIGTERM) uses tests/support/service_process.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support.reading import ReadsSessions
from tests.support.service_process import FAST_MONITOR

BASE_URL = "http://localhost"  # a Host the allow-list answers by default


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.levelname} {record.name}: {text}")


class InProcessService(ReadsSessions):
    """`client` carries the token given; `anonymous()` sends a request without it."""

    def __init__(self, data_dir: Path, settings: dict[str, Any] | None = None, *, token: str | None = None,
                 fast_monitor: bool = True) -> None:
        values: dict[str, Any] = dict(FAST_MONITOR) if fast_monitor else {}
        values.update(settings or {})
        self.settings = Settings(data_dir=data_dir, **values)
        self.token = token
        self._log = _Captured()
        self._app = create_app(self.settings)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = TestClient(self._app, base_url=BASE_URL, headers=headers)

    def start(self) -> InProcessService:
        logging.getLogger().addHandler(self._log)
        self.client.__enter__()  # runs the lifespan: the service opens its journal, starts its monitor
        return self

    def stop(self) -> None:
        try:
            self.client.__exit__(None, None, None)
        finally:
            logging.getLogger().removeHandler(self._log)

    def anonymous(self, method: str, path: str, *, follow_redirects: bool = True, **kwargs: Any) -> httpx.Response:
        """A request without the client's token (a `headers` Authorization is sent as given); the
        client's cookies go with it, as a browser's would."""
        request = self.client.build_request(method, path, **kwargs)
        if "authorization" not in {name.lower() for name in kwargs.get("headers") or {}}:
            request.headers.pop("authorization", None)
        return self.client.send(request, follow_redirects=follow_redirects)

    def healthy(self) -> bool:
        return self.anonymous("GET", "/healthz").status_code == 200

    def log_text(self) -> str:
        return "\n".join(self._log.lines)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self._log.lines[-lines:])
