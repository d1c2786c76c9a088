"""The journal's protocol, whatever keeps the rows (docs/durability.md).

Both durable backends (`app/journal/sqlite.py`, `app/journal/postgres.py`) share it; they differ
only in where rows go, how a checkpoint is stored and how a gateway is restored.

- **Append, commit, apply.** `submit(record)` queues a record. The writer thread commits what is
  queued in one transaction (a group commit) and hands the group back to the loop, which applies
  its records to the store in id order (`app/records.py`) and resolves each record's waiter with
  what applying it returned. A group whose commit fails is never applied: its waiters fail,
  nothing of it is in memory, its idempotency keys are free.
- **Transient failures.** After a failed commit the writer backs off (capped exponential) and
  tries again with whatever is queued, or with a probe; meanwhile `status()` says the journal is
  unavailable, so ingest refuses work with 503 + Retry-After instead of queueing it.
- **Checkpoints** are written by their own thread, so a checkpoint of a million sessions never
  holds up acknowledgements. The sessions that changed are encoded copy-on-write on the loop, in
  slices, and written in one transaction with the replay point they are exact for: the id of the
  last record applied when the checkpoint began. A failed checkpoint hands everything it took
  back to the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import msgspec

from app import records
from app.journal.interface import READY, JournalError, JournalStatus
from app.records import Record
from app.store import GatewayInfo, Session, Store

log = logging.getLogger("openclaw.diagnostics.journal")

CHECKPOINT_CHUNK = 2_000  # sessions handed to the checkpoint thread at a time
CHECKPOINT_SLICE_S = 0.002  # encoding on the loop, between two yields
APPLY_SLICE_S = 0.002  # applying committed records on the loop, between two yields
APPLY_EVENTS_SLICE = 256  # events of one request applied between two looks at the clock
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0

pack = msgspec.msgpack.encode
unpack = msgspec.msgpack.decode


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
            self.copies.append((session.gateway, session.key, pack(session.to_state())))

    def changed(self, session: Session) -> None:
        self.dirty.add(session)

    def removed(self, gateway: str, key: str) -> None:
        self.gone.add((gateway, key))


class CheckpointWriter(Protocol):
    """One checkpoint's transaction; every method runs on the checkpoint thread."""

    def begin(self, removed: list[tuple[str, str]]) -> None: ...

    def write(self, rows: list[tuple[str, str, bytes]]) -> None: ...

    def commit(self, upto: int, gateways: list[GatewayInfo], history: list[tuple[int, int]]) -> None: ...

    def abort(self) -> None: ...


