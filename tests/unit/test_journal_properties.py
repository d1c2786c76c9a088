"""Property: for any interleaving of requests, failed commits, commits whose outcome is unknown,
checkpoints (failing or not) and crashes, the journal's store holds exactly the acknowledged
events — live, and after every restore. The model is a plain `Store` that applies each
acknowledged request, in order.

Run against both backends:
- the REAL SQLite journal: failures injected at the SQLite layer (tests/support/faults.py); a
  crash drops the journal and its store without a checkpoint and reopens the files;
- the REAL PostgreSQL journal (a fresh database per example): a failure is a dropped connection
  or a refused one (tests/support/pg_faults.py), which also loses the gateway's lock, so the
  store holds the gateway only while it owns it; a crash is a new instance on the same database.
A commit whose outcome is unknown (PostgreSQL only: committed, then the connection dropped) is
retried by the client as the forwarder does, and must be applied once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.journal import protocol as journal_protocol
from app import records
from app.events import Event
from app.journal import Journal, JournalError
from app.journal.postgres import PostgresJournal
from app.ownership import SharedOwnership
from app.store import Store
from tests.support.faults import Faults
from tests.support.pg_faults import PgFaults
from tests.support.postgres import fresh_database

T0 = 1_800_000_000_000

event_spec = st.tuples(
    st.sampled_from(["message.queued", "run.progress", "session.state"]),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(8)])),
)
# sends and checkpoints weighted up: the interesting histories interleave many of them
operation = st.tuples(
    st.sampled_from(["send"] * 4 + ["fail journal.db", "fail checkpoint.db", "heal", "checkpoint", "checkpoint",
                                    "crash", "unknown commit"]),
    st.lists(event_spec, min_size=1, max_size=4),
)
SEND = [("message.queued", "a", "e1"), ("message.queued", "b", None)]


def make_event(kind: str, key: str, event_id: str | None, ts: int) -> Event:
    fields: dict[str, Any] = {"type": kind, "ts": ts, "gatewayId": "g", "sessionKey": key}
    if kind == "message.queued":
        fields["source"] = "x"
    elif kind == "run.progress":
        fields["reason"] = "p"
    else:
        fields["state"] = "processing" if ts % 2 else "idle"
    if event_id is not None:
        fields["eventId"] = event_id
    return msgspec.convert(fields, Event)


def states(store: Store) -> dict[tuple[str, str], list[Any]]:
    # all but `last_row`: where the journal keeps a session's events, not a fact of the events,
    # so the journal-less model has none
    return {(s.gateway, s.key): dataclasses.replace(s, last_row=0).to_state() for s in store.iter_sessions()}


class SqliteBackend:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.faults = Faults()
        self.store, self.journal = self._open()

    def _open(self) -> tuple[Store, Journal]:
        journal = Journal(self.path, clock=lambda: T0, connection_factory=self.faults.connection_factory())
        store = Store(tracker=journal.tracker)
        journal.open(store)
        return store, journal

    def fail(self, what: str) -> None:
        self.faults.fail(what)

    def heal(self) -> None:
        self.faults.heal()

    def arm_unknown_commit(self) -> bool:
        return False  # SQLite answers every commit

    async def send(self, events: list[Event], now: int) -> None:
        future = self.journal.submit(records.events_record(events, now))
        assert future is not None
        await asyncio.wait_for(future, 10)

    def holds(self) -> bool:
        return True

    async def crash(self) -> None:
        self.journal.close()
        self.faults.heal()
        self.store, self.journal = self._open()

    def close(self) -> None:
        self.journal.close()


class PostgresBackend:
    ROLES = {"journal.db": "writer", "checkpoint.db": "checkpoint"}

    def __init__(self, url: str) -> None:
        self.url = url
        self.faults = PgFaults()
        self._open()

    def _open(self) -> None:
        self.journal = PostgresJournal(self.url, instance_id="p", clock=lambda: T0,
                                       connection_class=self.faults.connection_class())
        self.store = Store(tracker=self.journal.tracker)
        self.journal.open(self.store)
        self.ownership = SharedOwnership(self.journal, interval_ms=1_000)

    def fail(self, what: str) -> None:
        self.faults.fail(self.ROLES[what])

    def heal(self) -> None:
        self.faults.heal()

    def arm_unknown_commit(self) -> bool:
        self.faults.unknown_commit()
        return True

    async def send(self, events: list[Event], now: int) -> None:
        # what ingest does first; bounded, so that a claim nobody answers fails the example
        if not await asyncio.wait_for(self.ownership.claim("g"), 10):
            raise JournalError("gateway_moving")
        future = self.journal.submit(records.events_record(events, now))
        assert future is not None
        await asyncio.wait_for(future, 10)

    def holds(self) -> bool:
        return self.journal.owns("g")

    async def crash(self) -> None:
        self.journal.close()
        self.faults.heal()
        self._open()
        await asyncio.wait_for(self.ownership.claim("g"), 10)  # the gateway's next request

    def close(self) -> None:
        self.journal.close()


async def until_ready(backend: Any) -> None:
    for _ in range(500):
        if backend.journal.status().ready:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the journal did not heal")


async def scenario(backend: Any, operations: list[tuple[str, Any]]) -> None:
    model = Store()
    now = T0
    try:
        for op, arg in operations:
            now += 1_000
            if op in ("send", "unknown commit"):
                specs = arg
                retried = False
                if op == "unknown commit":
                    # the client retries what it was not answered: only idempotent events may be
                    specs = [(kind, key, event_id or f"u{now}-{i}") for i, (kind, key, event_id) in enumerate(arg)]
                    backend.heal()
                    await until_ready(backend)
                    retried = backend.arm_unknown_commit()
                events = lambda: [make_event(kind, key, event_id, now + i)  # noqa: E731
                                  for i, (kind, key, event_id) in enumerate(specs)]
                acknowledged = False
                for attempt in range(20 if retried else 1):
                    try:
                        await backend.send(events(), now)
                    except JournalError:
                        if retried:
                            await until_ready(backend)
                        continue
                    acknowledged = True
                    break
                assert acknowledged or not retried, "the retry was never acknowledged"
                if acknowledged:
                    for event in events():
                        model.apply_event(event, now)
            elif op.startswith("fail "):
                backend.fail(op.removeprefix("fail "))
            elif op == "heal":
                backend.heal()
            elif op == "checkpoint":
                try:
                    await backend.journal.checkpoint(now)
                except JournalError:
                    pass
            else:  # crash: everything in memory is gone; the restart comes once the disk has room
                await backend.crash()
            # live: the store holds exactly what was acknowledged (of the gateways it holds)
            assert states(backend.store) == (states(model) if backend.holds() else {}), op
        await backend.crash()
        assert states(backend.store) == states(model)
    finally:
        backend.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=30))
# the histories that broke the first release, always tried
@example(operations=[("send", SEND), ("crash", SEND), ("checkpoint", SEND), ("crash", SEND)])
@example(operations=[("send", SEND), ("fail checkpoint.db", SEND), ("checkpoint", SEND), ("heal", SEND),
                     ("checkpoint", SEND), ("crash", SEND)])
@example(operations=[("fail journal.db", SEND), ("send", SEND), ("send", SEND), ("heal", SEND), ("send", SEND),
                     ("checkpoint", SEND), ("crash", SEND)])
def test_restore_yields_exactly_the_acknowledged_events(operations, monkeypatch):
    monkeypatch.setattr(journal_protocol, "RETRY_FIRST_S", 0.001)
    monkeypatch.setattr(journal_protocol, "RETRY_MAX_S", 0.005)
    path = Path(tempfile.mkdtemp(prefix="journal-property-"))
    try:
        asyncio.run(scenario(SqliteBackend(path), operations))
    finally:
        shutil.rmtree(path, ignore_errors=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=20))
@example(operations=[("send", SEND), ("unknown commit", SEND), ("crash", SEND)])
@example(operations=[("send", SEND), ("fail journal.db", SEND), ("send", SEND), ("heal", SEND), ("send", SEND),
                     ("checkpoint", SEND), ("crash", SEND)])
@example(operations=[("send", SEND), ("fail checkpoint.db", SEND), ("checkpoint", SEND), ("heal", SEND),
                     ("checkpoint", SEND), ("crash", SEND)])
def test_restore_yields_exactly_the_acknowledged_events_on_postgresql(operations, monkeypatch, postgres_server):
    monkeypatch.setattr(journal_protocol, "RETRY_FIRST_S", 0.001)
    monkeypatch.setattr(journal_protocol, "RETRY_MAX_S", 0.005)
    with fresh_database(postgres_server) as url:
        asyncio.run(scenario(PostgresBackend(url), operations))
