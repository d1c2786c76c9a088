"""Every structure a client can grow has a bound (issue 12), so no per-event cost grows with
accumulated state: ends without a start (tombstones) and run ids per session."""

from __future__ import annotations

import msgspec

from app import store as store_module
from app.events import Event
from app.store import MAX_RUNS_PER_SESSION, MAX_TOMBSTONES, Store

T0 = 1_800_000_000_000


def ev(type_: str, ts: int, **fields) -> Event:
    return msgspec.convert({"type": type_, "ts": ts, "gatewayId": "gw", **fields}, Event)


def test_ends_without_a_start_are_bounded_oldest_first() -> None:
    store = Store()
    for i in range(MAX_TOMBSTONES * 3):  # all within the tombstone's minute: none expires
        store.apply_event(ev("tool.execution.completed", T0, sessionKey="orphans", toolName="exec",
                             toolCallId=f"c{i}"), T0)
    tombstones = store.gateway_info("gw").tombstones
    assert len(tombstones) == MAX_TOMBSTONES
    assert store.bounded_evictions["tombstone"] == MAX_TOMBSTONES * 2
    assert next(iter(tombstones))[1].endswith(f"c{MAX_TOMBSTONES * 2}")  # the newest are kept
    # a late start still finds its end among the kept ones, and consumes it
    store.apply_event(ev("tool.execution.started", T0, sessionKey="orphans", toolName="exec",
                         toolCallId=f"c{MAX_TOMBSTONES * 3 - 1}"), T0)
    assert len(tombstones) == MAX_TOMBSTONES - 1


def test_expired_tombstones_leave_from_the_front_without_a_scan() -> None:
    store = Store()
    for i in range(100):
        store.apply_event(ev("tool.execution.completed", T0, sessionKey="s", toolName="x", toolCallId=f"c{i}"), T0)
    later = T0 + store_module.TOMBSTONE_MS + 1
    store.apply_event(ev("tool.execution.completed", later, sessionKey="s", toolName="x", toolCallId="late"), later)
    assert list(store.gateway_info("gw").tombstones) == [("s", "s:late")]


def test_run_ids_per_session_are_bounded_ended_ones_first() -> None:
    store = Store()
    store.apply_event(ev("session.state", T0, sessionKey="many", state="processing"), T0)
    for i in range(MAX_RUNS_PER_SESSION * 20):
        store.apply_event(ev("run.started", T0 + i, sessionKey="many", runId=f"r{i}"), T0 + i)
        if i % 2:
            store.apply_event(ev("run.completed", T0 + i, runId=f"r{i}"), T0 + i)
    session = store.find("gw", "many")
    info = store.gateway_info("gw")
    assert len(session.runs) <= MAX_RUNS_PER_SESSION
    assert store.bounded_evictions["run"] > 0
    assert f"r{MAX_RUNS_PER_SESSION * 20 - 1}" in session.runs  # the newest stay
    assert all(info.runs[run] == "many" for run in session.runs)
    assert sum(1 for owner in info.runs.values() if owner == "many") == len(session.runs)


def test_the_dedupe_window_lets_old_keys_go_a_few_at_a_time_oldest_first() -> None:
    """A full window drops its oldest keys as new ones come, never a whole bucket in one add
    (a bucket of 80,000 keys dropped at once stalled the loop ~28 ms: bench/stall.py)."""
    from app.store import DedupeWindow
    from app.store.dedupe import EVICT_PER_ADD

    window = DedupeWindow(max_keys=1_000, max_age_ms=3_600_000)
    t0 = 1_800_000_000_000
    for n in range(5_000):  # all in one one-second bucket: the case that stalled
        window.add(("g", f"e{n}"), t0)
        assert len(window) <= 1_000 + 1
    assert not window.seen(("g", "e0"), t0) and not window.seen(("g", "e3998"), t0)
    assert window.seen(("g", "e4999"), t0) and window.seen(("g", "e4001"), t0)
    # an hour on, everything has expired for `seen` at once, and is let go a few keys per add
    later = t0 + 3_600_000 + 1_000
    assert not window.seen(("g", "e4999"), later)
    before = len(window)
    window.add(("g", "new"), later)
    assert before + 1 - len(window) == EVICT_PER_ADD


def test_keys_restored_together_are_bounded_like_keys_added_one_by_one() -> None:
    from app.store import DedupeWindow

    t0 = 1_800_000_000_000
    one, many = DedupeWindow(max_keys=1_000), DedupeWindow(max_keys=1_000)
    rows = [([("g", f"e{r}-{n}") for n in range(300)], t0 + r * 1_500) for r in range(10)]
    for keys, at in rows:
        many.extend(keys, at)
        for key in keys:
            one.add(key, at)
    now = t0 + 20_000
    assert len(many) == 1_000
    kept = {key for keys, _ in rows for key in keys if many.seen(key, now)}
    newest = [key for keys, _ in rows for key in keys][-1_000:]
    assert kept == set(newest)  # the newest thousand, the oldest went first
    assert {key for keys, _ in rows for key in keys if one.seen(key, now)} == kept
