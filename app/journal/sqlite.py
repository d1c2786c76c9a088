"""The embedded durable journal: SQLite in WAL mode (docs/durability.md).

The protocol (group commits, log-then-apply, retries, copy-on-write checkpoints) is
`app/journal/protocol.py`; this module is where SQLite keeps the rows, and why it is long:

- **Files.** The journal is `journal.db`; checkpoints live in their own file (`checkpoint.db`),
  written by their own thread, so a checkpoint of a million sessions never holds the journal's
  write lock. One `upto` replay point covers every gateway.
- **Compaction** runs on the writer thread in slices of ids between group commits: records the
  checkpoint covers that are not history, history past the retention or the row cap, and — at
  the byte budget — the bodies of the oldest covered history (their idempotency keys stay).
  Nothing a checkpoint does not cover is ever compacted; if that cannot make room, `status()`
  says `journal_full`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from app import records
from app.journal.interface import JournalStatus
from app.journal.protocol import RETRY_MAX_S, GroupCommitJournal, pack, unpack
from app.records import Record
from app.store import GatewayInfo, Session, Store

log = logging.getLogger("openclaw.diagnostics.journal")

GIB = 1 << 30
RECENT_SCAN_ROWS = 1_000  # history rows read back, at most, for one session's recent events
COMPACT_SLICE_IDS = 20_000  # ids one compaction statement may cover
BUDGET_CHECK_EVERY_S = 0.5

_JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    gateway TEXT,
    session TEXT,
    at INTEGER,
    dkey BLOB,
    body BLOB
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB);
DROP INDEX IF EXISTS journal_session_history;
"""

_CHECKPOINT_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    gateway TEXT NOT NULL,
    key TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (gateway, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB);
"""

_pack = pack
_unpack = unpack


class DataDirLocked(Exception):
    """Another process owns the data directory."""


def acquire_lock(data_dir: Path) -> int:
    """An OS lock on the data directory; the kernel releases it when the process dies."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirLocked(
            f"another openclaw-diagnostics process owns the data directory {data_dir} "
            "(OPENCLAW_DIAG_DATA_DIR); one process per directory"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


@dataclass(slots=True)
class _Compaction:
    """The writer's compaction cursors (record ids)."""

    covered: int = 0  # the newest checkpoint's replay point
    purged: int = 0  # non-history records deleted up to here
    expired: int = 0  # every record up to here is past the retention
    max_rows: int = 0
    stripped: int = 0  # history bodies emptied up to here (the byte budget)


