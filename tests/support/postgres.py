"""A real PostgreSQL for tests: one server per test session, a fresh database per test.

Where the server comes from, the first way that works:

1. `OPENCLAW_TEST_POSTGRES_URL` (a `postgresql://` URL of a role that may create databases).
   Given on purpose, so if it does not connect the tests fail rather than skip.
2. `postgresql://postgres@127.0.0.1:5432/postgres`, when a connection succeeds within 2 s: the
   cluster Debian's `postgresql` package runs, with trust authentication on loopback.
   `OPENCLAW_TEST_POSTGRES_NO_LOCAL=1` skips this probe, so that the third way can be exercised
   on a machine that has such a server.
3. A throwaway cluster from Debian's binaries (the newest /usr/lib/postgresql/*/bin): `initdb`
   in a temporary directory, then `postgres` on a free loopback port with fsync off, stopped
   (SIGINT, PostgreSQL's fast shutdown) and deleted at the end of the session. `initdb` and
   `postgres` refuse to run as root, so as root they run as the `postgres` system user (the one
   the package creates); without that user this way is unavailable. They are started with
   that uid directly, not through `runuser`: runuser stays the parent and passes on no SIGINT,
   so the fast shutdown would never reach the server.

When none works the tests that need PostgreSQL are skipped with the reasons, except under
CI=true, where that fails (.ci/run installs `postgresql`), as for the other real processes.

The fixtures (tests/conftest.py):

    def test_x(postgres_server: str, postgres_url: str) -> None:
        # postgres_server: the session's admin URL (…/postgres)
        # postgres_url:    a database `oc_test_<hex>` of this test's own, dropped WITH (FORCE)
        #                  at teardown, so a test may leave connections behind
        svc = service_factory({"journal_url": postgres_url})
        terminate_backends(postgres_server, database_of(postgres_url), "openclaw-diagnostics%")  # cut it off

Connections: the local server keeps PostgreSQL's default max_connections of 100, the throwaway
cluster allows 200. The fixtures hold no connection while a test runs (each setup or teardown
step opens one and closes it), so what counts is the pools of the services a test starts: keep
those small in tests.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import TupleRow

from tests.support.service_process import free_port, track, untrack

ENV_URL = "OPENCLAW_TEST_POSTGRES_URL"
ENV_NO_LOCAL = "OPENCLAW_TEST_POSTGRES_NO_LOCAL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
SYSTEM_USER = "postgres"
CONNECT_TIMEOUT_S = 2
START_DEADLINE_S = 30.0
MAX_CONNECTIONS = 200
APPLICATION = "openclaw-tests"  # the fixtures' own connections, as pg_stat_activity shows them
DATABASE_PREFIX = "oc_test_"

class PostgresUnavailable(RuntimeError):
    """No way to a PostgreSQL server worked; the message says why, way by way."""


def unavailable(reason: str) -> NoReturn:
    """Skip the test for want of PostgreSQL, or under CI=true fail it."""
    message = f"no PostgreSQL for the tests: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def connect(url: str, timeout: float = CONNECT_TIMEOUT_S) -> psycopg.Connection[TupleRow]:
    """An autocommit connection (CREATE/DROP DATABASE run outside a transaction)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=max(1, round(timeout)),
                           application_name=APPLICATION)


