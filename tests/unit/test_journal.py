"""The journal rebuilds exactly the state that was acknowledged (quality.md, "Nothing lost").

In-process: the real SQLite journal on a temp directory; a "crash" drops the journal and its
store without a checkpoint and reopens the files with a fresh store. Write failures are
injected at the SQLite layer (tests/support/faults.py). The kill -9 of a real process and
real full disks are covered by tests/e2e/test_durability.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import msgspec
import pytest

from app.journal import protocol as journal_protocol
from app.journal import sqlite as journal_module
from app import records
from app.events import Event
from app.journal import DataDirLocked, Journal
from app.journal import JournalError
from app.store import Attention, Store
from tests.support.builders import recovery_outcome, recovery_request
from tests.support.faults import Faults

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000_000
HOUR = 3_600_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ev(type_: str, ts: int, **fields: Any) -> Event:
    return msgspec.convert({"type": type_, "ts": ts, "gatewayId": "default", **fields}, Event)


def states(store: Store) -> dict[tuple[str, str], list[Any]]:
    return {(s.gateway, s.key): s.to_state() for s in store.iter_sessions()}


def open_journal(path, faults: Faults | None = None, **options: Any) -> tuple[Store, Journal]:
    journal = Journal(path, clock=lambda: T0, connection_factory=(faults or Faults()).connection_factory(),
                      **options)
    store = Store(tracker=journal.tracker)
    journal.open(store)
    return store, journal


async def send(journal: Journal, events: list[Event], received: int) -> list[Any]:
    """What ingest does with one request: one record, acknowledged once it is applied."""
    future = journal.submit(records.events_record(events, received))
    assert future is not None
    return await future


SCRIPT = [
    ("session.state", {"sessionKey": "k1", "sessionId": "id1", "state": "processing", "eventId": "a"}),
    ("run.started", {"sessionKey": "k1", "runId": "r1"}),
    ("model.call.started", {"sessionKey": "k1", "runId": "r1", "provider": "p", "model": "m"}),
    ("tool.execution.started", {"runId": "r1", "toolName": "exec", "toolCallId": "c1"}),
    ("session.state", {"sessionId": "id2", "state": "processing", "queueDepth": 2}),
    ("message.queued", {"sessionKey": "k2", "source": "x"}),
    ("run.progress", {"sessionKey": "k2", "sessionId": "id2", "reason": "link"}),
    ("model.usage", {"sessionKey": "k1", "usage": {"input": 5, "output": 2, "total": 7}, "costUsd": 0.1}),
    ("session.stalled", {"sessionKey": "k1", "reason": "active_work_without_progress", "ageMs": 5}),
    ("session.state", {"sessionKey": "k1", "state": "idle", "seq": 9}),
    ("forwarder.keepalive", {"queued": 1, "dropped": 3}),
]


async def play(journal: Journal, script, start: int, per_request: int = 3) -> None:
    events = [(ev(type_, start + i * 10, **fields), start + i * 10 + 5) for i, (type_, fields) in enumerate(script)]
    for at in range(0, len(events), per_request):
        chunk = events[at:at + per_request]
        await send(journal, [e for e, _ in chunk], chunk[-1][1])


def assert_restores(path, expected: dict[tuple[str, str], list[Any]]) -> None:
    """A fresh store on the same files holds exactly `expected`."""
    restored, journal = open_journal(path)
    try:
        assert states(restored) == expected
    finally:
        journal.close()


async def until(condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    while not condition():
        assert loop.time() < ends, "condition not reached"
        await asyncio.sleep(0.01)


def rows(path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_restore_rebuilds_the_same_state(tmp_path):
    store, journal = open_journal(tmp_path)
    await play(journal, SCRIPT[:5], T0)
    await journal.checkpoint(T0)
    await play(journal, SCRIPT[5:], T0 + 1000)
    # monitor memory and a recovery, as the monitor and coordinator journal them
    k1 = store.find("default", "k1")
    assert await journal.submit(records.memory_record(
        k1, Attention("session.stuck", "r", "c", None, True, 10, T0), 10, None, None))
    request = recovery_request(gatewayId="default", sessionKey="k1", sessionId="id1", ageMs=10, queueDepth=0,
                               expectedState="idle", stateGeneration=k1.generation, reason="r",
                               activeWorkKind=None, allowActiveAbort=False, requestedAt=T0 + 2000)
    assert await journal.submit(records.requested_record(k1, request)) is True
    assert k1.inflight == request and k1.attention is not None
    expected = states(store)
    gateway = store.gateway_info("default").to_state()
    journal.close()

    restored, journal2 = open_journal(tmp_path)
    try:
        assert states(restored) == expected
        assert restored.gateway_info("default").to_state() == gateway
        assert restored.find("default", "id2") is restored.find("default", "k2")  # aliases
        assert restored.gateway_info("default").runs == {"r1": "k1"}
        assert {s.key for s in restored.considered()} == {s.key for s in store.considered()}
        assert {(g, st): n for g, st, n in restored.sessions_by_state() if n} == {(g, st): n for g, st, n in store.sessions_by_state() if n}
        # the dedupe window survived: the same eventId and (seq, ts) are duplicates
        assert restored.apply_event(ev("session.state", T0, sessionKey="k1", state="processing", eventId="a"),
                                    T0 + 5000).outcome == "duplicate"
        assert restored.apply_event(ev("session.state", T0 + 1000 + 40, sessionKey="k1", state="idle", seq=9),
                                    T0 + 5000).outcome == "duplicate"
    finally:
        journal2.close()


async def test_one_row_per_request_holds_its_events_and_keys(tmp_path):
    store, journal = open_journal(tmp_path)
    try:
        results = await send(journal, [ev("message.queued", T0, sessionKey="a", source="x", eventId="e1"),
                                       ev("message.queued", T0, sessionKey="b", source="x", eventId="e1"),
                                       ev("message.queued", T0, sessionKey="b", source="x")], T0)
        # the repeat inside the body is found a duplicate when the record is applied
        assert [r.outcome for r in results] == ["accepted", "duplicate", "accepted"]
        (kind, dkey), = rows(tmp_path / "journal.db", "SELECT kind, dkey FROM journal")
        assert kind == records.EVENTS
        assert records.dedupe_keys(dkey) == [("default", "e1"), ("default", "e1"), None]
    finally:
        journal.close()


async def test_checkpoint_is_copy_on_write(tmp_path, monkeypatch):
    """Sessions changed while a checkpoint is being written are saved as they were at its start."""
    monkeypatch.setattr(journal_protocol, "CHECKPOINT_CHUNK", 1)
    monkeypatch.setattr(journal_protocol, "CHECKPOINT_SLICE_S", 0.0)  # yield after every session
    store, journal = open_journal(tmp_path)
    await play(journal, [("message.queued", {"sessionKey": f"s{i}", "source": "x"}) for i in range(20)], T0)
    checkpoint = asyncio.create_task(journal.checkpoint(T0))
    await asyncio.sleep(0)  # the checkpoint has started and yielded after one chunk
    await play(journal, [("message.queued", {"sessionKey": f"s{i}", "source": "x"}) for i in range(20)], T0 + 500)
    await checkpoint
    await play(journal, [("session.state", {"sessionKey": "s3", "state": "processing"})], T0 + 900)
    expected = states(store)
    journal.close()

    restored, journal2 = open_journal(tmp_path)
    try:
        assert states(restored) == expected
        assert all(s.queue_depth == 2 for s in restored.iter_sessions() if s.key != "s3")
    finally:
        journal2.close()


async def test_evictions_and_completed_recoveries_replay(tmp_path):
    store, journal = open_journal(tmp_path)
    await play(journal, [
        ("message.queued", {"sessionKey": "gone", "source": "x", "queueDepth": 0}),
        ("message.queued", {"sessionKey": "kept", "source": "x", "queueDepth": 3}),
        ("model.call.started", {"sessionKey": "kept", "provider": "p", "model": "m"}),
    ], T0)
    gone = store.find("default", "gone")
    assert await journal.submit(records.eviction_record("default", [gone])) == [gone]
    kept = store.find("default", "kept")
    request = recovery_request(sessionKey="kept", queueDepth=3, stateGeneration=kept.generation,
                               requestedAt=T0 + 100)
    assert await journal.submit(records.requested_record(kept, request))
    outcome = recovery_outcome(status="released", action="release_lane", released=3)
    done = await journal.submit(records.completed_record("default", "kept", request, outcome, T0 + 200, "seed"))
    assert done.applied and kept.queue_depth == 0 and kept.inflight is None
    expected = states(store)
    journal.close()

    restored, journal2 = open_journal(tmp_path)
    try:
        assert states(restored) == expected
        assert restored.find("default", "gone") is None
        assert restored.find("default", "kept").queue_depth == 0
    finally:
        journal2.close()


async def test_an_eviction_chosen_before_an_event_keeps_the_session(tmp_path):
    """The record decides when it is applied: an event in between keeps the session, live and on replay."""
    store, journal = open_journal(tmp_path)
    await play(journal, [("message.queued", {"sessionKey": "s", "source": "x", "queueDepth": 0})], T0)
    chosen = store.find("default", "s")
    eviction = records.eviction_record("default", [chosen])
    pending = send(journal, [ev("run.progress", T0 + 50, sessionKey="s", reason="late")], T0 + 60)
    event_first = asyncio.ensure_future(pending)
    await asyncio.sleep(0)  # the event's record is queued first
    assert await journal.submit(eviction) == []
    await event_first
    assert store.find("default", "s") is chosen
    journal.close()
    restored, journal2 = open_journal(tmp_path)
    try:
        assert restored.find("default", "s") is not None
    finally:
        journal2.close()


async def test_recent_events_are_read_back_newest_first(tmp_path):
    store, journal = open_journal(tmp_path)
    try:
        await play(journal, SCRIPT, T0)
        events = journal.recent_events("default", ["k1", "id1"], store.find("default", "k1").last_row, limit=3)
        assert [e["type"] for e in events] == ["session.state", "session.stalled", "model.usage"]
        assert events[0]["receivedAt"] == T0 + 9 * 10 + 5 + 10  # the request's receive time
        assert all(e.get("sessionKey") == "k1" for e in events)
    finally:
        journal.close()


def test_a_second_process_on_the_same_directory_is_refused(tmp_path):
    store, journal = open_journal(tmp_path)
    try:
        with pytest.raises(DataDirLocked, match=str(tmp_path)):
            second = Journal(tmp_path)
            second.open(Store(tracker=second.tracker))
    finally:
        journal.close()
    # released with the owner: the next start works
    _, again = open_journal(tmp_path)
    again.close()


async def test_compaction_keeps_history_within_retention_and_drops_what_the_checkpoint_covers(tmp_path):
    def kinds() -> list[str]:
        return [k for (k,) in rows(tmp_path / "journal.db", "SELECT kind FROM journal ORDER BY id")]

    store, journal = open_journal(tmp_path, retention_ms=HOUR)
    await play(journal, SCRIPT[:3], T0)
    await journal.submit(records.memory_record(store.find("default", "k1"), None, 5, None, None))
    await journal.checkpoint(T0)
    # monitor memory is in the checkpoint; the events stay for reads and the dedupe window
    await until(lambda: kinds() == ["B"])
    await play(journal, SCRIPT[3:5], T0 + 10)
    await journal.checkpoint(T0 + HOUR // 2)
    await until(lambda: kinds() == ["B", "B"])
    await journal.checkpoint(T0 + HOUR + 1)  # the first checkpoint left the retention
    await until(lambda: kinds() == ["B"])
    expected = states(store)
    journal.close()

    assert_restores(tmp_path, expected)


# -- the protocol under failures (quality.md: "under ANY sequence") ------------------------------


async def test_crash_restart_graceful_stop_restart_keeps_everything(tmp_path):
    """Sessions restored by replay are checkpointed like any other (the first release lost them)."""
    store, journal = open_journal(tmp_path)
    await play(journal, [("message.queued", {"sessionKey": "s", "source": "x"})] * 10, T0, per_request=1)
    expected = states(store)
    journal.close()  # a crash: no checkpoint

    store, journal = open_journal(tmp_path)
    assert states(store) == expected
    await journal.checkpoint(T0 + 1000)  # the graceful stop's final checkpoint
    journal.close()

    store, journal = open_journal(tmp_path)
    try:
        assert states(store) == expected
        assert store.find("default", "s").queue_depth == 10
    finally:
        journal.close()


async def test_a_failed_commit_applies_nothing_takes_no_key_and_heals_by_itself(tmp_path):
    faults = Faults()
    store, journal = open_journal(tmp_path, faults)
    try:
        faults.fail("journal.db")
        with pytest.raises(JournalError):
            await send(journal, [ev("message.queued", T0, sessionKey="s", source="x", eventId="e1")], T0)
        assert store.find("default", "s") is None  # not applied
        assert not journal.status().ready and journal.status().code == "journal_unavailable"
        assert journal.status().retry_after_s >= 1
        faults.heal()
        await until(lambda: journal.status().ready)  # the writer's probe, no restart
        results = await send(journal, [ev("message.queued", T0, sessionKey="s", source="x", eventId="e1")], T0)
        assert [r.outcome for r in results] == ["accepted"]  # the key was never taken
        assert store.find("default", "s").queue_depth == 1
    finally:
        journal.close()


async def test_a_retry_racing_a_failing_write_is_not_a_duplicate(tmp_path):
    """Both copies wait for their own commit; neither is answered "duplicate" for an event never written."""
    faults = Faults()
    store, journal = open_journal(tmp_path, faults)
    event = lambda: ev("message.queued", T0, sessionKey="s", source="x", eventId="e1")  # noqa: E731
    faults.fail("journal.db")
    first = asyncio.ensure_future(send(journal, [event()], T0))
    retry = asyncio.ensure_future(send(journal, [event()], T0 + 1))
    outcomes = await asyncio.gather(first, retry, return_exceptions=True)
    assert all(isinstance(o, JournalError) for o in outcomes)
    faults.heal()
    await until(lambda: journal.status().ready)
    assert [r.outcome for r in await send(journal, [event()], T0 + 2)] == ["accepted"]
    journal.close()
    restored, journal2 = open_journal(tmp_path)
    try:
        assert restored.find("default", "s").queue_depth == 1  # exactly once
    finally:
        journal2.close()


async def test_a_failed_checkpoint_leaves_the_next_one_everything(tmp_path):
    faults = Faults()
    store, journal = open_journal(tmp_path, faults)
    await play(journal, [("message.queued", {"sessionKey": f"s{i}", "source": "x"}) for i in range(50)], T0)
    faults.fail("checkpoint.db")
    with pytest.raises(JournalError):
        await journal.checkpoint(T0 + 100)
    assert rows(tmp_path / "checkpoint.db", "SELECT count(*) FROM sessions") == [(0,)]
    faults.heal()
    assert await journal.checkpoint(T0 + 200) == 50
    expected = states(store)
    journal.close()
    assert_restores(tmp_path, expected)


async def test_history_past_the_byte_budget_is_emptied_but_never_what_no_checkpoint_covers(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "BUDGET_CHECK_EVERY_S", 0.0)
    store, journal = open_journal(tmp_path, max_bytes=1024 * 1024)
    padding = "x" * 500
    big = [("message.queued", {"sessionKey": f"s{i % 5}", "source": padding, "eventId": f"e{i}"})
           for i in range(4_800)]
    await play(journal, big[:4_000], T0, per_request=40)  # ~2.4 MB of history, over the budget
    await until(lambda: journal.status().code == "journal_full")  # nothing covered: nothing may go
    assert rows(tmp_path / "journal.db", "SELECT count(*) FROM journal WHERE body = x''") == [(0,)]
    await journal.checkpoint(T0 + 90_000)
    await until(lambda: journal.status().ready)  # covered history can be emptied: accepted again
    await until(lambda: journal.used_bytes() <= 1024 * 1024)  # and it was
    (emptied,), = rows(tmp_path / "journal.db", "SELECT count(*) FROM journal WHERE body = x''")
    assert emptied > 0
    await play(journal, big[4_000:], T0 + 100_000, per_request=40)
    expected = states(store)
    journal.close()
    restored, journal2 = open_journal(tmp_path, max_bytes=1024 * 1024)
    try:
        assert states(restored) == expected
        # the keys of the emptied rows are kept: re-sent events are still duplicates
        again = await send(journal2, [ev("message.queued", T0, sessionKey="s0", source="x", eventId="e0")], T0 + 200_000)
        assert [r.outcome for r in again] == ["duplicate"]
    finally:
        journal2.close()


async def test_one_gateway_is_forgotten_and_loaded_back_exactly(tmp_path):
    """Per-gateway load and forget: what a second instance does when a gateway moves to it."""
    store, journal = open_journal(tmp_path)
    try:
        mixed = [ev("message.queued", T0, gatewayId=g, sessionKey=f"{g}:s{i}", source="x", eventId=f"{g}-{i}")
                 for i in range(3) for g in ("g1", "g2")]
        await send(journal, mixed, T0)  # one request, two gateways
        await journal.checkpoint(T0)
        await send(journal, [ev("session.state", T0 + 50, gatewayId="g1", sessionKey="g1:s0", state="processing"),
                             ev("message.queued", T0 + 50, gatewayId="g2", sessionKey="g2:s9", source="x")], T0 + 60)
        before = states(store)
        assert await journal.forget_gateway("g1") == 3
        assert store.gateway_info("g1") is None and store.session_count == 4
        assert {k for k in states(store)} == {k for k in before if k[0] == "g2"}
        assert await asyncio.to_thread(journal.load_gateway, "g1") == 3
        assert states(store) == before
        assert store.session_count == 7 and store.find("g1", "g1:s0").state == "processing"
        assert store.is_considered(store.find("g1", "g1:s0"))
    finally:
        journal.close()


async def test_a_data_directory_of_release_0_1_is_read_and_moved_to_the_checkpoint_file(tmp_path):
    """0.1 kept its checkpoint inside journal.db and one event per row; both are read as they are."""
    legacy = Store()
    legacy.apply_event(ev("session.state", T0, sessionKey="old", state="processing", eventId="o1"), T0)
    session = legacy.find("default", "old")
    pack = msgspec.msgpack.encode
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        conn.executescript(
            "CREATE TABLE journal (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, gateway TEXT, session TEXT,"
            " at INTEGER, dkey BLOB, body BLOB);"
            "CREATE TABLE sessions (gateway TEXT NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL,"
            " PRIMARY KEY (gateway, key)) WITHOUT ROWID;"
            "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB);")
        conn.execute("INSERT INTO sessions VALUES ('default', 'old', ?)", (pack(session.to_state()[:-1]),))
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("checkpoint", 1), ("gateways", pack([legacy.gateway_info("default").to_state()])),
            ("checkpoints", pack([[1, T0]]))])
        conn.execute("INSERT INTO journal VALUES (1, 'E', 'default', 'old', ?, ?, ?)",
                     (T0, pack(["default", "o1"]), msgspec.json.encode(ev("session.state", T0, sessionKey="old",
                                                                              state="processing", eventId="o1"))))
        tail = ev("message.queued", T0 + 10, sessionKey="old", source="x", eventId="o2")
        conn.execute("INSERT INTO journal VALUES (2, 'E', 'default', 'old', ?, ?, ?)",
                     (T0 + 10, pack(["default", "o2"]), msgspec.json.encode(tail)))
        conn.execute("INSERT INTO journal VALUES (3, 'M', 'default', 'old', NULL, NULL, ?)",
                     (pack([None, 7, None, None]),))
    store, journal = open_journal(tmp_path)
    try:
        old = store.find("default", "old")
        assert old.state == "processing" and old.queue_depth == 1 and old.last_stuck_warn_age == 7
        assert [r.outcome for r in await send(journal, [ev("session.state", T0, sessionKey="old", state="idle",
                                                              eventId="o1")], T0 + 20)] == ["duplicate"]
        assert await journal.checkpoint(T0 + 30) == 1  # the first checkpoint moves it to checkpoint.db
    finally:
        journal.close()
    restored, journal2 = open_journal(tmp_path)
    try:
        assert restored.find("default", "old").queue_depth == 1
        assert rows(tmp_path / "checkpoint.db", "SELECT count(*) FROM sessions") == [(1,)]
    finally:
        journal2.close()


async def test_a_large_request_is_applied_in_slices_and_a_checkpoint_waits_for_its_end(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_protocol, "APPLY_SLICE_S", 0.0)  # yield after every slice
    monkeypatch.setattr(journal_protocol, "APPLY_EVENTS_SLICE", 10)
    store, journal = open_journal(tmp_path)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(other_work())
    big = [ev("message.queued", T0, sessionKey=f"s{i % 7}", source="x") for i in range(1_000)]
    applying = asyncio.ensure_future(send(journal, big, T0))
    while store.session_count == 0:  # committed, and being applied a slice at a time
        await asyncio.sleep(0)
    assert not applying.done()
    checkpoint = asyncio.ensure_future(journal.checkpoint(T0 + 1))
    results = await applying
    await checkpoint
    ticker.cancel()
    assert len(results) == 1_000
    assert turns >= 50  # other work ran between the slices
    (upto,), = rows(tmp_path / "checkpoint.db", "SELECT v FROM meta WHERE k = 'upto'")
    assert upto == 1  # the whole request, never half of it
    expected = states(store)
    journal.close()
    assert_restores(tmp_path, expected)
