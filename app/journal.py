"""The embedded durable journal: SQLite in WAL mode, written by one thread (spec: quality.md).

Every change to the store is appended as a record (an accepted event, monitor memory, a
recovery request or completion, an eviction) in the order it was applied. A request's 202 waits
for `commit()`, which resolves once everything appended before it is committed; concurrent
requests share one commit. A periodic checkpoint writes the sessions that changed since the
last one (copy-on-write while it runs, so the loop never stalls on a big store); start-up loads
the checkpoint and replays the records after it.

The database lives behind this one class, so a networked backend can replace it later.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from app.events import Event
from app.store import Attention, GatewayInfo, Session, Store

log = logging.getLogger("openclaw.diagnostics.journal")

EVENT, MEMORY, REQUESTED, COMPLETED, EVICTED = "E", "M", "R", "C", "X"
# A transition the service applied itself (a recovery): history only, never replayed as an event.
APPLIED_STATE = "S"
CHECKPOINT_CHUNK = 64  # sessions encoded between two looks at the clock
CHECKPOINT_SLICE_S = 0.002

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    gateway TEXT,
    session TEXT,
    at INTEGER,
    dkey BLOB,
    body BLOB
);
CREATE INDEX IF NOT EXISTS journal_session_history ON journal (gateway, session, id) WHERE kind IN ('E', 'S');
CREATE TABLE IF NOT EXISTS sessions (
    gateway TEXT NOT NULL,
    key TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (gateway, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB);
"""

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.decode
_event_decoder = msgspec.json.Decoder(Event)


class DataDirLocked(Exception):
    """Another process owns the data directory."""


class JournalError(Exception):
    """The journal could not commit; nothing was acknowledged."""


@dataclass(slots=True)
class _Checkpoint:
    upto: int
    previous: int  # the checkpoint before this one: the rows after it are new
    rows: list[tuple[str, str, bytes]]
    removed: list[tuple[str, str]]
    gateways: bytes
    history: bytes  # (upto, at) of the checkpoints within retention
    expired_upto: int  # every row up to here is older than the retention
    max_rows: int


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