def connection_error(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """None when a connection to `url` succeeds; otherwise why not, in one line."""
    try:
        with connect(url, timeout):
            return None
    except psycopg.Error as error:
        return " ".join(str(error).split()) or type(error).__name__


def database_url(admin_url: str, database: str) -> str:
    """`admin_url` with its database replaced (user, host, port and parameters kept)."""
    return urlsplit(admin_url)._replace(path=f"/{database}").geturl()


def database_of(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


# -- the throwaway cluster ----------------------------------------------------------------------


def debian_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding both initdb and postgres."""
    def major(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = [Path(p) for p in sorted(Path("/").glob(DEBIAN_BINARIES.lstrip("/")))]
    usable = [p for p in candidates if os.access(p / "initdb", os.X_OK) and os.access(p / "postgres", os.X_OK)]
    return max(usable, key=major) if usable else None


class ThrowawayCluster:
    """A cluster of its own in a temporary directory: `initdb`, then `postgres` in the foreground
    (driven by its pid), on 127.0.0.1 and a unix socket in the same directory."""

    def __init__(self, bin_dir: Path, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self.bin_dir = Path(bin_dir)
        self.max_connections = max_connections
        self.uid, self.gid = self._account()
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @staticmethod
    def _account() -> tuple[int | None, int | None]:
        """(uid, gid) to run as: None, None when not root (the binaries run as the caller)."""
        if os.geteuid() != 0:
            return None, None
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no `{SYSTEM_USER}` system user to run initdb and "
                "postgres as (they refuse root; Debian's postgresql package creates the user)") from None
        return entry.pw_uid, entry.pw_gid

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SYSTEM_USER}@127.0.0.1:{self.port}/postgres"

    def _as_owner(self) -> dict[str, object]:
        """Popen arguments that drop to the cluster's owner (setgid/setuid in the child)."""
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def _owned_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1)

    def start(self, timeout: float = START_DEADLINE_S) -> ThrowawayCluster:
        self.root = Path(tempfile.mkdtemp(prefix="openclaw-pg-"))
        try:
            self._owned_dir(self.root)
            self._owned_dir(self.socket_dir)
            self._initdb()
            for attempt in range(3):
                self._spawn()
                try:
                    self._wait_ready(timeout)
                    return self
                except PostgresUnavailable:
                    if attempt < 2 and not self.alive and "could not bind" in self.log_text().lower():
                        continue  # the free port was taken in between: another one
                    raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _initdb(self) -> None:
        command = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", SYSTEM_USER,
                   "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120,
                                check=False, **self._as_owner())  # type: ignore[call-overload]
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({result.returncode}): {(result.stderr or result.stdout)[-800:]}")

    def _spawn(self) -> None:
        self.port = free_port()
        settings = {"listen_addresses": "127.0.0.1", "fsync": "off", "max_connections": str(self.max_connections)}
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                   "-k", str(self.socket_dir)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         **self._as_owner())  # type: ignore[call-overload]
        track(self.proc, signal.SIGQUIT)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                code = self.proc.returncode if self.proc is not None else None
                raise PostgresUnavailable(f"postgres exited (code {code}) while starting: {self.log_tail(10)}")
            if connection_error(self.url) is None:
                return
            if time.monotonic() >= deadline:
                raise PostgresUnavailable(f"postgres not accepting connections within {timeout} s: {self.log_tail(10)}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT by pid (fast shutdown: sessions are cut, then a checkpoint), SIGKILL if it hangs;
        then the directory goes."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            untrack(proc)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        return proc.returncode if proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        with contextlib.suppress(OSError, AssertionError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


# -- what the fixtures use ----------------------------------------------------------------------


@contextlib.contextmanager
def provide_server() -> Iterator[str]:
    """The session's server (the three ways of the module docstring), as its admin URL."""
    given = os.environ.get(ENV_URL, "").strip()
    if given:
        if urlsplit(given).scheme not in ("postgres", "postgresql"):
            pytest.fail(f"{ENV_URL} must be a postgresql:// URL, got {given!r}")
        error = connection_error(given)
        if error is not None:
            pytest.fail(f"{ENV_URL} does not connect: {error}")
        yield given
        return

    reasons = []
    if os.environ.get(ENV_NO_LOCAL, "") not in ("", "0"):
        reasons.append(f"{LOCAL_URL}: not tried ({ENV_NO_LOCAL} is set)")
    else:
        error = connection_error(LOCAL_URL)
        if error is None:
            yield LOCAL_URL
            return
        reasons.append(f"{LOCAL_URL}: {error}")

    bin_dir = debian_bin_dir()
    if bin_dir is None:
        unavailable("; ".join([*reasons, f"no initdb and postgres in {DEBIAN_BINARIES} (Debian's postgresql)"]))
    try:
        cluster = ThrowawayCluster(bin_dir).start()
    except PostgresUnavailable as error:
        unavailable("; ".join([*reasons, f"throwaway cluster from {bin_dir}: {error}"]))
    try:
        yield cluster.url
    finally:
        cluster.stop()


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database `oc_test_<random hex>` on the server, as a URL; dropped WITH (FORCE)
    afterwards, whatever is still connected to it."""
    name = f"{DATABASE_PREFIX}{secrets.token_hex(6)}"
    with connect(admin_url) as conn:
        # template0: nothing anyone put into template1 comes along, and a session connected to
        # template1 cannot make the copy fail.
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield database_url(admin_url, name)
    finally:
        drop_database(admin_url, name)


def drop_database(admin_url: str, name: str, attempts: int = 5) -> None:
    """DROP DATABASE ... WITH (FORCE): the connections still open to it are terminated first. A
    client that reconnects in between makes the drop fail: tried again, a few times."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with connect(admin_url) as conn:
        for attempt in range(attempts):
            try:
                conn.execute(statement)
                return
            except psycopg.errors.ObjectInUse:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2)


def terminate_backends(admin_url: str, database: str, application_name_like: str | None = None,
                       wait_ms: int = 5_000) -> int:
    """pg_terminate_backend on every client connection to `database` (only those whose
    application_name is LIKE the pattern, when one is given); returns how many were terminated.

    Each termination waits up to `wait_ms` for the backend to be gone, so on return the clients'
    connections are really cut (their next use fails). The fixtures' own connections are never
    among them (they are on the admin database)."""
    query = sql.SQL(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
        " AND pid <> pg_backend_pid(){}"
    ).format(sql.SQL(" AND application_name LIKE %s") if application_name_like is not None else sql.SQL(""))
    params: list[object] = [database]
    if application_name_like is not None:
        params.append(application_name_like)
    with connect(admin_url) as conn:
        pids = [row[0] for row in conn.execute(query, params).fetchall()]
        terminated = 0
        for pid in pids:
            row = conn.execute("SELECT pg_terminate_backend(%s, %s)", (pid, wait_ms)).fetchone()
            terminated += bool(row and row[0])
    return terminated
