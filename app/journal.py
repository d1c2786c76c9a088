"""The embedded durable journal: SQLite in WAL mode (docs/durability.md).

This module is long because it is one protocol, and its parts only make sense together: the
writer thread's group commits and its retries, the log-then-apply hand-over to the event loop,
the checkpoint that claims exactly what it wrote, and the compaction that keeps the disk bounded.

- **Append, commit, apply.** `submit(record)` gives a record the next id and queues it. The
  writer thread commits what is queued in one transaction (a group commit) and hands the group
  back to the loop, which applies its records to the store in id order (`app/records.py`) and
  resolves each record's future with what applying it returned. A group whose commit fails is
  never applied: its futures fail, nothing of it is in memory, its idempotency keys are free.
- **Transient failures.** After a failed commit the writer backs off (capped exponential) and
  tries again with whatever is queued, or with a probe write; meanwhile `status()` says the
  journal is unavailable, so ingest refuses work with 503 + Retry-After instead of queueing it.
- **Checkpoints** live in their own file (`checkpoint.db`), written by their own thread, so a
  checkpoint of a million sessions never holds the journal's write lock: acknowledgements keep
  flowing. One transaction writes the sessions that changed (encoded copy-on-write on the loop,
  in slices) together with the replay point they are exact for: the id of the last record
  applied when the checkpoint began. A failed checkpoint hands everything it took back to the
  next one.
- **Compaction** runs on the writer thread in slices of ids between group commits: records the
  checkpoint covers that are not history, history past the retention or the row cap, and — at
  the byte budget — the bodies of the oldest covered history (their idempotency keys stay).
  Nothing a checkpoint does not cover is ever compacted; if that cannot make room, `status()`
  says `journal_full`.
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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from app import records
from app.journal_interface import READY, JournalError, JournalStatus
from app.records import Record
from app.store import GatewayInfo, Session, Store

log = logging.getLogger("openclaw.diagnostics.journal")

GIB = 1 << 30
RECENT_SCAN_ROWS = 1_000  # history rows read back, at most, for one session's recent events
CHECKPOINT_CHUNK = 2_000  # sessions handed to the checkpoint thread at a time
CHECKPOINT_SLICE_S = 0.002  # encoding on the loop, between two yields
APPLY_SLICE_S = 0.002  # applying committed records on the loop, between two yields
APPLY_EVENTS_SLICE = 256  # events of one request applied between two looks at the clock
COMPACT_SLICE_IDS = 20_000  # ids one compaction statement may cover
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
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

_pack = msgspec.msgpack.encode
_unpack = msgspec.msgpack.decode


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


class CheckpointTracker:
    """What changed since the last checkpoint: the store reports to it (`app.store.ChangeTracker`)."""

    def __init__(self) -> None:
        self.dirty: set[Session] = set()
        self.gone: set[tuple[str, str]] = set()  # (gateway, key) whose session went away
        # while a checkpoint encodes: the sessions it still has to encode, and the copies made
        # of those that were about to change (copy-on-write)
        self.pending: set[Session] | None = None
        self.copies: list[tuple[str, str, bytes]] = []

    def before_change(self, session: Session) -> None:
        pending = self.pending
        if pending is not None and session in pending:
            pending.discard(session)
            self.copies.append((session.gateway, session.key, _pack(session.to_state())))

    def changed(self, session: Session) -> None:
        self.dirty.add(session)

    def removed(self, gateway: str, key: str) -> None:
        self.gone.add((gateway, key))


@dataclass(slots=True)
class _Compaction:
    """The writer's compaction cursors (record ids)."""

    covered: int = 0  # the newest checkpoint's replay point
    purged: int = 0  # non-history records deleted up to here
    expired: int = 0  # every record up to here is past the retention
    max_rows: int = 0
    stripped: int = 0  # history bodies emptied up to here (the byte budget)


