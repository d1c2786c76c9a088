"""The journal rebuilds exactly the state that was acknowledged (quality.md, "Nothing lost").

In-process: the real SQLite journal on a temp directory, reopened by a fresh store. The
kill -9 of a real process is covered by the end-to-end tests.
"""

from __future__ import annotations

from typing import Any

import asyncio

import msgspec
import pytest

from app import journal as journal_module
from app.events import Event
from app.journal import DataDirLocked, Journal
from app.store import Attention, Store, dedupe_key

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ev(type_: str, ts: int, **fields: Any) -> Event:
    return msgspec.convert({"type": type_, "ts": ts, **fields}, Event)


def ingest(store: Store, journal: Journal, event: Event, received: int) -> None:
    """What the ingest route does for one event: apply, then journal."""
    event.gatewayId = event.gatewayId or "default"
    result = store.apply_event(event, received)
    if result.outcome != "duplicate":
        session = result.session
        journal.record_event(event, received, session.key if session else event.sessionKey,
                             dedupe_key(event.gatewayId, event))


def states(store: Store) -> dict[tuple[str, str], list[Any]]:
    return {(s.gateway, s.key): s.to_state() for s in store.iter_sessions()}


def open_journal(path) -> tuple[Store, Journal]:
    store = Store()
    journal = Journal(path, store)
    journal.open()
    return store, journal


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


async def play(store: Store, journal: Journal, script, start: int) -> None:
    for i, (type_, fields) in enumerate(script):
        ingest(store, journal, ev(type_, start + i * 10, **fields), start + i * 10 + 5)
    await journal.commit()


async def test_restore_rebuilds_the_same_state(tmp_path):
    store, journal = open_journal(tmp_path)
    await play(store, journal, SCRIPT[:5], T0)
    await journal.checkpoint(T0, 6 * 3_600_000, 5_000_000)
    await play(store, journal, SCRIPT[5:], T0 + 1000)
    # monitor memory and a recovery, as the monitor and coordinator journal them
    k1 = store.find("default", "k1")
    store.set_monitor_memory(k1, Attention("session.stuck", "r", "c", None, True, 10, T0), 10, None, None)
    journal.record_memory(k1)
    request = {"gatewayId": "default", "sessionKey": "k1", "sessionId": "id1", "ageMs": 10, "queueDepth": 0,
               "expectedState": "idle", "stateGeneration": k1.generation, "reason": "r",
               "activeWorkKind": None, "allowActiveAbort": False, "requestedAt": T0 + 2000}
    store.set_inflight(k1, request)
    store.add_recovery(k1, {"kind": "requested", **request})
    journal.record_requested(k1, request)
    await journal.commit()
    expected = states(store)
    gateway = store.gateways["default"].to_state()
    journal.close()

    restored, journal2 = open_journal(tmp_path)
    try:
        assert states(restored) == expected
        assert restored.gateways["default"].to_state() == gateway
        assert restored.find("default", "id2") is restored.find("default", "k2")  # aliases
        assert restored.gateways["default"].runs == {"r1": "k1"}
        assert {s.key for s in restored.candidates} == {s.key for s in store.candidates}
        assert +restored.state_counts == +store.state_counts
        # the dedupe window survived: the same eventId and (seq, ts) are duplicates
        assert restored.apply_event(ev("session.state", T0, sessionKey="k1", state="processing", eventId="a"),
                                    T0 + 5000).outcome == "duplicate"
        assert restored.apply_event(ev("session.state", T0 + 1000 + 40, sessionKey="k1", state="idle", seq=9),
                                    T0 + 5000).outcome == "duplicate"
    finally:
        journal2.close()


