"""The PostgreSQL journal, and the gateway ownership it carries (docs/scale-out.md).

Several instances share one PostgreSQL. The protocol is the embedded journal's
(`app/journal/protocol.py`): a 202 still means committed. What differs, and why this module is
long — storage and ownership cannot be separated, because the fence IS the connection:

- **Ids come from a sequence when rows are written**, in commit order, so one gateway's records
  are ordered across owners: a new owner writes only after the old one let go.
- **Ownership is a session-level advisory lock held by the writer's own connection.** Every
  record of a gateway is written on the connection that holds its lock, so the moment PostgreSQL
  drops that connection (the instance died, or `pg_terminate_backend`), the lock is free and
  this instance can write nothing more for the gateway: the writer refuses records of gateways
  it does not hold, and a new connection holds nothing. The loop is told, and forgets them.
- **Checkpoints are per gateway** (`oc_gateways.upto`) and fenced by an epoch: taking a lock
  bumps the gateway's epoch, and a checkpoint writes only the gateways whose epoch it knew, under
  `FOR SHARE`, so a stale checkpoint can never overwrite a new owner's.
- **Restore is lazy**: a gateway's sessions (checkpoint rows, idempotency keys, journal tail) are
  read when this instance takes it, and installed on the loop.
- **Handover** is asked with `NOTIFY oc_handover`; a listener thread hands requests to the loop
  (`app/ownership.py` decides what to do with them).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg

from app import records
from app.journal.interface import JournalError
from app.journal.protocol import GroupCommitJournal, pack, unpack
from app.records import Record
from app.store import GatewayInfo, Session, Store

log = logging.getLogger("openclaw.diagnostics.journal")

SCHEMA_VERSION = 1
HANDOVER_CHANNEL = "oc_handover"
PING_EVERY_S = 1.0  # an idle writer checks its connection (and so its locks) this often
RECENT_SCAN_ROWS = 1_000
COMPACT_EVERY_S = 5.0
COMPACT_ROWS = 20_000  # rows one compaction statement may delete
MIGRATION_LOCK = 0x6F63_6469_6167  # an advisory lock key of our own: one instance migrates at a time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS oc_meta (k text PRIMARY KEY, v bytea NOT NULL);
CREATE SEQUENCE IF NOT EXISTS oc_journal_ids;
CREATE TABLE IF NOT EXISTS oc_journal (
    id bigint PRIMARY KEY,
    kind text NOT NULL,
    gateway text,
    session text,
    at bigint,
    dkey bytea,
    body bytea
);
CREATE INDEX IF NOT EXISTS oc_journal_gateway ON oc_journal (gateway, id);
CREATE INDEX IF NOT EXISTS oc_journal_audit ON oc_journal (id) WHERE kind = 'A';
CREATE TABLE IF NOT EXISTS oc_sessions (
    gateway text NOT NULL,
    key text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (gateway, key)
);
CREATE TABLE IF NOT EXISTS oc_gateways (
    gateway text PRIMARY KEY,
    lock_key bigint NOT NULL,
    upto bigint NOT NULL DEFAULT 0,
    info bytea,
    owner text,
    epoch bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS oc_instances (
    id text PRIMARY KEY,
    url text,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
"""


def lock_key(gateway: str) -> int:
    """A gateway's advisory lock key: 63 bits of a hash (a collision would tie two gateways)."""
    return int.from_bytes(hashlib.blake2b(gateway.encode(), digest_size=8).digest(), "big") >> 1


@dataclass(slots=True)
class Held:
    """A gateway this instance holds: its epoch, and the newest record id it loaded."""

    epoch: int
    loaded_upto: int


@dataclass(slots=True)
class Loaded:
    """A gateway's persisted state, read on a thread and installed on the loop."""

    info: GatewayInfo | None
    sessions: list[Session]
    dedupe: list[tuple[list[Any], int]]
    tail: list[Record]
    tail_keys: list[Any]  # the idempotency keys the tail carries: replayed, not "duplicates"
    upto: int


@dataclass(slots=True)
class _Control:
    op: str  # lock | unlock
    gateway: str
    done: asyncio.Future[Any]


@dataclass(slots=True)
class InstanceEntry:
    id: str
    url: str | None
    age_s: float
    gateways: list[str] = field(default_factory=list)