class Journal(GroupCommitJournal):
    """The embedded journal: one process per data directory (an OS lock says so)."""

    def __init__(self, data_dir: Path, *, max_bytes: int = 2 * GIB, retention_ms: int = 6 * 3_600_000,
                 max_rows: int = 5_000_000, clock: Callable[[], int] | None = None,
                 connection_factory: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        super().__init__(retention_ms=retention_ms, clock=clock)
        self.data_dir = data_dir
        self.path = data_dir / "journal.db"
        self.checkpoint_path = data_dir / "checkpoint.db"
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self._factory = connection_factory  # sqlite3's own hook: tests inject write failures with it
        self._lock_fd: int | None = None
        self._next_id = 0
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._compaction = _Compaction(max_rows=max_rows)
        self._over_budget = False  # empty covered history bodies, oldest first
        self._deleted_upto = 0  # every record up to here is deleted (retention, row cap)
        self._compact_after = 0.0  # after a failed compaction step: not before this (monotonic)
        self._budget_checked = 0.0

    def _connect(self, path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
        return _connect(path, check_same_thread, self._factory)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, store: Store) -> bool:
        """Lock the directory, load the checkpoint and replay the tail. True if anything was restored."""
        self.store = store
        self._lock_fd = acquire_lock(self.data_dir)
        conn = self._connect(self.path)
        conn.executescript(_JOURNAL_SCHEMA)
        ckpt = self._connect(self.checkpoint_path)
        ckpt.executescript(_CHECKPOINT_SCHEMA)
        try:
            restored = self._restore(conn, ckpt)
            self._next_id = max(self.applied_upto,
                                conn.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0])
        finally:
            ckpt.close()
            conn.close()
        self._reader = self._connect(self.path, check_same_thread=False)
        self._start_writer()
        return restored

    def close(self) -> None:
        self._stop_writer()
        if self._reader is not None:
            self._reader.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _full_status(self) -> JournalStatus:
        return JournalStatus(False, "journal_full",
                             f"the journal is at its byte budget ({self.max_bytes} bytes, "
                             "OPENCLAW_DIAG_JOURNAL_MAX_BYTES) and nothing covered by a checkpoint is left "
                             "to compact", 5)

    # -- the storage steps of the protocol (writer thread) ----------------------------------------

    def _assign_id(self, record: Record) -> None:
        self._next_id += 1
        record.id = self._next_id

    def _storage_connect(self) -> sqlite3.Connection:
        return self._connect(self.path)

    def _storage_write(self, conn: sqlite3.Connection, group: list[Record]) -> None:
        with conn:
            conn.executemany("INSERT INTO journal (id, kind, gateway, session, at, dkey, body) VALUES (?,?,?,?,?,?,?)",
                             [record.row() for record in group])

    def _storage_probe(self, conn: sqlite3.Connection) -> None:
        with conn:
            conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('probe', ?)", (self._clock(),))

    def _storage_close(self, conn: sqlite3.Connection) -> None:
        _close_quietly(conn)

    def _storage_maintenance_due(self) -> bool:
        return self._compaction_due()

    def _storage_maintain(self, conn: sqlite3.Connection) -> bool:
        try:
            compacted = self._compact_slice(conn)
            if compacted or time.monotonic() - self._budget_checked >= BUDGET_CHECK_EVERY_S:
                self._budget_checked = time.monotonic()
                self._check_budget(conn)
        except Exception as exc:  # compaction acknowledges nothing: it waits and tries again
            log.warning("journal compaction failed (retried in %.0f s): %s", RETRY_MAX_S, exc)
            self._compact_after = time.monotonic() + RETRY_MAX_S
            return False
        return True

    # -- compaction and the byte budget (writer thread) ------------------------------------------

    def _compaction_due(self) -> bool:
        if time.monotonic() < self._compact_after:
            return False
        c = self._compaction
        return c.purged < c.covered or c.stripped < self._strip_target() or self._expired_target() > 0

    def _strip_target(self) -> int:
        return self._compaction.covered if self._over_budget else 0

    def _expired_target(self) -> int:
        """Delete every record up to the returned id (0: nothing to do)."""
        c = self._compaction
        upto = min(c.expired, c.covered)
        if c.max_rows and self._next_id - c.max_rows > 0:
            upto = max(upto, min(c.covered, self._next_id - c.max_rows))
        return upto if upto > self._deleted_upto else 0

    def _compact_slice(self, conn: sqlite3.Connection) -> bool:
        """One bounded step of compaction, between two group commits; False: nothing to do."""
        c = self._compaction
        expired = self._expired_target()
        if expired:
            upto = min(expired, self._deleted_upto + COMPACT_SLICE_IDS)
            with conn:
                conn.execute("DELETE FROM journal WHERE id > ? AND id <= ?", (self._deleted_upto, upto))
            self._deleted_upto = upto
            c.purged = max(c.purged, upto)
            c.stripped = max(c.stripped, upto)
            return True
        if c.purged < c.covered:
            upto = min(c.covered, c.purged + COMPACT_SLICE_IDS)
            with conn:
                conn.execute("DELETE FROM journal WHERE id > ? AND id <= ? AND kind NOT IN ('B', 'S', 'E', 'A')",
                             (c.purged, upto))
            c.purged = upto
            return True
        target = self._strip_target()
        if c.stripped < target:
            upto = min(target, c.stripped + COMPACT_SLICE_IDS)
            with conn:
                conn.execute("UPDATE journal SET body = x'' WHERE id > ? AND id <= ? AND body != x''",
                             (c.stripped, upto))
            c.stripped = upto
            return True
        return False

    def _check_budget(self, conn: sqlite3.Connection) -> None:
        used = self.used_bytes(conn)
        if used > self.max_bytes:
            # the write-ahead log repeats pages the database holds: fold it in and shrink it first
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            used = self.used_bytes(conn)
        over = used > self.max_bytes
        self._over_budget = over
        # full: over the budget with nothing covered left to empty (a checkpoint may free more)
        self._full = over and self._compaction.stripped >= self._compaction.covered
        if not over:
            self._full = False

    def used_bytes(self, conn: sqlite3.Connection | None = None) -> int:
        """Bytes the journal holds: live pages of both files and the write-ahead logs."""
        total = 0
        for path in (self.path, self.checkpoint_path):
            for suffix in ("-wal",):
                try:
                    total += os.path.getsize(f"{path}{suffix}")
                except OSError:
                    pass
        own = conn is None
        conn = conn or self._connect(self.path)
        try:
            page_size, pages, free = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                                      for name in ("page_size", "page_count", "freelist_count"))
        finally:
            if own:
                conn.close()
        total += (pages - free) * page_size
        try:
            total += os.path.getsize(self.checkpoint_path)
        except OSError:
            pass
        return total

    # -- checkpoint (the encoding is the protocol's) -------------------------------------------

    def _checkpoint_writer(self) -> _CheckpointWriter:
        return _CheckpointWriter(self.checkpoint_path, self._factory)

    def _checkpointed(self, upto: int, expired: int) -> None:
        with self._cond:
            self._compaction.covered = max(self._compaction.covered, upto)
            self._compaction.expired = max(self._compaction.expired, expired)
            self._cond.notify()

    # -- one gateway at a time (several instances share the gateways: docs/durability.md) ------

    def load_gateway(self, gateway: str) -> int:
        """Restore one gateway's sessions: its checkpointed rows, its idempotency keys, and the
        records after the replay point. Blocking (reads the files): call from a thread before
        the gateway's first record is applied here. Returns how many sessions it has now."""
        store = self.store
        assert store is not None
        ckpt = self._connect(self.checkpoint_path)
        conn = self._connect(self.path)
        try:
            meta = dict(ckpt.execute("SELECT k, v FROM meta"))
            upto = int(meta.get("upto") or 0)
            for state in _unpack(meta["gateways"]) if meta.get("gateways") else ():
                info = GatewayInfo.from_state(state)
                if info.gateway_id == gateway:
                    store.restore_gateway(info)
            for (body,) in ckpt.execute("SELECT body FROM sessions WHERE gateway = ?", (gateway,)):
                store.restore_session(Session.from_state(_unpack(body)))
            self._restore_dedupe(conn, upto, gateway)
            for rid, kind, owner, key, at, body in conn.execute(
                "SELECT id, kind, gateway, session, at, body FROM journal WHERE id > ? "
                "AND (gateway = ? OR gateway IS NULL) ORDER BY id", (upto, gateway),
            ):
                record = records.from_row(rid, kind, owner, key, at, body)
                if owner is None and record.kind == records.EVENTS:  # a request for several gateways
                    record.payload = [event for event in record.payload if event.gatewayId == gateway]
                records.apply(store, record)
        finally:
            conn.close()
            ckpt.close()
        return store.session_count_of(gateway)

    # -- reading --------------------------------------------------------------------------

    def recent_events(self, gateway: str, keys: Iterable[str], newest_row: int,
                      limit: int = 50) -> list[dict[str, Any]]:
        """A session's events, newest first, read back from the history rows at and before the
        newest one that carried its events (`Session.last_row`), at most RECENT_SCAN_ROWS of them.
        Blocking: call from a thread."""
        wanted = {k for k in keys if k}
        if not wanted or self._reader is None or newest_row <= 0:
            return []
        needles = [msgspec.json.encode(key) for key in wanted]  # as the key stands in a body
        events: list[dict[str, Any]] = []
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT kind, gateway, at, body FROM journal WHERE id <= ? AND kind IN ('B', 'S', 'E') "
                "ORDER BY id DESC LIMIT ?", (newest_row, RECENT_SCAN_ROWS),
            )
            for kind, owner, at, body in rows:
                if owner not in (None, gateway) or not body or not any(needle in body for needle in needles):
                    continue
                events.extend(reversed(records.history_events(body, kind, at, gateway, wanted)))
                if len(events) >= limit:
                    break
        return events[:limit]

    def audit(self, before: int | None, limit: int, scope: frozenset[str] | None) -> list[tuple[int, dict[str, Any]]]:
        """Audit entries (id, entry), newest first, older than `before`, of the gateways in
        `scope` (None: all). Blocking: call from a thread."""
        if self._reader is None:
            return []
        found: list[tuple[int, dict[str, Any]]] = []
        upper = before if before is not None else 2**62
        with self._reader_lock:
            while len(found) < limit:
                rows = self._reader.execute(
                    "SELECT id, gateway, body FROM journal WHERE kind = 'A' AND id < ? ORDER BY id DESC LIMIT ?",
                    (upper, limit * 4)).fetchall()
                if not rows:
                    break
                for rid, gateway, body in rows:
                    upper = rid
                    if body and (scope is None or gateway in scope):
                        found.append((rid, msgspec.json.decode(body)))
                        if len(found) >= limit:
                            break
        return found

    # -- restore ----------------------------------------------------------------------------

    def _restore(self, conn: sqlite3.Connection, ckpt: sqlite3.Connection) -> bool:
        store = self.store
        assert store is not None
        meta = dict(ckpt.execute("SELECT k, v FROM meta"))
        source, legacy = ckpt, False
        if "upto" not in meta and _has_table(conn, "sessions"):
            # A data directory of release 0.1 kept its checkpoint inside journal.db.
            legacy_meta = dict(conn.execute("SELECT k, v FROM meta"))
            if "checkpoint" in legacy_meta:
                meta = {"upto": legacy_meta["checkpoint"], "gateways": legacy_meta.get("gateways"),
                        "checkpoints": legacy_meta.get("checkpoints")}
                source, legacy = conn, True
        upto = int(meta.get("upto") or 0)
        self._checkpoints = [(a, b) for a, b in _unpack(meta["checkpoints"])] if meta.get("checkpoints") else []
        restored = False
        if meta.get("gateways"):
            for state in _unpack(meta["gateways"]):
                info = GatewayInfo.from_state(state)
                store.restore_gateway(info)
            restored = True
        for (body,) in source.execute("SELECT body FROM sessions"):
            session = Session.from_state(_unpack(body))
            store.restore_session(session)
            if legacy:
                self.tracker.changed(session)  # the first checkpoint moves it to checkpoint.db
            restored = True
        self._restore_dedupe(conn, upto)
        self.applied_upto = upto
        oldest = conn.execute("SELECT coalesce(min(id), 1) - 1 FROM journal").fetchone()[0]
        self._deleted_upto = min(oldest, upto)
        c = self._compaction
        c.covered, c.purged, c.stripped = upto, min(oldest, upto), min(oldest, upto)
        for rid, kind, gateway, key, at, body in conn.execute(
            "SELECT id, kind, gateway, session, at, body FROM journal WHERE id > ? ORDER BY id", (upto,)
        ):
            records.apply(store, records.from_row(rid, kind, gateway, key, at, body))
            restored = kind not in (records.APPLIED_STATE, records.AUDIT) or restored
            self.applied_upto = rid
        return restored

    def _restore_dedupe(self, conn: sqlite3.Connection, upto: int, gateway: str | None = None) -> None:
        """The idempotency keys of the events the checkpoint covers (the tail adds its own), of
        every gateway or of one."""
        dedupe = self.store.dedupe  # type: ignore[union-attr]
        horizon = self._clock() - dedupe.max_age_ms
        found: list[tuple[list[Any], int]] = []
        count = 0
        where = "" if gateway is None else "AND (gateway = ? OR gateway IS NULL) "
        for kind, dkey, at in conn.execute(
            "SELECT kind, dkey, at FROM journal WHERE kind IN ('B', 'E') AND dkey IS NOT NULL AND id <= ? "
            f"AND at >= ? {where}ORDER BY id DESC", (upto, horizon, *(() if gateway is None else (gateway,))),
        ):
            keys = [tuple(_unpack(dkey))] if kind == records.LEGACY_EVENT else records.dedupe_keys(dkey)
            if gateway is not None:
                keys = [key for key in keys if key is not None and key[0] == gateway]
            found.append((keys, at))
            count += len(keys)
            if count >= dedupe.max_keys:
                break
        for keys, at in reversed(found):
            dedupe.extend(keys, at)