class Journal:
    def __init__(self, data_dir: Path, *, max_bytes: int = 2 * GIB, retention_ms: int = 6 * 3_600_000,
                 max_rows: int = 5_000_000, clock: Callable[[], int] | None = None,
                 connection_factory: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "journal.db"
        self.checkpoint_path = data_dir / "checkpoint.db"
        self.max_bytes = max_bytes
        self.retention_ms = retention_ms
        self.max_rows = max_rows
        self._clock = clock or _now_ms
        self._factory = connection_factory  # sqlite3's own hook: tests inject write failures with it
        self.tracker = CheckpointTracker()
        self.store: Store | None = None
        self._lock_fd: int | None = None
        self._cond = threading.Condition()
        self._queue: deque[Record] = deque()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._thread: threading.Thread | None = None
        self._closing = False
        self._next_id = 0
        self.applied_upto = 0  # the last record applied to the store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._checkpoint_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-checkpoint")
        # committed groups not yet applied (applied in slices, in order)
        self._to_apply: deque[list[Record]] = deque()
        self._apply_at = 0
        self._in_progress: records.EventsInProgress | None = None  # a record applied halfway
        self._draining = False
        self._checkpointing = False
        self._checkpoints: list[tuple[int, int]] = []  # (upto, at) within retention, oldest first
        self._compaction = _Compaction(max_rows=max_rows)
        # the writer's health: the last failure, when it may try again, and the byte budget
        self.last_error: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._full = False  # over the budget with nothing covered left to empty
        self._over_budget = False  # empty covered history bodies, oldest first
        self._deleted_upto = 0  # every record up to here is deleted (retention, row cap)
        self._compact_after = 0.0  # after a failed compaction step: not before this (monotonic)

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
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()
        return restored

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._checkpoint_io.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def status(self) -> JournalStatus:
        if self._thread is None or not self._thread.is_alive():
            return JournalStatus(False, "journal_unavailable", "the journal is not open", 1)
        if self.last_error is not None:
            retry = max(1, round(self._retry_at - time.monotonic() + 0.5))
            return JournalStatus(False, "journal_unavailable", f"the journal cannot commit: {self.last_error}", retry)
        if self._full:
            return JournalStatus(False, "journal_full",
                                 f"the journal is at its byte budget ({self.max_bytes} bytes, "
                                 "OPENCLAW_DIAG_JOURNAL_MAX_BYTES) and nothing covered by a checkpoint is left "
                                 "to compact", 5)
        return READY

    # -- appending ------------------------------------------------------------------------

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None:
        """Queue a record; its future resolves with `records.apply`'s answer once it is committed
        and applied, or fails with JournalError. Call on the event loop."""
        self._next_id += 1
        record.id = self._next_id
        future: asyncio.Future[Any] | None = None
        if wait:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._futures[record.id] = future
        elif self._loop is None:
            self._loop = asyncio.get_running_loop()
        with self._cond:
            self._queue.append(record)
            self._cond.notify()
        return future

    # -- the hand-over from the writer (runs on the loop) --------------------------------------

    def _committed(self, group: list[Record]) -> None:
        self._to_apply.append(group)
        if not self._draining:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        """Apply committed records in id order, yielding to the loop every APPLY_SLICE_S — inside
        a large ingest request too (a checkpoint waits for a record applied halfway)."""
        store = self.store
        assert store is not None
        futures = self._futures
        slice_ends = time.perf_counter() + APPLY_SLICE_S
        queue = self._to_apply
        worked = False  # every call applies at least one slice, whatever the clock says
        while queue:
            group = queue[0]
            while self._apply_at < len(group):
                if worked and time.perf_counter() >= slice_ends and self._loop is not None:
                    self._loop.call_soon(self._drain)  # the rest after other work had its turn
                    return
                worked = True
                record = group[self._apply_at]
                try:
                    if record.kind == records.EVENTS:
                        progress = self._in_progress or records.EventsInProgress(store, record)
                        self._in_progress = progress
                        while not progress.step(APPLY_EVENTS_SLICE):
                            if time.perf_counter() >= slice_ends and self._loop is not None:
                                self._loop.call_soon(self._drain)
                                return
                        result: Any = progress.results
                    else:
                        result = records.apply(store, record)
                except Exception as exc:  # a bug in applying: the same on replay; never the client's
                    log.exception("applying journal record %d (%s) failed", record.id, record.kind)
                    result, failure = None, exc
                else:
                    failure = None
                self._in_progress = None
                self._apply_at += 1
                self.applied_upto = record.id
                future = futures.pop(record.id, None)
                if future is not None and not future.done():
                    if failure is not None:
                        future.set_exception(failure)
                    else:
                        future.set_result(result)
            queue.popleft()
            self._apply_at = 0
        self._draining = False

    def _fail_group(self, group: list[Record], error: str) -> None:
        futures = self._futures
        for record in group:
            future = futures.pop(record.id, None)
            if future is not None and not future.done():
                future.set_exception(JournalError(error))

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    # -- writer thread ----------------------------------------------------------------------

    def _writer(self) -> None:
        conn: sqlite3.Connection | None = None
        budget_checked = 0.0
        while True:
            with self._cond:
                while True:
                    if self._closing and (not self._queue or self.last_error is not None):
                        break
                    wait_s = self._retry_at - time.monotonic() if self.last_error is not None else 0.0
                    if wait_s <= 0 and (self._queue or self.last_error is not None or self._compaction_due()):
                        break
                    self._cond.wait(timeout=wait_s if wait_s > 0 else None)
                if self._closing and (not self._queue or self.last_error is not None):
                    group = list(self._queue)
                    self._queue.clear()
                    break
                group = list(self._queue)
                self._queue.clear()
            try:
                if conn is None:
                    conn = self._connect(self.path)
                if group:
                    self._write(conn, group)
                elif self.last_error is not None:
                    with conn:  # nothing queued: a probe tells whether commits work again
                        conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('probe', ?)", (self._clock(),))
            except Exception as exc:  # disk full, I/O error: fail this group, back off, try again
                self._failed(exc)
                if conn is not None:
                    _close_quietly(conn)
                    conn = None
                if group:
                    self._to_loop(self._fail_group, group, f"the journal cannot commit: {exc}")
                continue
            if self.last_error is not None:
                log.warning("the journal commits again after %d failed attempts", self._failures)
            self.last_error = None
            self._failures = 0
            if group:
                self._to_loop(self._committed, group)
            try:
                compacted = self._compact_slice(conn)
                if compacted or time.monotonic() - budget_checked >= BUDGET_CHECK_EVERY_S:
                    budget_checked = time.monotonic()
                    self._check_budget(conn)
            except Exception as exc:  # compaction acknowledges nothing: it waits and tries again
                log.warning("journal compaction failed (retried in %.0f s): %s", RETRY_MAX_S, exc)
                self._compact_after = time.monotonic() + RETRY_MAX_S
                _close_quietly(conn)
                conn = None
        if group:
            self._to_loop(self._fail_group, group, "the journal closed before this record was committed")
        if conn is not None:
            conn.close()

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        if self.last_error is None:
            log.error("journal commit failed (will retry with backoff): %s", exc)
        self.last_error = str(exc) or type(exc).__name__

    def _write(self, conn: sqlite3.Connection, group: list[Record]) -> None:
        with conn:
            conn.executemany("INSERT INTO journal (id, kind, gateway, session, at, dkey, body) VALUES (?,?,?,?,?,?,?)",
                             [record.row() for record in group])

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

    # -- checkpoint ---------------------------------------------------------------------------

    async def checkpoint(self, now: int) -> int:
        """Write the sessions changed since the last checkpoint; returns how many.

        Exact for `applied_upto` at the start: copy-on-write keeps what is still to encode as it
        was then, and the replay point is written in the same transaction as the sessions.
        """
        store = self.store
        if self._checkpointing or store is None:
            return 0
        while self._in_progress is not None:  # exact for a record boundary, never half a request
            await asyncio.sleep(0)
        if self._checkpointing:
            return 0
        self._checkpointing = True
        tracker = self.tracker
        upto = self.applied_upto
        # A key removed and then reused holds a session created (so changed) since: it is in
        # `taken`, and its row is written after the removed keys are deleted.
        pending, removed = tracker.dirty, tracker.gone
        tracker.dirty, tracker.gone = set(), set()
        taken = list(pending)  # what this checkpoint must write, should it fail (a list: cheap)
        tracker.pending, tracker.copies = pending, []
        loop = asyncio.get_running_loop()
        io = self._checkpoint_io
        writer = _CheckpointWriter(self.checkpoint_path, self._factory)
        horizon = now - self.retention_ms
        # the newest checkpoint taken before the horizon: every record it covers is older than that
        expired = max((u for u, at in self._checkpoints if at < horizon), default=0)
        history = [*(entry for entry in self._checkpoints if entry[1] >= horizon), (upto, now)]
        try:
            # least recently heard first: a restore rebuilds the gateway bound's eviction order
            gateways = _pack([info.to_state() for info in sorted(store.gateway_infos(), key=_last_heard)])
            await loop.run_in_executor(io, writer.begin, list(removed))
            while pending or tracker.copies:
                slice_ends = time.perf_counter() + CHECKPOINT_SLICE_S
                rows = tracker.copies
                tracker.copies = []
                while pending and len(rows) < CHECKPOINT_CHUNK:
                    session = pending.pop()
                    if store.holds(session):  # a merge or eviction removed it: its key is in `removed`
                        rows.append((session.gateway, session.key, _pack(session.to_state())))
                    if time.perf_counter() >= slice_ends:
                        break
                # the thread writes this chunk while the loop serves requests and encodes the next
                await loop.run_in_executor(io, writer.write, rows)
            tracker.pending = None
            await loop.run_in_executor(io, writer.commit, upto, gateways, _pack(history))
        except BaseException as exc:
            # Nothing of this checkpoint is claimed: what it took is the next one's to write.
            tracker.pending, tracker.copies = None, []
            tracker.dirty.update(s for s in taken if store.holds(s))
            tracker.gone |= removed
            await asyncio.shield(loop.run_in_executor(io, writer.abort))
            self._checkpointing = False
            if not isinstance(exc, Exception):
                raise
            log.error("checkpoint failed (its sessions stay for the next one): %s", exc)
            raise JournalError(f"checkpoint failed: {exc}") from exc
        self._checkpointing = False
        self._checkpoints = history
        with self._cond:
            self._compaction.covered = max(self._compaction.covered, upto)
            self._compaction.expired = max(self._compaction.expired, expired)
            self._cond.notify()
        return len(taken)

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

    async def forget_gateway(self, gateway: str) -> int:
        """Checkpoint, then drop one gateway's sessions from memory; how many were dropped.

        The caller stops applying the gateway's records first (ownership moved elsewhere): what
        is applied here after the checkpoint would not be written by a later one."""
        await self.checkpoint(self._clock())
        assert self.store is not None
        return self.store.forget_gateway(gateway)

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
            for key in keys:
                if key is not None:
                    dedupe.add(key, at)


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

    def commit(self, upto: int, gateways: bytes, history: bytes) -> None:
        conn = self.conn
        assert conn is not None
        conn.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
                         [("upto", upto), ("gateways", gateways), ("checkpoints", history)])
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


