"""A real HAProxy for tests: Debian's `/usr/sbin/haproxy -db` on 127.0.0.1, driven by pid.

    proxy = HAProxy(tmp_path / "haproxy", [("openclaw-1", "127.0.0.1", 8101),
                                           ("openclaw-2", "127.0.0.1", 8102),
                                           ("openclaw-4", "127.0.0.1", 8104)])   # 8104: nothing yet
    proxy.start()                       # free port, waits until it accepts and its socket answers
    proxy.wait_until(up={"openclaw-1", "openclaw-2"}, down={"openclaw-4"})
    httpx.get(f"{proxy.url}/v1/events", headers={"X-OpenClaw-Gateway": "gw-1"})
    proxy.server_states()               # {"openclaw-1": "UP", "openclaw-2": "UP", "openclaw-4": "DOWN"}
    proxy.command("disable server instances/openclaw-2")   # any runtime API command
    proxy.stop()                        # SIGTERM by pid, SIGKILL if it hangs

The configuration is the one deploy/haproxy.cfg gives the scale stack, with test-sized numbers:
requests hash on the `X-OpenClaw-Gateway` header over a consistent-hash ring (`balance hdr(...)`
+ `hash-type consistent`), so a gateway stays on one instance and a server that leaves or joins
moves only the gateways next to it on the ring; a request without the header goes round robin.
Each server is health-checked with `GET /readyz` and is in rotation only while that answers 200
(checks every 300 ms, down after 2 failures, up after 1 success: configurable). A request whose
server refuses the connection is retried and, on the last retry, sent to another server
(`retries 2` + `option redispatch`), so a server that just died costs a slower answer, not an error.

Servers may be declared before anything listens on their port: they are simply DOWN (the first
failed check takes them out) and come UP by themselves once their `/readyz` answers 200. That is
how a test has a fourth instance join later — the same thing an operator does by declaring it in
haproxy.cfg ahead of time.

Everything lives in the given work directory: the generated `haproxy.cfg` and the process' log
(warnings, alerts and one line per request, for a failing test to quote). The admin socket lives
there too, unless that path is too long for a unix socket, then in a short temporary directory.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from tests.support.service_process import free_port, terminate, track, untrack, wait_until

HAPROXY = "/usr/sbin/haproxy"  # Debian's package; .ci/run installs it
START_DEADLINE_S = 10.0
HASH_HEADER = "X-OpenClaw-Gateway"
BACKEND = "instances"
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux; keep clear of it

def haproxy_binary() -> str | None:
    """Debian's binary, else one on PATH; None when HAProxy is not installed."""
    if os.access(HAPROXY, os.X_OK):
        return HAPROXY
    return shutil.which("haproxy")


