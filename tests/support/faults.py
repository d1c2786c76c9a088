"""Write failures injected at the SQLite layer, through sqlite3's own `factory=` hook.

`Faults.connection_factory()` is a `sqlite3.Connection` subclass; while a file is marked
failing, every statement that writes to it raises the error SQLite raises on a full disk.
Reads keep working, as they do on a real full disk.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "COMMIT", "CREATE", "DROP")


class Faults:
    def __init__(self) -> None:
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self.raised = 0

    def fail(self, *file_names: str) -> None:
        with self._lock:
            self._failing.update(file_names)

    def heal(self) -> None:
        with self._lock:
            self._failing.clear()

    def check(self, database: str, sql: str) -> None:
        with self._lock:
            failing = Path(database).name in self._failing
        if failing and sql.lstrip().upper().startswith(_WRITES):
            self.raised += 1
            raise sqlite3.OperationalError("database or disk is full")

    def connection_factory(self) -> type[sqlite3.Connection]:
        faults = self

        class FaultyConnection(sqlite3.Connection):
            def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
                super().__init__(database, *args, **kwargs)
                self.database = str(database)

            def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
                faults.check(self.database, sql)
                return super().execute(sql, *args)

            def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
                faults.check(self.database, sql)
                return super().executemany(sql, *args)

            def __exit__(self, kind: Any, value: Any, traceback: Any) -> Any:
                if kind is None:
                    try:
                        faults.check(self.database, "COMMIT")
                    except sqlite3.OperationalError:
                        self.rollback()
                        raise
                return super().__exit__(kind, value, traceback)

        return FaultyConnection
