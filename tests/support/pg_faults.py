"""Failures of a PostgreSQL journal, made through psycopg's own `connection_class` hook.

`PgFaults.connection_class()` is a `psycopg.Connection` subclass. While a role is failing
(`writer`, `checkpoint`, ...: the last word of the application_name `PostgresJournal` gives each
connection), new connections of that role are refused and an open one drops at its next
transaction, as when the server or the network goes away: the connection is closed, so its
advisory locks are gone too. `unknown_commit()` makes the writer's next transaction commit on
the server and then drop before the client hears the answer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg


class PgFaults:
    def __init__(self) -> None:
        self._failing: set[str] = set()
        self._unknown = False
        self._lock = threading.Lock()

    def fail(self, *roles: str) -> None:
        with self._lock:
            self._failing.update(roles)

    def heal(self) -> None:
        with self._lock:
            self._failing.clear()
            self._unknown = False

    def unknown_commit(self) -> None:
        with self._lock:
            self._unknown = True

    def failing(self, role: str) -> bool:
        with self._lock:
            return role in self._failing

    def take_unknown(self, role: str) -> bool:
        with self._lock:
            if self._unknown and role == "writer":
                self._unknown = False
                return True
            return False

    def connection_class(self) -> type[psycopg.Connection[Any]]:
        faults = self

        class FaultyConnection(psycopg.Connection):  # type: ignore[type-arg]
            @classmethod
            def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                role = str(kwargs.get("application_name", "")).rsplit(" ", 1)[-1]
                if faults.failing(role):
                    raise psycopg.OperationalError(f"connection refused (injected, {role})")
                return super().connect(conninfo, **kwargs)

            def _role(self) -> str:
                return (self.info.parameter_status("application_name") or "").rsplit(" ", 1)[-1]

            @contextlib.contextmanager
            def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
                role = self._role()
                if faults.failing(role):
                    self.close()
                    raise psycopg.OperationalError(f"server closed the connection unexpectedly (injected, {role})")
                with super().transaction(*args, **kwargs) as tx:
                    yield tx
                if faults.take_unknown(role):
                    self.close()
                    raise psycopg.OperationalError("server closed the connection unexpectedly (injected after COMMIT)")

            def commit(self) -> None:
                role = self._role()
                if faults.failing(role):
                    self.close()
                    raise psycopg.OperationalError(f"server closed the connection unexpectedly (injected, {role})")
                super().commit()

        return FaultyConnection
