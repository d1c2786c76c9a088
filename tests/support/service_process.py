"""End-to-end harness: the real service as a `python -m app.cli serve` subprocess.

Reusable by any test file (the tests directory is on `sys.path` under pytest)::

    from tests.support.service_process import ServiceProcess, post_events, keepalive, now_ms, wait_until

    svc = ServiceProcess(tmp_path / "data", settings={"recovery_mode": "webhook", ...},
                         log_dir=tmp_path, token="t1")
    svc.start()                      # free 127.0.0.1 port, waits for /readyz (deadline)
    post_events(svc.client, [keepalive(), {...}, {...}])   # asserts 202, returns the body
    wait_until(lambda: svc.session("k")["attention"], timeout=10, what="k flagged")
    svc.kill()                       # kill -9 by pid
    svc.start()                      # again, same data dir, same settings, new port
    svc.stop()                       # SIGTERM: graceful lifespan shutdown

Settings are the service's `OPENCLAW_DIAG_*` variables, given without the prefix and in any
case (`{"stuck_session_warn_ms": 1000}`). The harness defaults (`FAST_MONITOR`) keep the
monitor quick: warn 1 000 ms, a scan every 100 ms. The child's environment is the test
runner's minus every inherited `OPENCLAW_DIAG_*` / `OTEL_*` variable, so a developer's shell
cannot change what a test sees. Each start's stdout+stderr goes to its own file in `log_dir`;
`svc.log_tail()` is what failure messages quote (conftest attaches it to failed tests).

Time: the service's clock is real, and it measures every age in the *gateway's* clock
(events.md, "Time": skew = min(receive time - ts) over the gateway's recent events). A test
makes a session old by sending events whose `ts` lies in the past — but only after the same
gateway sent one event stamped "now" (`keepalive()`), otherwise the service rightly takes the
old stamps for a gateway clock that runs behind and nothing looks old. `post_events` does not
add it for you: put `keepalive(gateway)` first in the batch.

`FakeGatewayWebhook` plays a gateway's recovery webhook (a stdlib HTTP server in a thread):
scripted answers per sessionKey, answers held until released, answers never sent.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support.paths import REPO
from tests.support.reading import ReadsSessions

ENV_PREFIX = "OPENCLAW_DIAG_"
FAST_MONITOR: dict[str, object] = {"stuck_session_warn_ms": 1000, "scan_interval_ms": 100}
START_DEADLINE_S = 30.0
GRACEFUL = (0, -signal.SIGTERM)  # exit codes of a completed graceful stop (uvicorn re-raises SIGTERM)

T = TypeVar("T")
_Server = TypeVar("_Server", bound="LoopbackServer")

_live: dict[subprocess.Popen[Any], int] = {}  # every harness's processes, and their signal at exit


@atexit.register
def _kill_leftovers() -> None:  # a crashed test run must not leave services behind
    for proc, sig in list(_live.items()):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)


class ServiceDied(AssertionError):
    """The service process exited when it should be running."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LoopbackServer:
    """A stdlib HTTP server on 127.0.0.1 (a free port), served from a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self: _Server) -> _Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def terminate(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int | None:
    """SIGTERM by pid (the process shuts down cleanly), SIGKILL if it hangs. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05,
               what: str = "the condition") -> T:
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` s.

    An exception raised by the predicate counts as "not yet" (re-raised at the deadline when it
    is the last thing seen), so predicates may index into bodies that are not there yet.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    error: BaseException | None = None
    while True:
        try:
            last = predicate()
            error = None
        except (AssertionError, KeyError, IndexError, TypeError, httpx.HTTPError) as exc:
            last, error = None, exc
        if last:
            return last
        if time.monotonic() >= deadline:
            detail = f"{type(error).__name__}: {error}" if error is not None else f"last value {last!r}"
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({detail})")
        time.sleep(interval)


def env_name(setting: str) -> str:
    name = setting.upper()
    return name if name.startswith(ENV_PREFIX) or name.startswith("OTEL_") else ENV_PREFIX + name


class ServiceProcess(ReadsSessions):
    """One data directory, served by at most one uvicorn process at a time."""

    def __init__(self, data_dir: Path, settings: Mapping[str, object] | None = None, *,
                 log_dir: Path | None = None, token: str | None = None, name: str = "service",
                 fast_monitor: bool = True, command_prefix: Sequence[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.command_prefix = list(command_prefix)  # e.g. nsenter into a mount namespace
        self.log_dir = Path(log_dir) if log_dir is not None else self.data_dir.parent
        self.name = name
        self.token = token
        self.settings: dict[str, str] = {}
        if fast_monitor:
            self.settings.update({env_name(k): str(v) for k, v in FAST_MONITOR.items()})
        self.settings.update({env_name(k): str(v) for k, v in (settings or {}).items()})
        self.settings[env_name("data_dir")] = str(self.data_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.starts = 0
        self.log_files: list[Path] = []
        self._client: httpx.Client | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "OTEL_"))}
        env.update(self.settings)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        return env

    def spawn(self, port: int | None = None) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it (see `start`, `run_until_exit`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        self.port = port or free_port()
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        self.log_files.append(log_path)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*self.command_prefix, sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "info"],
                cwd=REPO, env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        track(self.proc)
        return self.proc

    def start(self, timeout: float = START_DEADLINE_S) -> ServiceProcess:
        """Spawn and wait until /readyz says ready; retries once if the port was taken."""
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready(timeout)
                return self
            except ServiceDied:
                if attempt < 2 and "address already in use" in self.log_text(last_only=True).lower():
                    continue
                raise
        raise AssertionError("unreachable")

    def wait_ready(self, timeout: float = START_DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0, headers=self._auth()) as probe:
            while True:
                self.assert_alive("while starting")
                try:
                    response = probe.get("/readyz")
                    if response.status_code == 200 and response.json().get("status") == "ready":
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() >= deadline:
                    raise AssertionError(f"{self.name} not ready within {timeout} s\n{self.log_tail()}")
                time.sleep(0.05)

    def run_until_exit(self, timeout: float = START_DEADLINE_S) -> int:
        """Spawn and wait for the process to exit on its own (a start that must fail)."""
        proc = self.spawn()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} kept running for {timeout} s\n{self.log_tail()}") from None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (uvicorn runs the lifespan shutdown), SIGKILL if it hangs. Returns the exit code."""
        proc = self.proc
        self._close_client()
        if proc is None:
            return None
        terminate(proc, timeout)
        untrack(proc)
        return proc.returncode

    def kill(self) -> None:
        """`kill -9 <pid>`: no shutdown, no flush, no checkpoint."""
        proc = self.proc
        self._close_client()
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        untrack(proc)

    def restart(self, timeout: float = START_DEADLINE_S) -> ServiceProcess:
        self.stop()
        return self.start(timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self, when: str = "") -> None:
        if not self.alive:
            code = self.proc.returncode if self.proc is not None else None
            raise ServiceDied(f"{self.name} exited (code {code}) {when}\n{self.log_tail()}")

    # -- logs --------------------------------------------------------------------------------

    def log_text(self, last_only: bool = False) -> str:
        files = self.log_files[-1:] if last_only else self.log_files
        parts = []
        for path in files:
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name} ---\n" + path.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text().splitlines()
        return "\n".join(text[-lines:])

    # -- HTTP --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def client(self) -> httpx.Client:
        """An httpx client on the running process (bearer token preset when one was given)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=15.0, headers=self._auth())
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def healthy(self) -> bool:
        return self.alive and self.client.get("/healthz").status_code == 200

    # -- the journal, read-only (white-box, for durability tests) ------------------------------

    def journal_position(self) -> tuple[int, int]:
        """(row id the last checkpoint covers, newest journal row id) of the SQLite journal."""
        where = self.data_dir
        conn = sqlite3.connect(f"file:{where / 'journal.db'}?mode=ro", uri=True, timeout=5)
        ckpt = sqlite3.connect(f"file:{where / 'checkpoint.db'}?mode=ro", uri=True, timeout=5)
        try:
            row = ckpt.execute("SELECT v FROM meta WHERE k = 'upto'").fetchone()
            newest = conn.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0]
            return (int(row[0]) if row else 0, newest)
        finally:
            ckpt.close()
            conn.close()

    def wait_for_checkpoint(self, timeout: float = 10.0) -> None:
        """Wait until a checkpoint covers everything journaled so far (needs a short
        OPENCLAW_DIAG_CHECKPOINT_INTERVAL_MS)."""
        _, mark = self.journal_position()
        wait_until(lambda: self.journal_position()[0] >= mark, timeout=timeout,
                   what=f"a checkpoint covering journal row {mark}")


# -- events ------------------------------------------------------------------------------------


def keepalive(gateway: str | None = None, ts: int | None = None) -> dict[str, Any]:
    """A `forwarder.keepalive` stamped now: tells the service the gateway's clock is right."""
    event: dict[str, Any] = {"type": "forwarder.keepalive", "ts": now_ms() if ts is None else ts}
    if gateway is not None:
        event["gatewayId"] = gateway
    return event


def stuck_events(gateway: str, key: str, age_ms: int = 5_000, **extra: Any) -> list[dict[str, Any]]:
    """A gateway's keepalive and a session processing since `age_ms` ago with nothing running:
    stuck on the first scan once that is past warn."""
    return [
        keepalive(gateway),  # stamped now: the gateway's clock is right, so old stamps are old
        {"type": "session.state", "gatewayId": gateway, "sessionKey": key, "state": "processing",
         "ts": now_ms() - age_ms, **extra},
    ]


def track(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Sent `sig` at exit if a crashed test run left it running (any harness's process)."""
    _live[proc] = sig


def untrack(proc: subprocess.Popen[Any]) -> None:
    _live.pop(proc, None)


def post_events(client: httpx.Client, events: Iterable[Mapping[str, Any]] | Mapping[str, Any],
                expect: int = 202) -> dict[str, Any]:
    """POST a JSON body to /v1/events, assert the status, return the JSON answer."""
    payload = events if isinstance(events, Mapping) else list(events)
    response = client.post("/v1/events", json=payload)
    assert response.status_code == expect, f"POST /v1/events: {response.status_code} {response.text}"
    return response.json()


def recoveries(session: Mapping[str, Any], kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
    """The session's recovery history entries (newest first) of `kind` whose fields match."""
    return [
        entry for entry in session.get("recoveries") or []
        if (kind is None or entry.get("kind") == kind)
        and all(entry.get(name) == value for name, value in match.items())
    ]


# -- a gateway's recovery webhook ----------------------------------------------------------------


@dataclass
class Reply:
    """How the fake gateway answers one recovery request."""

    status: int = 200
    body: Any = None
    hold: threading.Event | None = None  # answer only once set
    never: bool = False  # read the request, never answer (until the server stops)

    @classmethod
    def outcome(cls, status: str, action: str, **fields: Any) -> Reply:
        return cls(200, {"status": status, "action": action, **fields})

    @classmethod
    def held(cls, reply: Reply) -> Reply:
        return cls(reply.status, reply.body, hold=threading.Event())


SKIPPED = Reply.outcome("skipped", "keep_lane", outcomeReason="active_reply_work")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: int = field(default_factory=now_ms)


class FakeGatewayWebhook(LoopbackServer):
    """127.0.0.1 HTTP server answering recovery requests as a gateway plugin would.

    `script[sessionKey]` is a `Reply` (or a list of them, used in order, the last one repeating);
    anything unscripted gets `default`. `url_template` goes into
    OPENCLAW_DIAG_RECOVERY_WEBHOOK_URL; requests are served at /recover/<gatewayId>.
    """

    def __init__(self, default: Reply = SKIPPED) -> None:
        self.default = default
        self.script: dict[str, Reply | list[Reply]] = {}
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        super().__init__(self._handler(), "fake-gateway-webhook")

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/recover/{{gatewayId}}"

    def stop(self) -> None:
        self._stopping.set()
        for reply in self._all_replies():
            if reply.hold is not None:
                reply.hold.set()
        super().stop()

    def _all_replies(self) -> list[Reply]:
        replies = [self.default]
        for entry in self.script.values():
            replies.extend(entry if isinstance(entry, list) else [entry])
        return replies

    def requests_for(self, session_key: str) -> list[Received]:
        with self._cond:
            return [r for r in self.received if isinstance(r.body, dict) and r.body.get("sessionKey") == session_key]

    def wait_for_request(self, session_key: str, count: int = 1, timeout: float = 10.0) -> Received:
        """Block until the `count`-th request for `session_key` has arrived; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.received
                         if isinstance(r.body, dict) and r.body.get("sessionKey") == session_key]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no recovery request #{count} for {session_key} within {timeout} s "
                                         f"(received: {[r.body for r in self.received]})")
                self._cond.wait(remaining)

    def _reply_for(self, body: Any) -> Reply:
        key = body.get("sessionKey") if isinstance(body, dict) else None
        entry = self.script.get(key, self.default) if isinstance(key, str) else self.default
        if isinstance(entry, list):
            served = len(self.requests_for(key)) - 1  # this request is already recorded
            return entry[min(served, len(entry) - 1)]
        return entry

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with fake._cond:
                    fake.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    fake._cond.notify_all()
                reply = fake._reply_for(body)
                if reply.never:
                    fake._stopping.wait()
                    self.close_connection = True
                    return
                if reply.hold is not None:
                    reply.hold.wait(60)
                if fake._stopping.is_set() and reply.hold is not None:
                    self.close_connection = True
                    return
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
