"""A fake OpenAI-compatible model server for the gateway end-to-end tests (stdlib only).

The gateway's custom provider (`api: "openai-completions"`) calls `GET /v1/models` once and
`POST /v1/chat/completions` with `stream: true` for each model call. We answer with a tiny
SSE stream. With the hang switch on, a completion request is read and then never answered,
which is exactly a hung model call as the gateway sees it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from tests.support.service_process import LoopbackServer

MODEL_ID = "fake-model"


class FakeModelServer(LoopbackServer):
    """Runs on 127.0.0.1 in a background thread. `hang` makes completions block."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        self._release = threading.Event()
        self.completions = 0
        self.hung_requests = 0
        self._lock = threading.Lock()
        super().__init__(self._handler_class(), "fake-model")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def release_hung(self) -> None:
        """Ends every hung request (the connection closes, unanswered) and stops hanging new ones.
        A gateway being shut down then sees its model call fail instead of draining it for minutes."""
        self.hang.clear()
        self._release.set()

    def stop(self) -> None:
        self.release_hung()
        super().stop()

    def _count(self, hung: bool) -> None:
        with self._lock:
            self.completions += 1
            if hung:
                self.hung_requests += 1

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _json(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    model = {"id": MODEL_ID, "object": "model", "owned_by": "test"}
                    self._json(200, {"object": "list", "data": [model]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                hung = server.hang.is_set()
                server._count(hung)
                if hung:
                    self._hang()
                    return
                try:
                    request = json.loads(body or b"{}")
                except ValueError:
                    request = {}
                if request.get("stream"):
                    self._stream()
                else:
                    self._json(200, _completion())

            def _hang(self) -> None:
                # Accept the request and never answer, until the test releases us or the
                # gateway gives up and closes the connection.
                while not server._release.wait(0.5):
                    pass
                self.close_connection = True

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in _stream_chunks():
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler


def _base_chunk() -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL_ID}


REPLY = "Hello from the fake model."
USAGE = {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}


def _delta(delta: dict, finish_reason: str | None = None) -> dict:
    return {**_base_chunk(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _stream_chunks() -> list[dict]:
    return [
        _delta({"role": "assistant", "content": ""}),
        _delta({"content": REPLY}),
        _delta({}, "stop"),
        {**_base_chunk(), "choices": [], "usage": USAGE},
    ]


def _completion() -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