class GroupCommitJournal:
    """The shared protocol; a backend supplies the storage steps named `_storage_*` and
    `_checkpoint_writer`, and `open`, `load_gateway`, `recent_events` and `audit`."""

    def __init__(self, *, retention_ms: int, clock: Callable[[], int] | None) -> None:
        self.retention_ms = retention_ms
        self._clock = clock or now_ms
        self.tracker = CheckpointTracker()
        self.store: Store | None = None
        self._cond = threading.Condition()
        self._queue: deque[Record] = deque()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.applied_upto = 0  # the last record applied to the store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checkpoint_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-checkpoint")
        # committed groups not yet applied (applied in slices, in order)
        self._to_apply: deque[list[Record]] = deque()
        self._apply_at = 0
        self._in_progress: records.EventsInProgress | None = None  # a record applied halfway
        self._draining = False
        self._checkpointing = False
        self._checkpoints: list[tuple[int, int]] = []  # (upto, at) within retention, oldest first
        # called once a checkpoint has taken what it will write (the service's GC policy hooks in)
        self.on_taken: Callable[[], None] = lambda: None
        # the writer's health: the last failure and when it may try again
        self.last_error: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._full = False  # journal_full: over the byte budget with nothing left to compact

    # -- what a backend supplies ---------------------------------------------------------------

    def _storage_connect(self) -> Any:
        raise NotImplementedError

    def _storage_write(self, conn: Any, group: list[Record]) -> None:
        """Commit the group in one transaction (assigning ids if the backend does)."""
        raise NotImplementedError

    def _storage_probe(self, conn: Any) -> None:
        """A tiny commit: does writing work again?"""
        raise NotImplementedError

    def _storage_close(self, conn: Any) -> None:
        raise NotImplementedError

    def _storage_maintain(self, conn: Any) -> bool:
        """Bounded upkeep between group commits (compaction); False: drop the connection."""
        return True

    def _storage_maintenance_due(self) -> bool:
        return False

    def _checkpoint_writer(self) -> CheckpointWriter:
        raise NotImplementedError

    def _checkpoint_gateways(self) -> list[GatewayInfo] | None:
        """The gateways a checkpoint starting now covers (None: every gateway in the store)."""
        return None

    def _checkpointed(self, upto: int, expired: int) -> None:
        """A checkpoint committed (runs on the loop)."""

    def _assign_id(self, record: Record) -> None:
        """Ids are given at submit (SQLite) or by the database when written (PostgreSQL)."""

    def _record_done(self, record: Record) -> None:
        """The loop: a record was applied, or failed."""

    def _before_write(self, group: list[Record]) -> tuple[list[Record], list[tuple[Record, str]]]:
        """Writer thread: the records that may be written now, and those refused (with why)."""
        return group, []

    # -- lifecycle ------------------------------------------------------------------------

    def _start_writer(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()

    def _stop_writer(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._checkpoint_io.shutdown(wait=True)

    def status(self) -> JournalStatus:
        if self._thread is None or not self._thread.is_alive():
            return JournalStatus(False, "journal_unavailable", "the journal is not open", 1)
        if self.last_error is not None:
            retry = max(1, round(self._retry_at - time.monotonic() + 0.5))
            return JournalStatus(False, "journal_unavailable", f"the journal cannot commit: {self.last_error}", retry)
        if self._full:
            return self._full_status()
        return READY

    def _full_status(self) -> JournalStatus:
        return JournalStatus(False, "journal_full", "the journal is full", 5)

    # -- appending ------------------------------------------------------------------------

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None:
        """Queue a record; its waiter resolves with `records.apply`'s answer once it is committed
        and applied, or fails with JournalError. Call on the event loop."""
        self._assign_id(record)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] | None = None
        if wait:
            future = record.waiter = loop.create_future()
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
                self._record_done(record)
                future = record.waiter
                if future is not None:
                    record.waiter = None
                    if not future.done():
                        if failure is not None:
                            future.set_exception(failure)
                        else:
                            future.set_result(result)
            queue.popleft()
            self._apply_at = 0
        self._draining = False

    def _fail(self, refused: list[tuple[Record, str]]) -> None:
        for record, error in refused:
            self._record_done(record)
            future = record.waiter
            record.waiter = None
            if future is not None and not future.done():
                future.set_exception(JournalError(error))

    def _fail_group(self, group: list[Record], error: str) -> None:
        self._fail([(record, error) for record in group])

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    # -- writer thread ----------------------------------------------------------------------

    def _writer(self) -> None:
        conn: Any = None
        while True:
            with self._cond:
                while True:
                    if self._closing and (not self._queue or self.last_error is not None):
                        break
                    wait_s = self._retry_at - time.monotonic() if self.last_error is not None else 0.0
                    if wait_s <= 0 and (self._queue or self.last_error is not None
                                        or self._storage_maintenance_due()):
                        break
                    self._cond.wait(timeout=wait_s if wait_s > 0 else self._idle_wait_s())
                group = list(self._queue)
                self._queue.clear()
                if self._closing and (not group or self.last_error is not None):
                    break
            refused: list[tuple[Record, str]] = []
            try:
                if conn is None:
                    conn = self._storage_connect()
                if group:
                    group, refused = self._before_write(group)
                    if group:
                        self._storage_write(conn, group)
                elif self.last_error is not None:
                    self._storage_probe(conn)  # nothing queued: a probe tells whether commits work again
            except Exception as exc:  # disk full, I/O error, a lost connection: fail, back off, retry
                self._failed(exc)
                if conn is not None:
                    self._storage_close(conn)
                    conn = None
                self._lost_connection()
                if group or refused:
                    error = f"the journal cannot commit: {exc}"
                    self._to_loop(self._fail, refused + [(record, error) for record in group])
                continue
            if refused:
                self._to_loop(self._fail, refused)
            if self.last_error is not None:
                log.warning("the journal commits again after %d failed attempts", self._failures)
            self.last_error = None
            self._failures = 0
            if group:
                self._to_loop(self._committed, group)
            if not self._storage_maintain(conn):
                self._storage_close(conn)
                conn = None
                self._lost_connection()
        if group:
            self._to_loop(self._fail_group, group, "the journal closed before this record was committed")
        if conn is not None:
            self._storage_close(conn)
        self._lost_connection()

    def _idle_wait_s(self) -> float | None:
        """How long the idle writer sleeps before it looks at its connection again (None: until woken)."""
        return None

    def _lost_connection(self) -> None:
        """Writer thread: there is no connection any more (it failed, could not be opened, or
        the journal closed)."""

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        if self.last_error is None:
            log.error("journal commit failed (will retry with backoff): %s", exc)
        self.last_error = str(exc) or type(exc).__name__

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
        self.on_taken()
        tracker.pending, tracker.copies = pending, []
        loop = asyncio.get_running_loop()
        io = self._checkpoint_io
        writer = self._checkpoint_writer()
        horizon = now - self.retention_ms
        # the newest checkpoint taken before the horizon: every record it covers is older than that
        expired = max((u for u, at in self._checkpoints if at < horizon), default=0)
        history = [*(entry for entry in self._checkpoints if entry[1] >= horizon), (upto, now)]
        try:
            covered = self._checkpoint_gateways()
            # least recently heard first: a restore rebuilds the gateway bound's eviction order
            gateways = sorted(store.gateway_infos() if covered is None else covered, key=_last_heard)
            await loop.run_in_executor(io, writer.begin, list(removed))
            while pending or tracker.copies:
                slice_ends = time.perf_counter() + CHECKPOINT_SLICE_S
                rows = tracker.copies
                tracker.copies = []
                while pending and len(rows) < CHECKPOINT_CHUNK:
                    session = pending.pop()
                    if store.holds(session):  # a merge or eviction removed it: its key is in `removed`
                        rows.append((session.gateway, session.key, pack(session.to_state())))
                    if time.perf_counter() >= slice_ends:
                        break
                # the thread writes this chunk while the loop serves requests and encodes the next
                await loop.run_in_executor(io, writer.write, rows)
            tracker.pending = None
            await loop.run_in_executor(io, writer.commit, upto, gateways, history)
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
        self._checkpointed(upto, expired)
        return len(taken)

    async def forget_gateway(self, gateway: str) -> int:
        """Checkpoint, then drop one gateway's sessions from memory; how many were dropped.

        The caller stops applying the gateway's records first (ownership moved elsewhere): what
        is applied here after the checkpoint is in the journal after its replay point."""
        while self._checkpointing:  # the running one may have begun before the last record
            await asyncio.sleep(0.005)
        try:
            await self.checkpoint(self._clock())
        except JournalError:
            pass  # the new owner replays the journal past the last replay point
        assert self.store is not None
        return self.store.forget_gateway(gateway)


def _last_heard(info: GatewayInfo) -> int:
    return info.last_heard


def now_ms() -> int:
    return time.time_ns() // 1_000_000
