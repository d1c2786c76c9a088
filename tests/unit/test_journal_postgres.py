"""The PostgreSQL journal keeps the embedded one's promise, and fences gateways by ownership
(docs/scale-out.md).

In-process, against a real PostgreSQL (tests/support/postgres.py: a fresh database per test).
Two `PostgresJournal`s on one database are two instances. Failures are real where PostgreSQL
can make them (`pg_terminate_backend` on a live connection); a COMMIT whose outcome the client
never learns is made by a psycopg connection class that commits and then drops the connection
(`UnknownCommit`), psycopg's own `connection_class` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest

from app import records
from app.events import Event
from app.journal import JournalError
from app.journal.postgres import PostgresJournal
from app.ownership import SharedOwnership
from app.store import Store
from tests.support.pg_faults import PgFaults

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ev(type_: str, ts: int, gateway: str = "g1", **fields: Any) -> Event:
    return msgspec.convert({"type": type_, "ts": ts, "gatewayId": gateway, **fields}, Event)


def states(store: Store, gateway: str | None = None) -> dict[tuple[str, str], list[Any]]:
    return {(s.gateway, s.key): s.to_state() for s in store.iter_sessions() if gateway in (None, s.gateway)}


class UnknownCommit(psycopg.Connection):  # type: ignore[type-arg]
    """While `armed`, the writer's next transaction commits on the server, then the connection
    drops before the client hears back: the outcome is unknown to the writer."""

    armed = False

    @contextlib.contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with super().transaction(*args, **kwargs) as tx:
            yield tx
        if UnknownCommit.armed and (self.info.parameter_status("application_name") or "").endswith(" writer"):
            UnknownCommit.armed = False
            self.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly (injected after COMMIT)")


class Instance:
    """One instance's journal, store and ownership, opened on the test database."""

    def __init__(self, url: str, name: str, connection_class: type[Any] = psycopg.Connection) -> None:
        self.journal = PostgresJournal(url, instance_id=name, clock=lambda: T0, connection_class=connection_class)
        self.store = Store(tracker=self.journal.tracker)
        self.journal.open(self.store)
        self.ownership = SharedOwnership(self.journal, interval_ms=100)

    async def send(self, events: list[Event], received: int = T0) -> list[Any]:
        """What ingest does: claim the gateway, then one record acknowledged once applied."""
        gateway = events[0].gatewayId
        assert gateway is not None
        if not await self.ownership.claim(gateway):
            raise JournalError("gateway_moving")
        future = self.journal.submit(records.events_record(events, received))
        assert future is not None
        return await future

    def close(self) -> None:
        self.journal.close()


async def until(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    while not condition():
        assert loop.time() < ends, "condition not reached"
        await asyncio.sleep(0.02)


def terminate(url: str, instance: str, role: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"openclaw-diagnostics {instance} {role}",)).fetchall())


SCRIPT = [
    ("session.state", {"sessionKey": "k1", "sessionId": "id1", "state": "processing", "eventId": "a"}),
    ("run.started", {"sessionKey": "k1", "runId": "r1"}),
    ("model.call.started", {"sessionKey": "k1", "runId": "r1", "provider": "p", "model": "m"}),
    ("session.state", {"sessionId": "id2", "state": "processing", "queueDepth": 2}),
    ("message.queued", {"sessionKey": "k2", "source": "x"}),
    ("run.progress", {"sessionKey": "k2", "sessionId": "id2", "reason": "link"}),
    ("session.state", {"sessionKey": "k1", "state": "idle", "seq": 9}),
]


async def play(instance: Instance, start: int, gateway: str = "g1") -> None:
    for i, (type_, fields) in enumerate(SCRIPT):
        await instance.send([ev(type_, start + i * 10, gateway, **fields)], start + i * 10 + 5)


async def test_a_crash_and_a_new_instance_restore_the_same_state(postgres_url: str) -> None:
    a = Instance(postgres_url, "a")
    await play(a, T0)
    await a.journal.checkpoint(T0)
    await a.send([ev("message.queued", T0 + 500, sessionKey="k3", source="x", eventId="q1")])  # the tail
    expected = states(a.store)
    a.close()  # a crash: no final checkpoint; PostgreSQL lets go of the lock with the connection

    b = Instance(postgres_url, "b")
    try:
        assert states(b.store) == {}  # nothing is loaded before the gateway's first contact
        again = await b.send([ev("message.queued", T0 + 500, sessionKey="k3", source="x", eventId="q1")])
        assert [r.outcome for r in again] == ["duplicate"]  # the idempotency keys came too
        assert states(b.store) == expected
        assert b.store.find("g1", "id2") is b.store.find("g1", "k2")  # aliases
    finally:
        b.close()


