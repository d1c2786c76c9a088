"""One event cannot skew a gateway's clock (issue 12; events.md "Time"): a gateway that sends
keepalives is timed by their median alone, and an event ahead of its now is clamped to it."""

from __future__ import annotations

import msgspec

from app.events import Event
from app.store import FUTURE_TOLERANCE_MS, Store

NOW = 1_800_000_000_000  # the service's clock when each event arrives


def ev(type_: str, ts: int | None, **fields) -> Event:
    data = {"type": type_, "gatewayId": "gw", **fields}
    if ts is not None:
        data["ts"] = ts
    return msgspec.convert(data, Event)


def keepalives(store: Store, skew: int, count: int = 3) -> None:
    for i in range(count):
        store.apply_event(ev("forwarder.keepalive", NOW + i - skew), NOW + i)


def test_a_future_stamped_event_neither_ages_the_sessions_nor_freezes_them() -> None:
    store = Store()
    keepalives(store, skew=0)
    store.apply_event(ev("session.state", NOW - 2_000, sessionKey="turn", state="processing"), NOW)
    # one event stamped 59 s ahead (inside the 60 s clamp), of a type the service ignores...
    store.apply_event(ev("some.future.type", NOW + 59_000), NOW + 10)
    # ...and a state stamped 59 s ahead
    result = store.apply_event(ev("session.state", NOW + 59_000, sessionKey="turn", state="processing"), NOW + 20)
    info = store.gateway_info("gw")
    assert abs(info.skew_ms) <= 2  # the keepalives' clock, untouched
    assert result.clamped
    session = store.find("gw", "turn")
    assert session.last_activity <= info.now(NOW + 20) + FUTURE_TOLERANCE_MS
    # the gateway's next real idle is not "stale": the session does not freeze in processing
    store.apply_event(ev("session.state", NOW + 1_000, sessionKey="turn", state="idle"), NOW + 1_000)
    assert session.state == "idle"


def test_the_median_of_the_keepalives_ignores_one_outlier() -> None:
    store = Store()
    keepalives(store, skew=200_000, count=4)  # a gateway whose clock runs 200 s behind
    store.apply_event(ev("forwarder.keepalive", NOW + 10), NOW + 10)  # one keepalive stamped "now"
    assert store.gateway_info("gw").skew_ms == 200_000


def test_without_keepalives_an_ignored_type_does_not_move_the_clock() -> None:
    store = Store()
    store.apply_event(ev("session.state", NOW - 200_000, sessionKey="old", state="processing"), NOW)
    before = store.gateway_info("gw").skew_ms
    store.apply_event(ev("unknown.type", NOW + 59_000), NOW + 1)
    assert store.gateway_info("gw").skew_ms == before == 200_000


def test_the_keepalive_clock_survives_a_restart() -> None:
    from app.store import GatewayInfo

    store = Store()
    keepalives(store, skew=5_000)
    info = store.gateway_info("gw")
    again = GatewayInfo.from_state(info.to_state())
    assert again.keepalive_skews == info.keepalive_skews and again.skew_ms == info.skew_ms