def _last_heard(info: GatewayInfo) -> int:
    return info.last_heard


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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class NullJournal:
    """A journal that keeps nothing and commits at once: for `replay`, benchmarks and in-process tests.

    Records are applied as they are submitted, through the same `records.apply` as the real
    journal; durability is the real Journal's business and is tested against it.
    """

    tracker = None  # nothing is checkpointed

    def __init__(self, store: Store | None = None) -> None:
        self.store = store  # or bound by open(), as the service does with any journal
        self.applied_upto = 0

    def open(self, store: Store) -> bool:
        self.store = store
        return False  # nothing to restore

    def status(self) -> JournalStatus:
        return READY

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None:
        self.applied_upto += 1
        record.id = self.applied_upto
        result = records.apply(self.store, record)
        if not wait:
            return None
        future = asyncio.get_running_loop().create_future()
        future.set_result(result)
        return future

    async def checkpoint(self, now: int) -> int:
        return 0

    def load_gateway(self, gateway: str) -> int:
        return self.store.session_count_of(gateway)

    async def forget_gateway(self, gateway: str) -> int:
        return self.store.forget_gateway(gateway)

    def recent_events(self, gateway: str, keys: Iterable[str], newest_row: int,
                      limit: int = 50) -> list[dict[str, Any]]:
        return []

    def audit(self, before: int | None, limit: int, scope: frozenset[str] | None) -> list[tuple[int, dict[str, Any]]]:
        return []

    def close(self) -> None:
        return None