async def test_one_owner_at_a_time_and_handover_on_demand(postgres_url: str) -> None:
    a, b = Instance(postgres_url, "a"), Instance(postgres_url, "b")
    told: list[tuple[str, str, str]] = []  # what the change watcher and the metrics hear
    a.ownership.listeners.append(lambda kind, gateway: told.append(("a", kind, gateway)))
    b.ownership.listeners.append(lambda kind, gateway: told.append(("b", kind, gateway)))
    try:
        await play(a, T0)
        assert not await b.ownership.claim("g1")  # a holds it: b asks for it and says "moving"
        await until(lambda: not a.journal.owns("g1"))  # a let go (NOTIFY), after its records
        assert states(a.store) == {}
        assert await b.ownership.claim("g1")  # the forwarder's retry
        await until(lambda: ("a", "left", "g1") in told)
        assert [t for t in told if t[0] == "a"] == [("a", "arrived", "g1"), ("a", "left", "g1")]
        assert [t for t in told if t[0] == "b"] == [("b", "arrived", "g1")]
        await b.send([ev("message.queued", T0 + 900, sessionKey="k2", source="y")])
        assert b.store.find("g1", "k2").queue_depth == 3
        # a fenced-out instance cannot write for the gateway, even if something still asks
        with pytest.raises(JournalError, match="gateway_moving"):
            await a.journal.submit(records.events_record([ev("message.queued", T0, sessionKey="zz", source="x")],
                                                         T0))
    finally:
        a.close()
        b.close()


async def test_a_cut_lock_connection_stops_writes_before_anyone_else_takes_over(postgres_url: str) -> None:
    a, b = Instance(postgres_url, "a"), Instance(postgres_url, "b")
    try:
        await play(a, T0)
        assert terminate(postgres_url, "a", "writer") == 1
        await until(lambda: not a.journal.owns("g1"))  # noticed by its next ping, within a second
        assert states(a.store) == {}  # forgotten: nothing of it is classified here any more
        with pytest.raises(JournalError, match="gateway_moving"):
            await a.journal.submit(records.events_record([ev("message.queued", T0, sessionKey="zz", source="x")],
                                                         T0))
        await until(lambda: a.journal.status().ready)
        assert await b.ownership.claim("g1")
        assert b.store.find("g1", "k1").state == "idle" and b.store.find("g1", "zz") is None
    finally:
        a.close()
        b.close()


async def test_a_dropped_connection_fails_the_request_applies_nothing_and_heals(postgres_url: str) -> None:
    a = Instance(postgres_url, "a")
    try:
        await a.send([ev("message.queued", T0, sessionKey="s", source="x", eventId="e0")])
        terminate(postgres_url, "a", "writer")
        # the request that meets the dead connection fails, whole; the next one heals
        outcomes = []
        for attempt in range(50):
            try:
                results = await a.send([ev("message.queued", T0 + 1, sessionKey="s", source="x", eventId="e1")])
                outcomes.append([r.outcome for r in results])
                break
            except JournalError as exc:
                outcomes.append(str(exc))
                await asyncio.sleep(0.05)
        assert outcomes[-1] == ["accepted"], outcomes
        assert a.store.find("g1", "s").queue_depth == 2, outcomes  # e0 reloaded from PostgreSQL, e1 once
    finally:
        a.close()


async def test_a_commit_whose_outcome_is_unknown_is_applied_exactly_once_after_the_retry(postgres_url: str) -> None:
    a = Instance(postgres_url, "a", connection_class=UnknownCommit)
    try:
        await a.send([ev("message.queued", T0, sessionKey="s", source="x", eventId="e0")])
        UnknownCommit.armed = True
        with pytest.raises(JournalError):  # the client hears 503: nothing it knows of was applied
            await a.send([ev("message.queued", T0 + 1, sessionKey="s", source="x", eventId="e1")])
        assert not UnknownCommit.armed
        assert a.store.find("g1", "s") is None  # the gateway went with the connection's locks
        await until(lambda: a.journal.status().ready)
        # the forwarder's retry: the row did commit, so it comes back with the gateway, and the
        # retried event is its duplicate
        retried = await a.send([ev("message.queued", T0 + 1, sessionKey="s", source="x", eventId="e1")])
        assert [r.outcome for r in retried] == ["duplicate"]
        assert a.store.find("g1", "s").queue_depth == 2
    finally:
        UnknownCommit.armed = False
        a.close()


async def test_a_gateway_claimed_while_the_database_refuses_connections_fails_fast_and_heals(postgres_url: str) -> None:
    faults = PgFaults()
    a = Instance(postgres_url, "a", connection_class=faults.connection_class())
    try:
        faults.fail("writer")  # before the writer's first connection: it is refused, not dropped
        with pytest.raises(JournalError):  # ingest answers 503: the forwarder retries
            await asyncio.wait_for(a.ownership.claim("g1"), 10)  # (it used to wait forever)
        assert not a.journal.owns("g1")
        faults.heal()
        await until(lambda: a.journal.status().ready)
        await play(a, T0)
        assert a.store.find("g1", "k1").state == "idle"
    finally:
        a.close()
