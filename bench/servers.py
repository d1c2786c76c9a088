"""Processes the bench starts: uvicorn servers, the OTLP sink, wrk and the paced client.

Every process is started here with its own process group and ended by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
CONNECTIONS = 32


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def uvicorn_flags() -> list[str]:
    """The same settings for anchor and service: one worker, no access log, the fast loop/parser."""
    flags = ["--host", "127.0.0.1", "--workers", "1", "--no-access-log", "--log-level", "warning"]
    try:
        import uvloop  # noqa: F401

        flags += ["--loop", "uvloop"]
    except ImportError:
        flags += ["--loop", "asyncio"]
    try:
        import httptools  # noqa: F401

        flags += ["--http", "httptools"]
    except ImportError:
        flags += ["--http", "h11"]
    return flags


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/events"


@contextlib.contextmanager
def uvicorn(target: str, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run `uvicorn target` on a free port with a throwaway data dir until the block ends."""
    data_dir = tempfile.mkdtemp(prefix="openclaw-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENCLAW_DIAG_"))}
    env.update({
        "OPENCLAW_DIAG_DATA_DIR": data_dir,
        "OPENCLAW_DIAG_INGEST_TOKENS": TOKEN,
        "OTEL_SDK_DISABLED": "false",
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), *uvicorn_flags()],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(port, proc)
        yield Server(port, proc)
    finally:
        stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int  # non-2xx answers and socket errors
    server_cpu_s: float = float("nan")  # the server's CPU over the run, when its pid was given

    def cpu_us_per(self, events_per_request: int) -> float:
        """Server CPU per event: steadier than events/s on a shared machine (a cross-check)."""
        done = max(1, self.requests - self.errors) * events_per_request
        return self.server_cpu_s / done * 1e6

    @property
    def ok_per_s(self) -> float:
        return max(0, self.requests - self.errors) / self.seconds


_REQS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKERR = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(url: str, seconds: float, prefix: str, events_per_request: int, sessions: int = 20_000,
        connections: int = CONNECTIONS, server_pid: int | None = None) -> WrkResult:
    """Closed-loop load from wrk (one thread, `connections` connections) with bench/wrk_events.lua."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(ROOT / "bench" / "wrk_events.lua"), url,
        "--", prefix, str(events_per_request), str(sessions), TOKEN,
    ]
    cpu_before = cpu_seconds(server_pid) if server_pid else float("nan")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server_pid) - cpu_before if server_pid else float("nan")
    match = _REQS.search(out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    requests = int(match.group(1))
    elapsed = float(match.group(2)) * _UNIT[match.group(3)]
    errors = 0
    if m := _NON2XX.search(out):
        errors += int(m.group(1))
    if m := _SOCKERR.search(out):
        errors += sum(int(g) for g in m.groups())
    if errors:
        log(f"wrk {prefix}: {errors} errors of {requests} requests")
    return WrkResult(requests, elapsed, errors, cpu)
