"""Property: for any interleaving of requests, failed commits, checkpoints (failing or not) and
crashes, the journal's store holds exactly the acknowledged events — live, and after every restore.

On the REAL SQLite journal: failures are injected at the SQLite layer (tests/support/faults.py);
a crash drops the journal and its store without a checkpoint and reopens the files with a
fresh store. The model is a plain `Store` that applies each acknowledged request, in order.
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
from app.journal import Journal
from app.journal import JournalError
from app.store import Store
from tests.support.faults import Faults

T0 = 1_800_000_000_000

event_spec = st.tuples(
    st.sampled_from(["message.queued", "run.progress", "session.state"]),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(8)])),
)
# sends and checkpoints weighted up: the interesting histories interleave many of them
operation = st.tuples(
    st.sampled_from(["send"] * 4 + ["fail journal.db", "fail checkpoint.db", "heal", "checkpoint", "checkpoint",
                                    "crash"]),
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


def open_journal(path: Path, faults: Faults) -> tuple[Store, Journal]:
    journal = Journal(path, clock=lambda: T0, connection_factory=faults.connection_factory())
    store = Store(tracker=journal.tracker)
    journal.open(store)
    return store, journal


async def scenario(path: Path, operations: list[tuple[str, Any]]) -> None:
    faults = Faults()
    model = Store()
    store, journal = open_journal(path, faults)
    now = T0
    try:
        for op, arg in operations:
            now += 1_000
            if op == "send":
                events = [make_event(kind, key, event_id, now + i) for i, (kind, key, event_id) in enumerate(arg)]
                future = journal.submit(records.events_record(events, now))
                assert future is not None
                try:
                    await asyncio.wait_for(future, 10)
                except JournalError:
                    pass  # not acknowledged: the client would retry it
                else:
                    for event in [make_event(kind, key, event_id, now + i)
                                  for i, (kind, key, event_id) in enumerate(arg)]:
                        model.apply_event(event, now)
            elif op.startswith("fail "):
                faults.fail(op.removeprefix("fail "))
            elif op == "heal":
                faults.heal()
            elif op == "checkpoint":
                try:
                    await journal.checkpoint(now)
                except JournalError:
                    pass
            else:  # crash: everything in memory is gone; the restart comes once the disk has room
                journal.close()
                faults.heal()
                store, journal = open_journal(path, faults)
            # live: the store holds exactly what was acknowledged
            assert states(store) == states(model), op
        journal.close()
        faults.heal()
        store, journal = open_journal(path, faults)
        assert states(store) == states(model)
    finally:
        journal.close()


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
        asyncio.run(scenario(path, operations))
    finally:
        shutil.rmtree(path, ignore_errors=True)