class PostgresJournal(GroupCommitJournal):
    def __init__(self, url: str, *, instance_id: str, instance_url: str | None = None,
                 retention_ms: int = 6 * 3_600_000, clock: Callable[[], int] | None = None,
                 connection_class: type[psycopg.Connection[Any]] = psycopg.Connection) -> None:
        super().__init__(retention_ms=retention_ms, clock=clock)
        self.url = url
        self._connection_class = connection_class  # psycopg's own hook: tests inject failures with it
        self.instance_id = instance_id
        self.instance_url = instance_url
        self._held: dict[str, Held] = {}  # writer thread's: what its connection holds
        self._owned: dict[str, Held] = {}  # the loop's copy, for checkpoints
        self._control: list[_Control] = []
        self._pinged = time.monotonic()
        self._compacted = 0.0
        self._inflight: Counter[str] = Counter()  # records queued or not yet applied, per gateway
        self._settled: dict[str, asyncio.Event] = {}
        self._reader: psycopg.Connection[Any] | None = None
        self._reader_lock = threading.Lock()
        self._listener: threading.Thread | None = None
        # what the loop is told (app/ownership.py sets these)
        self.on_handover: Callable[[str], None] = lambda gateway: None
        self.on_lost: Callable[[list[str]], None] = lambda gateways: None

    def _connect(self, role: str, autocommit: bool = True) -> psycopg.Connection[Any]:
        return self._connection_class.connect(self.url, autocommit=autocommit, connect_timeout=5,
                               application_name=f"openclaw-diagnostics {self.instance_id} {role}"[:63],
                               keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, store: Store) -> bool:
        """Create or migrate the schema and register this instance; nothing is restored until a
        gateway is taken (lazily, on its first event or by adoption)."""
        self.store = store
        with self._connect("migrate") as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(_SCHEMA)
                row = conn.execute("SELECT v FROM oc_meta WHERE k = 'schema_version'").fetchone()
                version = int(bytes(row[0]).decode()) if row else 0
                if version > SCHEMA_VERSION:
                    raise RuntimeError(f"the database's schema is version {version}; this release knows "
                                       f"{SCHEMA_VERSION}: upgrade this instance")
                conn.execute("INSERT INTO oc_meta (k, v) VALUES ('schema_version', %s) "
                             "ON CONFLICT (k) DO UPDATE SET v = excluded.v", (str(SCHEMA_VERSION).encode(),))
            self._heartbeat(conn)
        self._reader = self._connect("reader")
        self._start_writer()
        self._listener = threading.Thread(target=self._listen, name="journal-listener", daemon=True)
        self._listener.start()
        return False

    def close(self) -> None:
        self._stop_writer()
        with self._reader_lock:
            if self._reader is not None:
                try:
                    self._reader.execute("DELETE FROM oc_instances WHERE id = %s", (self.instance_id,))
                except psycopg.Error:
                    pass
                self._reader.close()
                self._reader = None
        if self._listener is not None:
            self._listener.join(timeout=5)

    def shared_key(self, name: str, make: Callable[[], bytes]) -> bytes:
        """A secret all instances share (the session-hash key), created by the first to ask."""
        with self._reader_lock:
            assert self._reader is not None
            self._reader.execute("INSERT INTO oc_meta (k, v) VALUES (%s, %s) ON CONFLICT (k) DO NOTHING",
                                 (name, make()))
            row = self._reader.execute("SELECT v FROM oc_meta WHERE k = %s", (name,)).fetchone()
        return bytes(row[0])

    # -- the storage steps of the protocol (writer thread) ----------------------------------------

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None:
        if record.gateway is not None:
            self._inflight[record.gateway] += 1
        return super().submit(record, wait=wait)

    def _storage_connect(self) -> psycopg.Connection[Any]:
        conn = self._connect("writer")
        self._held = {}  # a new connection holds no lock
        self._pinged = time.monotonic()
        return conn

    def _before_write(self, group: list[Record]) -> tuple[list[Record], list[tuple[Record, str]]]:
        held = self._held
        kept: list[Record] = []
        refused: list[tuple[Record, str]] = []
        for record in group:
            if record.gateway is None or record.kind == records.AUDIT or record.gateway in held:
                kept.append(record)
            else:
                refused.append((record, f"gateway_moving: this instance no longer owns gateway {record.gateway}"))
        return kept, refused

    def _storage_write(self, conn: psycopg.Connection[Any], group: list[Record]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT nextval('oc_journal_ids') FROM generate_series(1, %s)", (len(group),))
            ids = sorted(row[0] for row in cur.fetchall())
            with cur.copy("COPY oc_journal (id, kind, gateway, session, at, dkey, body) FROM STDIN") as copy:
                for record, rid in zip(group, ids):
                    record.id = rid
                    copy.write_row(record.row())
        self._pinged = time.monotonic()

    def _storage_probe(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT 1")

    def _storage_close(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.close()
        except psycopg.Error:
            pass
        lost = list(self._held)
        self._held = {}
        if lost:
            log.warning("the journal's connection closed: %d gateways are no longer this instance's", len(lost))
            self._to_loop(self._lost, lost)

    def _lost_connection(self) -> None:
        # Also when the connection could not even be opened: what was asked of the writer fails
        # now, rather than waiting for a connection that may not come back (a lock taken on a
        # dead connection would be no lock anyway).
        with self._cond:
            asked, self._control = self._control, []
        for control in asked:
            self._to_loop(_settle, control.done, None, JournalError("the journal's connection closed"))

    def _idle_wait_s(self) -> float | None:
        return PING_EVERY_S

    def _storage_maintenance_due(self) -> bool:
        return bool(self._control) or time.monotonic() - self._pinged >= PING_EVERY_S

    def _storage_maintain(self, conn: psycopg.Connection[Any]) -> bool:
        try:
            while True:
                with self._cond:
                    if not self._control:
                        break
                    control = self._control.pop(0)
                try:
                    result = self._lock(conn, control.gateway) if control.op == "lock" else \
                        self._unlock(conn, control.gateway)
                except BaseException as exc:
                    self._to_loop(_settle, control.done, None, exc)
                    raise
                self._to_loop(_settle, control.done, result, None)
            if time.monotonic() - self._pinged >= PING_EVERY_S:
                conn.execute("SELECT 1")  # a cut connection (and its locks) is noticed within a second
                self._pinged = time.monotonic()
            if self._held and time.monotonic() - self._compacted >= COMPACT_EVERY_S:
                self._compacted = time.monotonic()
                self._compact(conn)
        except psycopg.Error as exc:
            log.warning("the journal's connection failed: %s", exc)
            return False
        return True

    def _lock(self, conn: psycopg.Connection[Any], gateway: str) -> Held | None:
        if gateway in self._held:
            return self._held[gateway]
        key = lock_key(gateway)
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            return None
        with conn.transaction():
            epoch = conn.execute(
                "INSERT INTO oc_gateways (gateway, lock_key, owner, epoch) VALUES (%s, %s, %s, 1) "
                "ON CONFLICT (gateway) DO UPDATE SET owner = excluded.owner, epoch = oc_gateways.epoch + 1 "
                "RETURNING epoch", (gateway, key, self.instance_id)).fetchone()[0]
            newest = conn.execute("SELECT last_value FROM oc_journal_ids").fetchone()[0]
        held = self._held[gateway] = Held(epoch, newest)
        return held

    def _unlock(self, conn: psycopg.Connection[Any], gateway: str) -> bool:
        if self._held.pop(gateway, None) is None:
            return False
        conn.execute("UPDATE oc_gateways SET owner = NULL WHERE gateway = %s AND owner = %s",
                     (gateway, self.instance_id))
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(gateway),))
        return True

    def _compact(self, conn: psycopg.Connection[Any]) -> None:
        """Delete what the gateways' checkpoints cover and is not history, and covered history
        past the retention (one bounded statement each)."""
        horizon = self._clock() - self.retention_ms
        conn.execute(
            "DELETE FROM oc_journal WHERE id IN (SELECT j.id FROM oc_journal j JOIN oc_gateways g "
            "ON j.gateway = g.gateway WHERE j.id <= g.upto AND (j.kind NOT IN ('B', 'S', 'E', 'A') "
            "OR j.at < %s) LIMIT %s)", (horizon, COMPACT_ROWS))

    # -- ownership, asked from the loop --------------------------------------------------------

    async def _ask(self, op: str, gateway: str) -> Any:
        if self.last_error is not None:  # the writer has no connection to take a lock with
            raise JournalError(f"the journal cannot commit: {self.last_error}")
        self._loop = loop = self._loop or asyncio.get_running_loop()
        done = loop.create_future()
        with self._cond:
            self._control.append(_Control(op, gateway, done))
            self._cond.notify()
        return await done

    async def take(self, gateway: str) -> bool:
        """Take the gateway's lock and load its sessions; False: another instance holds it."""
        held = await self._ask("lock", gateway)
        if held is None:
            return False
        try:
            loaded = await asyncio.to_thread(self._read_gateway, gateway)
        except BaseException:
            await self._ask("unlock", gateway)
            raise
        self._install(loaded)
        self._owned[gateway] = Held(held.epoch, max(held.loaded_upto, loaded.upto))
        return True

    async def release(self, gateway: str) -> None:
        """Hand a gateway over: wait for its records, checkpoint, forget it, unlock."""
        await self.settle(gateway)
        await self.forget_gateway(gateway)
        self._owned.pop(gateway, None)
        await self._ask("unlock", gateway)

    async def settle(self, gateway: str) -> None:
        """Until every record of the gateway submitted so far is applied or failed."""
        while self._inflight.get(gateway):
            event = self._settled.setdefault(gateway, asyncio.Event())
            await event.wait()

    def _lost(self, gateways: list[str]) -> None:
        """The loop's side of a lost connection: the gateways are no longer ours."""
        for gateway in gateways:
            self._owned.pop(gateway, None)
            if self.store is not None:
                self.store.forget_gateway(gateway)
        self.on_lost(gateways)

    def owned(self) -> list[str]:
        return list(self._owned)

    def owns(self, gateway: str) -> bool:
        return gateway in self._owned

    def ask_handover(self, gateway: str) -> None:
        """Blocking: ask whoever holds the gateway to let it go."""
        with self._reader_lock:
            assert self._reader is not None
            self._reader.execute("SELECT pg_notify(%s, %s)", (HANDOVER_CHANNEL, gateway))

    def free_gateways(self) -> list[str]:
        """Blocking: known gateways whose lock nobody holds (their owner died, or let go)."""
        with self._reader_lock:
            assert self._reader is not None
            rows = self._reader.execute(
                "SELECT g.gateway FROM oc_gateways g WHERE NOT EXISTS (SELECT 1 FROM pg_locks l "
                "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
                "AND l.classid::text::bigint = g.lock_key >> 32 "
                "AND l.objid::text::bigint = g.lock_key & 4294967295)"
            ).fetchall()
        return [row[0] for row in rows]

    def heartbeat(self) -> None:
        """Blocking: this instance is alive (the registry fleet reads use)."""
        with self._reader_lock:
            assert self._reader is not None
            self._heartbeat(self._reader)

    def _heartbeat(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("INSERT INTO oc_instances (id, url) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE "
                     "SET url = excluded.url, heartbeat_at = now()", (self.instance_id, self.instance_url))

    def instances(self) -> list[InstanceEntry]:
        """Blocking: the registered instances, with the gateways each owns."""
        with self._reader_lock:
            assert self._reader is not None
            rows = self._reader.execute(
                "SELECT i.id, i.url, extract(epoch FROM now() - i.heartbeat_at)::float8, "
                "coalesce(array_agg(g.gateway ORDER BY g.gateway) FILTER (WHERE g.gateway IS NOT NULL), '{}') "
                "FROM oc_instances i LEFT JOIN oc_gateways g ON g.owner = i.id GROUP BY i.id ORDER BY i.id"
            ).fetchall()
        return [InstanceEntry(rid, url, age, list(gateways)) for rid, url, age, gateways in rows]

    def owner_of(self, gateway: str) -> str | None:
        with self._reader_lock:
            assert self._reader is not None
            row = self._reader.execute("SELECT owner FROM oc_gateways WHERE gateway = %s", (gateway,)).fetchone()
        return row[0] if row else None

    def _record_done(self, record: Record) -> None:
        gateway = record.gateway
        if gateway is None:
            return
        left = self._inflight[gateway] - 1
        if left > 0:
            self._inflight[gateway] = left
            return
        del self._inflight[gateway]
        event = self._settled.pop(gateway, None)
        if event is not None:
            event.set()

    # -- loading one gateway ----------------------------------------------------------------------

    def _read_gateway(self, gateway: str) -> Loaded:
        """Blocking: a gateway's checkpoint, its idempotency keys and the journal after it."""
        store = self.store
        assert store is not None
        dedupe = store.dedupe
        horizon = self._clock() - dedupe.max_age_ms
        with self._connect("loader") as conn:
            row = conn.execute("SELECT upto, info FROM oc_gateways WHERE gateway = %s", (gateway,)).fetchone()
            upto, info_body = (row[0], row[1]) if row else (0, None)
            info = GatewayInfo.from_state(unpack(info_body)) if info_body else None
            sessions = [Session.from_state(unpack(body)) for (body,) in conn.execute(
                "SELECT body FROM oc_sessions WHERE gateway = %s", (gateway,))]
            found: list[tuple[list[Any], int]] = []
            count = 0
            for kind, dkey, at in conn.execute(
                "SELECT kind, dkey, at FROM oc_journal WHERE gateway = %s AND kind IN ('B', 'E') "
                "AND dkey IS NOT NULL AND id <= %s AND at >= %s ORDER BY id DESC", (gateway, upto, horizon)):
                keys = [tuple(unpack(dkey))] if kind == records.LEGACY_EVENT else records.dedupe_keys(bytes(dkey))
                found.append((keys, at))
                count += len(keys)
                if count >= dedupe.max_keys:
                    break
            tail: list[Record] = []
            tail_keys: list[Any] = []
            for rid, kind, owner, key, at, dkey, body in conn.execute(
                    "SELECT id, kind, gateway, session, at, dkey, body FROM oc_journal "
                    "WHERE gateway = %s AND id > %s ORDER BY id", (gateway, upto)):
                tail.append(records.from_row(rid, kind, owner, key, at, bytes(body) if body is not None else b""))
                if dkey is not None and kind == records.EVENTS:
                    tail_keys.extend(records.dedupe_keys(bytes(dkey)))
        newest = tail[-1].id if tail else upto
        return Loaded(info, sessions, list(reversed(found)), tail, tail_keys, newest)

    def _install(self, loaded: Loaded) -> None:
        store = self.store
        assert store is not None
        if loaded.info is not None:
            store.restore_gateway(loaded.info)
        for session in loaded.sessions:
            store.restore_session(session)
        # This instance may have held the gateway before, and its keys outlive a forget (the
        # window keeps hashes, not gateways): the tail's own keys must not find themselves.
        for key in loaded.tail_keys:
            if key is not None:
                store.dedupe.discard(key)
        for keys, at in loaded.dedupe:
            store.dedupe.extend(keys, at)
        for record in loaded.tail:
            records.apply(store, record)

    def load_gateway(self, gateway: str) -> int:
        """Blocking, for tools: read and install one gateway without taking it (no lock)."""
        self._install(self._read_gateway(gateway))
        assert self.store is not None
        return self.store.session_count_of(gateway)

    # -- checkpoint --------------------------------------------------------------------------

    def _checkpoint_gateways(self) -> list[GatewayInfo]:
        assert self.store is not None
        infos = []
        for gateway in self._owned:
            info = self.store.gateway_info(gateway)
            if info is not None:
                infos.append(info)
        return infos

    def _checkpoint_writer(self) -> _CheckpointWriter:
        return _CheckpointWriter(self, dict(self._owned))

    # -- reading --------------------------------------------------------------------------

    def recent_events(self, gateway: str, keys: Iterable[str], newest_row: int,
                      limit: int = 50) -> list[dict[str, Any]]:
        wanted = {k for k in keys if k}
        if not wanted or self._reader is None or newest_row <= 0:
            return []
        needles = [msgspec.json.encode(key) for key in wanted]
        events: list[dict[str, Any]] = []
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT kind, at, body FROM oc_journal WHERE gateway = %s AND id <= %s "
                "AND kind IN ('B', 'S', 'E') ORDER BY id DESC LIMIT %s", (gateway, newest_row, RECENT_SCAN_ROWS),
            ).fetchall()
        for kind, at, body in rows:
            body = bytes(body) if body is not None else b""
            if not body or not any(needle in body for needle in needles):
                continue
            events.extend(reversed(records.history_events(body, kind, at, gateway, wanted)))
            if len(events) >= limit:
                break
        return events[:limit]

    def audit(self, before: int | None, limit: int, scope: frozenset[str] | None) -> list[tuple[int, dict[str, Any]]]:
        if self._reader is None:
            return []
        upper = before if before is not None else 2**62
        with self._reader_lock:
            if scope is None:
                rows = self._reader.execute(
                    "SELECT id, body FROM oc_journal WHERE kind = 'A' AND id < %s ORDER BY id DESC LIMIT %s",
                    (upper, limit)).fetchall()
            else:
                rows = self._reader.execute(
                    "SELECT id, body FROM oc_journal WHERE kind = 'A' AND id < %s AND gateway = ANY(%s) "
                    "ORDER BY id DESC LIMIT %s", (upper, list(scope), limit)).fetchall()
        return [(rid, msgspec.json.decode(bytes(body))) for rid, body in rows if body]

    # -- the handover listener (its own thread and connection) -------------------------------------

    def _listen(self) -> None:
        while not self._closing:
            try:
                with self._connect("listener") as conn:
                    conn.execute(f"LISTEN {HANDOVER_CHANNEL}")
                    while not self._closing:
                        for note in conn.notifies(timeout=0.25):  # how soon close() is heard
                            self._to_loop(self._handover_asked, note.payload)
            except psycopg.Error as exc:
                if not self._closing:
                    log.warning("the handover listener's connection failed (reconnecting): %s", exc)
                    time.sleep(1.0)

    def _handover_asked(self, gateway: str) -> None:
        if gateway in self._owned:
            self.on_handover(gateway)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(JournalError(f"the journal cannot change ownership: {exc}"))
    else:
        future.set_result(result)


class _CheckpointWriter:
    """One checkpoint's transaction, fenced by the epochs of the gateways it covers."""

    def __init__(self, journal: PostgresJournal, owned: dict[str, Held]) -> None:
        self.journal = journal
        self.owned = owned
        self.valid: set[str] = set()
        self.conn: psycopg.Connection[Any] | None = None
        self.tx: Any = None

    def begin(self, removed: list[tuple[str, str]]) -> None:
        self.conn = conn = self.journal._connect("checkpoint", autocommit=False)
        rows = conn.execute("SELECT gateway, epoch FROM oc_gateways WHERE gateway = ANY(%s) FOR SHARE",
                            (list(self.owned),)).fetchall()
        self.valid = {gateway for gateway, epoch in rows if self.owned[gateway].epoch == epoch}
        gone = [(gateway, key) for gateway, key in removed if gateway in self.valid]
        if gone:
            with conn.cursor() as cur:
                cur.executemany("DELETE FROM oc_sessions WHERE gateway = %s AND key = %s", gone)

    def write(self, rows: list[tuple[str, str, bytes]]) -> None:
        assert self.conn is not None
        kept = [row for row in rows if row[0] in self.valid]
        if kept:
            with self.conn.cursor() as cur:
                cur.executemany("INSERT INTO oc_sessions (gateway, key, body) VALUES (%s, %s, %s) "
                                "ON CONFLICT (gateway, key) DO UPDATE SET body = excluded.body", kept)

    def commit(self, upto: int, gateways: list[GatewayInfo], history: list[tuple[int, int]]) -> None:
        conn = self.conn
        assert conn is not None
        params = [(max(upto, self.owned[info.gateway_id].loaded_upto), pack(info.to_state()), info.gateway_id,
                   self.owned[info.gateway_id].epoch)
                  for info in gateways if info.gateway_id in self.valid]
        if params:
            with conn.cursor() as cur:
                cur.executemany("UPDATE oc_gateways SET upto = greatest(upto, %s), info = %s "
                                "WHERE gateway = %s AND epoch = %s", params)
        conn.commit()
        conn.close()
        self.conn = None

    def abort(self) -> None:
        if self.conn is not None:
            try:
                self.conn.rollback()
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None