class Journal:
    def __init__(self, data_dir: Path, store: Store) -> None:
        self.data_dir = data_dir
        self.store = store
        self.path = data_dir / "journal.db"
        self._lock_fd: int | None = None
        self._cond = threading.Condition()
        self._queue: deque[Any] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self.failed: BaseException | None = None
        self.commits = 0
        # checkpoint bookkeeping
        self._dirty: set[Session] = set()
        self._removed: set[tuple[str, str]] = set()
        self._pending: set[Session] | None = None
        self._cow_rows: list[tuple[str, str, bytes]] = []
        self._checkpointed = 0  # the replay point: the last checkpoint's upto
        self._checkpoints: list[tuple[int, int]] = []  # (upto, at), oldest first, within retention

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> bool:
        """Lock the directory, load the checkpoint and replay the tail. True if anything was restored."""
        self._lock_fd = acquire_lock(self.data_dir)
        conn = _connect(self.path)
        conn.executescript(_SCHEMA)
        restored = self._restore(conn)
        self._next_id = conn.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0]
        conn.close()
        self.store.before_change = self._before_change
        self.store.changed = self._mark_dirty
        self.store.removed = self._on_removed
        self._reader = _connect(self.path, check_same_thread=False)
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()
        return restored

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._reader is not None:
            self._reader.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.failed is None

    # -- appending ------------------------------------------------------------------------

    def _append(self, kind: str, gateway: str | None, session: str | None, at: int | None,
                dkey: bytes | None, body: bytes) -> None:
        self._next_id += 1
        # deque.append is atomic; the writer pops from the other end, so no lock is needed here.
        self._queue.append((self._next_id, kind, gateway, session, at, dkey, body))

    def record_event(self, event: Event, received_at: int, session_key: str | None,
                     dedupe: tuple[Any, ...] | None) -> None:
        self._append(EVENT, event.gatewayId, session_key, received_at,
                     _encode(dedupe) if dedupe is not None else None, msgspec.json.encode(event))

    def record_memory(self, session: Session) -> None:
        attention = session.attention
        body = [
            attention.to_state() if attention else None,
            session.last_stuck_warn_age,
            session.last_long_running_warn_age,
            session.stalled_reported_at,
        ]
        self._append(MEMORY, session.gateway, session.key, None, None, _encode(body))

    def record_requested(self, session: Session, request: dict[str, Any]) -> None:
        self._append(REQUESTED, session.gateway, session.key, None, None, _encode(request))

    def record_completed(self, session: Session | None, request: dict[str, Any], outcome: dict[str, Any],
                         entry: dict[str, Any], applied: bool, now: int) -> None:
        body = [request, outcome, entry, applied, now]
        self._append(COMPLETED, request["gatewayId"], session.key if session else None, now, None, _encode(body))

    def record_eviction(self, session: Session) -> None:
        self._append(EVICTED, session.gateway, session.key, None, None, b"")

    def record_applied_state(self, session: Session, reason: str, at: int) -> None:
        body = {"type": "session.state", "gatewayId": session.gateway, "sessionKey": session.session_key,
                "sessionId": session.session_id, "state": session.state, "reason": reason,
                "queueDepth": session.queue_depth, "ts": at, "appliedByService": True}
        self._append(APPLIED_STATE, session.gateway, session.key, at, None, msgspec.json.encode(body))

    def flush(self) -> None:
        """Wake the writer for records nobody awaits (monitor memory, recoveries)."""
        with self._cond:
            self._cond.notify()

    async def commit(self) -> None:
        """Resolve once everything appended so far is durable."""
        if self.failed is not None:
            raise JournalError(str(self.failed))
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._waiters.append(future)
            self._cond.notify()
        await future

    # -- checkpoint -----------------------------------------------------------------------

    def _before_change(self, session: Session) -> None:
        pending = self._pending
        if pending is not None and session in pending:
            pending.discard(session)
            self._cow_rows.append((session.gateway, session.key, _encode(session.to_state())))

    def _is_live(self, session: Session) -> bool:
        info = self.store.gateways.get(session.gateway)
        return info is not None and info.sessions.get(session.key) is session

    def _mark_dirty(self, session: Session) -> None:
        self._dirty.add(session)

    def _on_removed(self, gateway: str, key: str) -> None:
        self._removed.add((gateway, key))

    async def checkpoint(self, now: int, retention_ms: int, max_rows: int) -> int:
        """Write the sessions changed since the last checkpoint; returns how many."""
        if self._pending is not None:
            return 0
        upto = self._next_id
        removed = list(self._removed)
        self._removed = set()
        pending = self._dirty
        self._dirty = set()
        for gateway, key in removed:
            session = self.store.find(gateway, key)
            if session is not None and session.key == key:
                pending.add(session)  # the key was reused after the removal
        self._pending = pending
        self._cow_rows = []
        count = len(pending)
        taken = set(pending)
        try:
            gateways = _encode([info.to_state() for info in self.store.gateways.values()])
            while pending:
                # encode for a slice of time, then let the loop serve ingest (copy-on-write keeps
                # what is still pending consistent meanwhile)
                slice_ends = time.perf_counter() + CHECKPOINT_SLICE_S
                while True:
                    for _ in range(min(CHECKPOINT_CHUNK, len(pending))):
                        session = pending.pop()
                        if self._is_live(session):  # a merge or eviction removed it: its key is in `removed`
                            self._cow_rows.append((session.gateway, session.key, _encode(session.to_state())))
                    if not pending or time.perf_counter() >= slice_ends:
                        break
                await asyncio.sleep(0)
        except BaseException:
            # Nothing of this checkpoint is written: what it took is dirty again for the next one.
            self._dirty |= {s for s in taken if self._is_live(s)}
            self._removed.update(removed)
            raise
        finally:
            rows = self._cow_rows
            self._pending = None
            self._cow_rows = []
        with self._cond:
            # Rows are appended in time order, so "older than the retention" is an id range: the
            # newest checkpoint taken before the retention horizon bounds it.
            history = self._checkpoints
            expired = 0
            while history and history[0][1] < now - retention_ms:
                expired = history.pop(0)[0]
            history.append((upto, now))
            previous, self._checkpointed = self._checkpointed, upto
            self._queue.append(_Checkpoint(upto, previous, rows, removed, gateways, _encode(history),
                                           expired, max_rows))
            self._cond.notify()
        await self.commit()
        return count

    # -- reading --------------------------------------------------------------------------

    def recent_events(self, gateway: str, keys: Iterable[str], limit: int = 50) -> list[dict[str, Any]]:
        """Newest first, read back from the journal (blocking: call from a thread)."""
        keys = [k for k in keys if k]
        if not keys or self._reader is None:
            return []
        marks = ",".join("?" * len(keys))
        sql = (
            f"SELECT at, body FROM journal WHERE kind IN ('E', 'S') AND gateway = ? AND session IN ({marks}) "
            "ORDER BY id DESC LIMIT ?"
        )
        with self._reader_lock:
            rows = self._reader.execute(sql, (gateway, *keys, limit)).fetchall()
        events = []
        for at, body in rows:
            event = msgspec.json.decode(body)
            event["receivedAt"] = at
            events.append(event)
        return events

    # -- writer thread ----------------------------------------------------------------------

    def _writer(self) -> None:
        conn = _connect(self.path)
        while True:
            with self._cond:
                while not self._queue and not self._waiters and not self._closing:
                    self._cond.wait()
                queue = self._queue
                items = [queue.popleft() for _ in range(len(queue))]
                waiters = self._waiters
                self._waiters = []
                closing = self._closing
            error: BaseException | None = None
            if items:
                try:
                    self._write(conn, items)
                    self.commits += 1
                except BaseException as exc:  # disk full, I/O error: fail the waiters, stay up
                    log.error("journal write failed: %s", exc)
                    self.failed = exc
                    error = exc
                    try:
                        conn.rollback()
                    except sqlite3.Error:
                        pass
            self._resolve(waiters, error)
            if closing and not self._queue:
                break
        conn.close()

    def _write(self, conn: sqlite3.Connection, items: list[Any]) -> None:
        records = []
        checkpoints = []
        for item in items:
            if isinstance(item, _Checkpoint):
                checkpoints.append(item)
            else:
                records.append(item)
        with conn:
            if records:
                conn.executemany(
                    "INSERT INTO journal (id, kind, gateway, session, at, dkey, body) VALUES (?,?,?,?,?,?,?)",
                    records,
                )
            for cp in checkpoints:
                conn.executemany("DELETE FROM sessions WHERE gateway = ? AND key = ?", cp.removed)
                conn.executemany(
                    "INSERT OR REPLACE INTO sessions (gateway, key, body) VALUES (?,?,?)", cp.rows
                )
                conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('gateways', ?)", (cp.gateways,))
                conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('checkpoint', ?)", (cp.upto,))
                conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('checkpoints', ?)", (cp.history,))
                # Compaction, by id ranges only (a scan of millions of rows would hold the writer):
                # what the checkpoint covers is no longer needed for replay; the history rows stay
                # for reads and the dedupe window until the retention or the row cap drops them.
                conn.execute("DELETE FROM journal WHERE id > ? AND id <= ? AND kind NOT IN ('E', 'S')",
                             (cp.previous, cp.upto))
                conn.execute("DELETE FROM journal WHERE id <= ?", (min(cp.expired_upto, cp.upto),))
                conn.execute("DELETE FROM journal WHERE id <= min(?, (SELECT max(id) FROM journal) - ?)",
                             (cp.upto, cp.max_rows))

    def _resolve(self, waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
        loop = self._loop
        if not waiters or loop is None or loop.is_closed():
            return

        def settle() -> None:
            for future in waiters:
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(JournalError(str(error)))

        loop.call_soon_threadsafe(settle)

    # -- restore ----------------------------------------------------------------------------

    def _restore(self, conn: sqlite3.Connection) -> bool:
        store = self.store
        row = conn.execute("SELECT v FROM meta WHERE k = 'checkpoint'").fetchone()
        upto = self._checkpointed = int(row[0]) if row else 0
        row = conn.execute("SELECT v FROM meta WHERE k = 'checkpoints'").fetchone()
        self._checkpoints = [(a, b) for a, b in _decode(row[0])] if row else []
        row = conn.execute("SELECT v FROM meta WHERE k = 'gateways'").fetchone()
        if row:
            for state in _decode(row[0]):
                info = GatewayInfo.from_state(state)
                store.gateways[info.gateway_id] = info
        restored = bool(row)
        for (body,) in conn.execute("SELECT body FROM sessions"):
            store.restore_session(Session.from_state(_decode(body)))
            restored = True
        # The dedupe window: keys of the events the checkpoint covers (the tail adds its own).
        horizon = _now_ms() - store.dedupe.max_age_ms
        keys = conn.execute(
            "SELECT dkey, at FROM journal WHERE kind = 'E' AND dkey IS NOT NULL AND id <= ? AND at >= ? "
            "ORDER BY id DESC LIMIT ?",
            (upto, horizon, store.dedupe.max_keys),
        ).fetchall()
        for dkey, at in reversed(keys):
            store.dedupe.add(tuple(_decode(dkey)), at)
        for record in conn.execute(
            "SELECT kind, gateway, session, at, body FROM journal WHERE id > ? ORDER BY id", (upto,)
        ):
            replay(store, *record)
            restored = True
        return restored


def replay(store: Store, kind: str, gateway: str | None, key: str | None, at: int | None, body: bytes) -> None:
    """Apply one journal record to the store exactly as it was applied live."""
    if kind == EVENT:
        store.apply_event(_event_decoder.decode(body), at or 0)
        return
    session = store.find(gateway or "", key or "") if key else None
    if kind == MEMORY and session is not None:
        attention, stuck_age, long_age, stalled_at = _decode(body)
        store.set_monitor_memory(session, Attention(*attention) if attention else None, stuck_age, long_age, stalled_at)
    elif kind == REQUESTED and session is not None:
        request = _decode(body)
        store.set_inflight(session, request)
        store.add_recovery(session, {"kind": "requested", **request})
    elif kind == COMPLETED:
        request, outcome, entry, applied, now = _decode(body)
        if session is None:
            return
        if applied:
            store.apply_recovery(session, request, outcome, now)
        if session.inflight is not None and session.inflight.get("requestedAt") == request.get("requestedAt"):
            store.set_inflight(session, None)
        store.add_recovery(session, entry)
    elif kind == EVICTED and session is not None:
        store.evict(session)


def _connect(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=check_same_thread)
    conn.execute("PRAGMA journal_mode=WAL")
    # Durable against a process crash (kill -9), not against power loss: see README.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class NullJournal:
    """A journal that keeps nothing: for `replay`, benchmarks and in-process tests.

    It satisfies what the monitor and the coordinator append; durability is the real
    Journal's business and is tested against it.
    """

    def record_event(self, event: Event, received_at: int, session_key: str | None,
                     dedupe: tuple[Any, ...] | None) -> None:
        return None

    def record_memory(self, session: Session) -> None:
        return None

    def record_requested(self, session: Session, request: dict[str, Any]) -> None:
        return None

    def record_completed(self, session: Session | None, request: dict[str, Any], outcome: dict[str, Any],
                         entry: dict[str, Any], applied: bool, now: int) -> None:
        return None

    def record_eviction(self, session: Session) -> None:
        return None

    def record_applied_state(self, session: Session, reason: str, at: int) -> None:
        return None

    def flush(self) -> None:
        return None

    async def commit(self) -> None:
        return None