class _CheckpointWriter:
    """One checkpoint's transaction on checkpoint.db; every method runs on the checkpoint thread."""

    def __init__(self, path: Path, factory: type[sqlite3.Connection]) -> None:
        self.path = path
        self.factory = factory
        self.conn: sqlite3.Connection | None = None

    def begin(self, removed: list[tuple[str, str]]) -> None:
        self.conn = _connect(self.path, check_same_thread=False, factory=self.factory)
        self.conn.execute("BEGIN")
        self.conn.executemany("DELETE FROM sessions WHERE gateway = ? AND key = ?", removed)

    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        assert self.conn is not None
        self.conn.executemany("INSERT OR REPLACE INTO sessions (gateway, key, body) VALUES (?,?,?)", rows)

    def commit(self, upto: int, gateways: list[GatewayInfo], history: list[tuple[int, int]]) -> None:
        conn = self.conn
        assert conn is not None
        conn.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                         [("upto", upto), ("gateways", _pack([info.to_state() for info in gateways])),
                          ("checkpoints", _pack(history))])
        conn.execute("COMMIT")
        conn.close()
        self.conn = None

    def abort(self) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
            except sqlite3.Error:
                pass
            _close_quietly(self.conn)
            self.conn = None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _connect(path: Path, check_same_thread: bool = True,
             factory: type[sqlite3.Connection] = sqlite3.Connection) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=check_same_thread, timeout=30,
                           factory=factory)
    conn.execute("PRAGMA journal_mode=WAL")
    # Durable against a process crash (kill -9), not against power loss: see README.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_size_limit=67108864")  # the WAL shrinks back after a burst
    return conn


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass
