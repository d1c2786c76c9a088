"""The change feed (app/changes.py): what the monitor and the coordinator tell become changes,
numbered, kept in a bounded backlog, handed to live subscribers within their scope."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from app.changes import SUBSCRIBER_QUEUE, ChangeFeed, ChangeWatcher
from app.clock import ManualClock
from app.events import Event
from app.store import GatewayInfo, Session, Store
from tests.unit.test_monitor import T0, S, harness

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def events(h, gateway: str | None = None) -> list[tuple[str, str]]:
    feed = h.service.changes
    changes, complete = feed.since(feed_start(feed), None)
    assert complete
    return [(c.event, c.data.get("reason") or c.data.get("previous", {}).get("reason", ""))
            for c in changes if gateway is None or c.gateway == gateway]


def feed_start(feed: ChangeFeed) -> int:
    return T0 * 1000  # the feed's ids start from the clock at its creation


async def test_attention_opens_changes_and_clears_with_the_recoveries_between():
    h = harness(warn_s=30, tick_s=5, gateway_silence_ms=10**9)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(35, 5)
    h.post("run.started", 36, sessionKey="s1", runId="r1")
    h.post("model.call.started", 36, sessionKey="s1", runId="r1", provider="p", model="m")
    for t in range(40, 75, 5):
        await h.tick_at(t)
    h.post("session.state", 76, sessionKey="s1", state="idle")
    await h.tick_at(80)
    seen = events(h)
    assert [e for e in seen if e[0].startswith("attention.")] == [
        ("attention.opened", "stale_session_state"),
        ("attention.changed", "active_work"),  # a run and its model call started
        ("attention.changed", "active_work_without_progress"),  # the call went silent past warn
        ("attention.cleared", "active_work_without_progress"),  # the session went idle
    ]
    assert [e for e in seen if e[0].startswith("recovery.")] == [
        ("recovery.requested", "stale_session_state"), ("recovery.completed", "stale_session_state")]
    changes, _ = h.service.changes.since(feed_start(h.service.changes), None)
    attention = [c for c in changes if c.event.startswith("attention.")]
    opened, changed, cleared = attention[0], attention[1], attention[-1]
    completed = next(c for c in changes if c.event == "recovery.completed")
    assert (completed.data["status"], completed.data["outcomeReason"]) == ("skipped", "no_recovery_target")
    assert (opened.gateway, opened.data["sessionKey"], opened.data["eventType"], opened.at) == (
        "default", "s1", "session.stuck", T0 + 35 * S)
    assert opened.data["sessionHash"] == h.service.session_ids.hash("s1")
    assert changed.data["previous"] == {"eventType": "session.stuck", "reason": "stale_session_state"}
    assert (cleared.data["state"], cleared.data["evicted"]) == ("idle", False)
    assert [c.id for c in changes] == sorted({c.id for c in changes})  # numbered, in order


async def test_gateways_going_silent_and_coming_back():
    h = harness(warn_s=30, tick_s=5, gateway_silence_ms=10 * S)
    h.post("forwarder.keepalive", 0, gatewayId="gw-a")
    await h.tick_at(5)
    await h.tick_at(15)  # 15 s without a word: silent
    h.post("forwarder.keepalive", 16, gatewayId="gw-a")
    h.clock.now = T0 + 16 * S
    await h.tick_at(20)
    assert events(h, "gw-a") == [("gateway.silent", ""), ("gateway.back", "")]


async def test_a_restart_does_not_announce_what_it_restored_but_clears_it():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(35, 5)
    # a new feed and watcher, as a restart makes them, meet a session already under attention
    start = h.clock.now * 1000
    fresh = ChangeFeed(h.clock)
    watcher = ChangeWatcher(fresh, h.store, is_silent=lambda info, now: False, session_hash=lambda v: v)
    watcher.on_monitor("tick", {"now": h.clock.now})
    assert fresh.published == 0
    h.post("session.state", 36, sessionKey="s1", state="idle")
    watcher.on_monitor("tick", {"now": h.clock.now})
    (cleared,) = fresh.since(start, None)[0]
    assert (cleared.event, cleared.data["previous"]["reason"]) == ("attention.cleared", "stale_session_state")


async def test_a_gateway_that_changes_hands_is_no_news_and_its_new_owner_clears_it():
    # two instances: `h` has the gateway and opened its attention; the other (its own store,
    # feed and watcher, already ticking) takes the gateway over, as a handover does: the old owner
    # forgets it and says so, the new one loads the sessions as they were checkpointed
    h = harness(warn_s=30, tick_s=5, gateway_silence_ms=10**9)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(35, 5)
    assert ("attention.opened", "stale_session_state") in events(h)
    store, feed = Store(), ChangeFeed(h.clock)
    watcher = ChangeWatcher(feed, store, is_silent=lambda info, now: False, session_hash=lambda v: v)
    watcher.on_monitor("tick", {"now": h.clock.now})

    taken = [Session.from_state(s.to_state()) for s in h.store.sessions_of("default")]
    info = GatewayInfo.from_state(h.store.gateway_info("default").to_state())
    before = len(events(h))
    h.store.forget_gateway("default")
    for listener in h.service.ownership.listeners:  # what SharedOwnership tells when a gateway leaves
        listener("left", "default")
    await h.tick_at(40)
    # not "cleared": the session is still stuck, elsewhere
    assert [e for e in events(h)[before:] if e[0].startswith("attention.")] == []

    store.restore_gateway(info)
    for session in taken:
        store.restore_session(session)
    watcher.on_ownership("arrived", "default")
    watcher.on_monitor("tick", {"now": h.clock.now})
    assert feed.published == 0  # not "opened" again: the fleet's readers know it already
    at = h.clock.now + 1
    store.apply_event(msgspec.convert({"type": "session.state", "ts": at, "sessionKey": "s1", "state": "idle"},
                                      Event), at)
    watcher.on_monitor("tick", {"now": at})
    (cleared,) = feed.since(T0 * 1000, None)[0]
    assert (cleared.event, cleared.data["previous"]["reason"]) == ("attention.cleared", "stale_session_state")


async def test_since_tells_a_reader_it_missed_changes():
    clock = ManualClock(T0)
    feed = ChangeFeed(clock, backlog=3)
    first = feed.publish("gateway.silent", "gw-a", {})
    assert feed.since(first.id - 1, None) == ([first], True)
    for _ in range(4):
        last = feed.publish("gateway.back", "gw-b", {})
    kept, complete = feed.since(first.id, None)
    assert not complete and [c.id for c in kept] == [last.id - 2, last.id - 1, last.id]  # backlog of 3
    assert feed.since(last.id, None) == ([], True)
    assert feed.since(last.id + 5, None)[1] is False  # an id this feed never gave
    assert feed.since(last.id - 2, frozenset({"gw-a"})) == ([], True)  # scope: gw-b is not theirs


async def test_subscribers_get_changes_within_their_scope_and_a_slow_one_is_cut_off():
    feed = ChangeFeed(ManualClock(T0))
    mine, everyone = feed.subscribe(frozenset({"gw-a"})), feed.subscribe(None)
    feed.publish("gateway.silent", "gw-b", {})
    change = feed.publish("gateway.silent", "gw-a", {})
    assert await mine.next(1) == change
    assert (await everyone.next(1)).gateway == "gw-b"
    with pytest.raises(asyncio.TimeoutError):
        await mine.next(0.01)
    for _ in range(SUBSCRIBER_QUEUE + 1):  # `everyone` reads nothing more; nothing of it is mine
        feed.publish("gateway.back", "gw-b", {})
    assert everyone.cut and feed.subscribers == 1
    drained = [await everyone.next(1) for _ in range(everyone.queue.qsize())]
    assert drained[-1] is None  # the end marker: its reader resumes from the backlog
    feed.close()
    assert mine.cut

