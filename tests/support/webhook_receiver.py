"""A webhook receiver on loopback: where notifications arrive in the tests (Alertmanager's, and
the service's own, app/notify.py). It keeps every POST (headers, raw body, the status it
answered) and can answer the first `fail_first` of them with 500, to show retries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.service_process import LoopbackServer


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver(LoopbackServer):
    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        super().__init__(self._handler(), "webhook-receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def received(self) -> list[Delivery]:
        with self._cond:
            return list(self.deliveries)

    def bodies(self) -> list[Any]:
        """The JSON of what was taken (answered 200), in order."""
        return [d.json() for d in self.received() if d.status == 200]

    def wait_for(self, match: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """The first taken body that matches; fails after `timeout` seconds saying what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((d.json() for d in self.deliveries if d.status == 200 and match(d.json())), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing {what} within {timeout} s; got {[d.body for d in self.deliveries]}")
                self._cond.wait(left)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    status = 500 if len(receiver.deliveries) < receiver.fail_first else 200
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    receiver.deliveries.append(Delivery(headers, body, status))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        return Handler