def require_haproxy() -> str:
    """The binary; without one the test is skipped, and under `CI=true` it fails (.ci/run installs it)."""
    binary = haproxy_binary()
    if binary is None:
        message = "Debian's `haproxy` is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class HAProxy:
    def __init__(self, workdir: Path, servers: Sequence[tuple[str, str, int]], *,
                 inter: str = "300ms", fall: int = 2, rise: int = 1, weight: int = 100,
                 hash_header: str = HASH_HEADER, timeout_connect: str = "1s",
                 timeout_client: str = "30s", timeout_server: str = "30s", timeout_check: str = "1s",
                 binary: str | None = None) -> None:
        """`servers`: (name, host, port) of each backend server, listening or not (yet).

        `weight` is the same for every server: HAProxy puts 16 points per unit of weight on the
        hash ring, and with the default weight 1 (16 points each) a few servers split the
        gateways very unevenly; 100 (1 600 points each) spreads them close to evenly.
        """
        names = [name for name, _, _ in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"server names must be distinct: {names}")
        self.workdir = Path(workdir)
        self.servers = [(name, host, int(port)) for name, host, port in servers]
        self.inter, self.fall, self.rise, self.weight = inter, fall, rise, weight
        self.hash_header = hash_header
        self.timeouts = {"connect": timeout_connect, "client": timeout_client,
                         "server": timeout_server, "check": timeout_check}
        self.binary = binary or haproxy_binary()
        self.config_path = self.workdir / "haproxy.cfg"
        self.log_path = self.workdir / "haproxy.log"
        self.socket_path = self.workdir / "admin.sock"
        self._socket_dir: Path | None = None  # a short temporary home for the socket, if needed
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    # -- configuration -----------------------------------------------------------------------

    def config_text(self) -> str:
        servers = "\n".join(f"    server {name} {host}:{port}" for name, host, port in self.servers)
        return f"""\
# Written by tests/support/haproxy.py for one test; deploy/haproxy.cfg is the stack's own.
global
    # One thread: a test proxy carries a handful of requests (the default is one per CPU).
    nbthread 1
    # -db keeps HAProxy in the foreground; its log goes to stderr, which is the log file.
    log stderr format raw local0 info
    stats socket {self.socket_path} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    option dontlognull
    timeout connect {self.timeouts["connect"]}
    timeout client {self.timeouts["client"]}
    timeout server {self.timeouts["server"]}
    timeout check {self.timeouts["check"]}
    # A refused connection is retried, and the last retry goes to another server.
    retries 2
    option redispatch

frontend openclaw
    bind 127.0.0.1:{self.port}
    default_backend {BACKEND}

backend {BACKEND}
    balance hdr({self.hash_header})
    hash-type consistent
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter {self.inter} fall {self.fall} rise {self.rise} weight {self.weight}
{servers}
"""

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > _SUN_PATH_MAX:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="haproxy-"))
            self.socket_path = self._socket_dir / "admin.sock"
        self.config_path.write_text(self.config_text(), encoding="utf-8")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_DEADLINE_S) -> HAProxy:
        """Start on a free port; retried on another port if that one was taken meanwhile."""
        if self.binary is None:
            raise RuntimeError("haproxy is not installed")
        for attempt in range(3):
            self.port = free_port()
            self.write_config()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except AssertionError:
                if attempt < 2 and not self.alive and "cannot bind socket" in self.log_text().lower():
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a leftover would answer nothing and fool _wait_ready
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config_path)],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        track(self.proc)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                code = self.proc.returncode if self.proc is not None else None
                raise AssertionError(f"haproxy exited (code {code}) while starting\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    pass
                if "Name:" in self.command("show info"):
                    return
            if time.monotonic() >= deadline:
                raise AssertionError(f"haproxy not ready within {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by pid (HAProxy's immediate stop), SIGKILL if it hangs. Returns the exit code."""
        proc = self.proc
        if proc is not None:
            terminate(proc, timeout)
            untrack(proc)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        return proc.returncode if proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- the runtime API (stats socket) --------------------------------------------------------

    def command(self, text: str, timeout: float = 5.0) -> str:
        """One runtime API command over the admin socket; its whole answer.

        Non-interactive mode: HAProxy answers one command and closes the connection."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """{server name: status} of the backend, as `show stat` words it: "UP", "DOWN", "MAINT",
        or a transition such as "UP 1/2" (up, one failed check on its way down)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row["status"] for row in rows
                if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND")}

    def wait_until(self, up: Iterable[str] = (), down: Iterable[str] = (),
                   timeout: float = 10.0) -> dict[str, str]:
        """Wait until every server in `up` is "UP" and every one in `down` is "DOWN" (settled
        states, not transitions); returns the states then. Fails naming the states last seen."""
        want = {**{name: "UP" for name in up}, **{name: "DOWN" for name in down}}
        unknown = set(want) - {name for name, _, _ in self.servers}
        if unknown:
            raise ValueError(f"not declared in this proxy: {sorted(unknown)}")

        def settled() -> dict[str, str] | None:
            states = self.server_states()
            return states if all(states.get(name) == status for name, status in want.items()) else None

        try:
            return wait_until(settled, timeout=timeout, interval=0.05, what=f"haproxy servers {want}")
        except AssertionError as error:
            raise AssertionError(f"{error}; states now {self.server_states()}\n{self.log_tail()}") from None