async def test_checkpoint_is_copy_on_write(tmp_path, monkeypatch):
    """Sessions changed while a checkpoint is being written are saved as they were at its start."""
    monkeypatch.setattr(journal_module, "CHECKPOINT_CHUNK", 1)
    monkeypatch.setattr(journal_module, "CHECKPOINT_SLICE_S", 0.0)  # yield after every session
    store, journal = open_journal(tmp_path)
    script = [("message.queued", {"sessionKey": f"s{i}", "source": "x"}) for i in range(20)]
    await play(store, journal, script, T0)
    checkpoint = asyncio.create_task(journal.checkpoint(T0, 6 * 3_600_000, 5_000_000))
    await asyncio.sleep(0)  # the checkpoint has started and yielded after one chunk
    await play(store, journal, [("message.queued", {"sessionKey": f"s{i}", "source": "x"}) for i in range(20)], T0 + 500)
    await checkpoint
    await play(store, journal, [("session.state", {"sessionKey": "s3", "state": "processing"})], T0 + 900)
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
    await play(store, journal, [
        ("message.queued", {"sessionKey": "gone", "source": "x", "queueDepth": 0}),
        ("message.queued", {"sessionKey": "kept", "source": "x", "queueDepth": 3}),
        ("model.call.started", {"sessionKey": "kept", "provider": "p", "model": "m"}),
    ], T0)
    gone = store.find("default", "gone")
    journal.record_eviction(gone)
    store.evict(gone)
    kept = store.find("default", "kept")
    request = {"gatewayId": "default", "sessionKey": "kept", "sessionId": None, "queueDepth": 3,
               "expectedState": "idle", "stateGeneration": kept.generation, "requestedAt": T0 + 100}
    outcome = {"status": "released", "action": "release_lane", "released": 3}
    store.apply_recovery(kept, request, outcome, T0 + 200)
    entry = {"kind": "completed", **request, "status": "released", "action": "release_lane", "released": 3}
    store.add_recovery(kept, entry)
    journal.record_completed(kept, request, outcome, entry, True, T0 + 200)
    await journal.commit()
    expected = states(store)
    journal.close()

    restored, journal2 = open_journal(tmp_path)
    try:
        assert states(restored) == expected
        assert restored.find("default", "gone") is None
        assert restored.find("default", "kept").queue_depth == 0
    finally:
        journal2.close()


async def test_recent_events_are_read_back_newest_first(tmp_path):
    store, journal = open_journal(tmp_path)
    try:
        await play(store, journal, SCRIPT, T0)
        events = journal.recent_events("default", ["k1", "id1"], limit=3)
        assert [e["type"] for e in events] == ["session.state", "session.stalled", "model.usage"]
        assert events[0]["receivedAt"] == T0 + 9 * 10 + 5
    finally:
        journal.close()


def test_a_second_process_on_the_same_directory_is_refused(tmp_path):
    store, journal = open_journal(tmp_path)
    try:
        with pytest.raises(DataDirLocked, match=str(tmp_path)):
            Journal(tmp_path, Store()).open()
    finally:
        journal.close()
    # released with the owner: the next start works
    _, again = open_journal(tmp_path)
    again.close()


async def test_compaction_keeps_history_within_retention_and_drops_what_the_checkpoint_covers(tmp_path):
    import sqlite3

    def kinds() -> list[str]:
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            return [k for (k,) in conn.execute("SELECT kind FROM journal ORDER BY id")]

    hour = 3_600_000
    store, journal = open_journal(tmp_path)
    await play(store, journal, SCRIPT[:3], T0)
    journal.record_memory(store.find("default", "k1"))
    await journal.commit()
    await journal.checkpoint(T0, hour, 5_000_000)
    assert kinds() == ["E", "E", "E"]  # monitor memory is in the checkpoint; events stay for reads
    await play(store, journal, SCRIPT[3:5], T0 + 10)
    await journal.checkpoint(T0 + hour // 2, hour, 5_000_000)
    assert kinds() == ["E"] * 5
    await journal.checkpoint(T0 + hour + 1, hour, 5_000_000)  # the first checkpoint left the retention
    assert kinds() == ["E", "E"]
    await journal.checkpoint(T0 + hour + 2, hour, 1)  # the row cap
    assert kinds() == ["E"]
    expected = states(store)
    journal.close()

    restored, journal2 = open_journal(tmp_path)
    try:
        assert states(restored) == expected
    finally:
        journal2.close()
