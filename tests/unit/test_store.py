"""How each event updates a session (events.md): clocks, aliases, owners, tombstones, order."""

from __future__ import annotations

import msgspec
import pytest

from app.events import Event
from app.store import ACCEPTED, DUPLICATE, IGNORED, GatewayInfo, Store
from tests.support.builders import recovery_outcome, recovery_request

T0 = 1_800_000_000_000


def ev(type_: str, ts: int | None = T0, **fields) -> Event:
    data = {"type": type_, **fields}
    if ts is not None:
        data["ts"] = ts
    return msgspec.convert(data, Event)


def apply(store: Store, type_: str, ts: int | None = T0, received: int | None = None, **fields):
    return store.apply_event(ev(type_, ts, **fields), received if received is not None else (ts or T0))


@pytest.fixture
def store() -> Store:
    return Store()


def session(store: Store, key: str = "s1", gateway: str = "default"):
    found = store.find(gateway, key)
    assert found is not None, f"no session {key}"
    return found


def test_new_record_defaults(store):
    apply(store, "message.queued", source="telegram", sessionKey="s1")
    s = session(store)
    assert (s.state, s.queue_depth, s.generation, s.last_activity) == ("idle", 1, 1, T0)
    assert s.snapshot(T0).active_work_kind is None


def test_session_state_sets_state_and_queue(store):
    apply(store, "session.state", state="processing", queueDepth=3, sessionKey="s1")
    s = session(store)
    assert (s.state, s.queue_depth, s.generation) == ("processing", 3, 1)
    apply(store, "session.state", T0 + 1, state="idle", sessionKey="s1")
    assert (s.state, s.queue_depth, s.generation) == ("idle", 2, 2)  # idle dequeues one


def test_message_queued_uses_given_depth_else_increments(store):
    apply(store, "message.queued", source="x", sessionKey="s1")
    apply(store, "message.queued", T0 + 1, source="x", sessionKey="s1")
    assert session(store).queue_depth == 2
    apply(store, "message.queued", T0 + 2, source="x", sessionKey="s1", queueDepth=7)
    assert session(store).queue_depth == 7


def test_state_change_clears_monitor_memory(store):
    apply(store, "session.state", state="processing", sessionKey="s1")
    s = session(store)
    store.set_monitor_memory(s, None, 5, 6, 7)
    apply(store, "session.progress", T0 + 10, sessionKey="s1", reason="reply")
    assert (s.last_stuck_warn_age, s.last_long_running_warn_age, s.stalled_reported_at) == (None, None, None)
    assert s.last_activity == T0 + 10


def test_stale_session_state_changes_nothing(store):
    apply(store, "session.state", T0 + 100, state="processing", queueDepth=2, sessionKey="s1")
    result = apply(store, "session.state", T0 + 50, state="idle", queueDepth=0, sessionKey="s1")
    s = session(store)
    assert result.outcome == ACCEPTED and result.stale_state
    assert (s.state, s.queue_depth, s.generation, s.last_activity) == ("processing", 2, 1, T0 + 100)


def test_activity_clock_is_separate_from_session_clock(store):
    apply(store, "session.state", state="processing", sessionKey="s1")
    apply(store, "model.call.started", T0 + 500, sessionKey="s1", runId="r1", provider="p", model="m")
    s = session(store)
    assert s.last_activity == T0
    snap = s.snapshot(T0 + 1500)
    assert (snap.active_work_kind, snap.last_progress_age_ms, snap.last_progress_reason) == (
        "model_call", 1000, "model_call:started")


def test_progress_clock_never_moves_backwards(store):
    apply(store, "run.progress", T0 + 100, sessionKey="s1", reason="late")
    apply(store, "run.progress", T0 + 50, sessionKey="s1", reason="early")
    snap = session(store).snapshot(T0 + 100)
    assert (snap.last_progress_age_ms, snap.last_progress_reason) == (0, "late")


def test_snapshot_reports_oldest_tool_and_kind_priority(store):
    apply(store, "run.started", sessionKey="s1", runId="r1")
    apply(store, "model.call.started", T0 + 1, sessionKey="s1", runId="r1", provider="p", model="m")
    assert session(store).snapshot(T0 + 2).active_work_kind == "model_call"
    apply(store, "tool.execution.started", T0 + 10, sessionKey="s1", runId="r1", toolName="exec", toolCallId="c1")
    apply(store, "tool.execution.started", T0 + 20, sessionKey="s1", runId="r1", toolName="read", toolCallId="c2")
    snap = session(store).snapshot(T0 + 110)
    assert (snap.active_work_kind, snap.active_tool_name, snap.active_tool_call_id, snap.active_tool_age_ms) == (
        "tool_call", "exec", "c1", 100)
    assert snap.has_active_embedded_run is True


def test_end_events_remove_their_markers(store):
    apply(store, "run.started", sessionKey="s1", runId="r1")
    apply(store, "tool.execution.started", T0 + 1, sessionKey="s1", runId="r1", toolName="exec", toolCallId="c1")
    apply(store, "tool.execution.completed", T0 + 2, sessionKey="s1", runId="r1", toolName="exec", toolCallId="c1")
    apply(store, "model.call.started", T0 + 3, sessionKey="s1", runId="r1", provider="p", model="m", callId="x1")
    apply(store, "model.call.error", T0 + 4, sessionKey="s1", runId="r1", provider="p", model="m", callId="other")
    snap = session(store).snapshot(T0 + 5)
    assert snap.active_work_kind == "embedded_run"  # the call id is not part of the key
    assert snap.last_progress_reason == "model_call:ended"


def test_run_completed_clears_everything_and_keeps_the_mapping(store):
    apply(store, "run.started", sessionKey="s1", runId="r1")
    apply(store, "tool.execution.started", T0 + 1, sessionKey="s1", runId="r1", toolName="exec")
    apply(store, "run.completed", T0 + 2, sessionKey="s1", runId="r1")
    snap = session(store).snapshot(T0 + 3)
    assert snap.active_work_kind is None and snap.has_active_embedded_run is None
    # a late event of that run still resolves by runId alone, within 60 s
    result = apply(store, "run.progress", T0 + 30_000, runId="r1", reason="late")
    assert result.outcome == ACCEPTED and result.session is session(store)


def test_idle_ends_run_owners_but_keeps_orphans(store):
    apply(store, "run.started", sessionKey="s1", runId="r1")
    apply(store, "session.state", T0 + 1, state="processing", sessionKey="s1")
    apply(store, "model.call.started", T0 + 2, sessionKey="s1", runId="r1", provider="p", model="m")
    apply(store, "session.state", T0 + 3, state="idle", sessionKey="s1")
    snap = session(store).snapshot(T0 + 4)
    assert snap.active_work_kind == "model_call"
    assert snap.has_active_embedded_run is None


def test_explicit_embedded_run_survives_idle(store):
    apply(store, "embedded_run.started", sessionKey="s1", sessionId="id1")
    apply(store, "model.call.started", T0 + 2, sessionKey="s1", provider="p", model="m")
    apply(store, "session.state", T0 + 3, state="idle", sessionKey="s1")
    assert session(store).snapshot(T0 + 4).has_active_embedded_run is True
    apply(store, "embedded_run.ended", T0 + 5, sessionKey="s1", sessionId="id1")
    snap = session(store).snapshot(T0 + 6)
    assert snap.active_work_kind is None  # clearRunActivity defaults to true


def test_embedded_run_ended_can_keep_run_activity(store):
    apply(store, "embedded_run.started", sessionKey="s1", workKey="w")
    apply(store, "tool.execution.started", T0 + 1, sessionKey="s1", toolName="exec")
    apply(store, "embedded_run.ended", T0 + 2, sessionKey="s1", workKey="w", clearRunActivity=False)
    assert session(store).snapshot(T0 + 3).active_work_kind == "tool_call"


def test_end_before_start_leaves_a_tombstone(store):
    apply(store, "run.progress", sessionKey="s1", reason="x")  # activity record exists
    end = apply(store, "tool.execution.completed", T0 + 1, sessionKey="s1", runId="r1", toolName="exec", toolCallId="c")
    assert end.outcome == ACCEPTED
    start = apply(store, "tool.execution.started", T0 + 2, sessionKey="s1", runId="r1", toolName="exec", toolCallId="c")
    assert start.outcome == IGNORED
    assert session(store).snapshot(T0 + 3).active_work_kind is None
    # consumed: a second start is applied
    again = apply(store, "tool.execution.started", T0 + 4, sessionKey="s1", runId="r1", toolName="exec", toolCallId="c")
    assert again.outcome == ACCEPTED


def test_tombstone_on_a_session_without_activity_and_its_expiry(store):
    end = apply(store, "model.call.completed", sessionKey="s9", runId="r", provider="p", model="m")
    assert end.outcome == ACCEPTED and store.find("default", "s9") is None  # no record created
    late = apply(store, "model.call.started", T0 + 61_000, sessionKey="s9", runId="r", provider="p", model="m")
    assert late.outcome == ACCEPTED  # tombstone expired after 60 s
    assert session(store, "s9").snapshot(T0 + 61_000).active_work_kind == "model_call"


def test_run_id_only_event_unknown_is_ignored(store):
    assert apply(store, "run.progress", runId="nobody", reason="x").outcome == IGNORED


def test_alias_merge_folds_id_only_record(store):
    apply(store, "session.state", T0, state="processing", queueDepth=2, sessionId="id1")
    apply(store, "model.call.started", T0 + 5, sessionId="id1", provider="p", model="m")
    apply(store, "message.queued", T0 + 10, source="x", sessionKey="k1", queueDepth=1)
    apply(store, "run.progress", T0 + 20, sessionKey="k1", sessionId="id1", reason="link")
    assert store.find("default", "id1") is store.find("default", "k1")
    s = session(store, "k1")
    assert s.state == "idle"  # the key's record had the later lastActivity
    assert s.queue_depth == 2 and s.generation == 2  # max(1, 1) + 1
    assert s.snapshot(T0 + 20).active_work_kind == "model_call"
    assert store.session_count == 1


def test_alias_merge_state_tie_prefers_processing(store):
    apply(store, "session.state", T0, state="processing", sessionId="id1")
    apply(store, "session.state", T0, state="idle", sessionKey="k1")
    apply(store, "run.progress", T0 + 1, sessionKey="k1", sessionId="id1", reason="link")
    assert session(store, "k1").state == "processing"


def test_session_id_relinked_to_new_key(store):
    apply(store, "session.state", state="processing", sessionKey="k1", sessionId="id1")
    apply(store, "session.state", T0 + 1, state="processing", sessionKey="k2", sessionId="id1")
    assert store.find("default", "id1") is session(store, "k2")
    assert session(store, "k1").session_id is None
    assert store.session_count == 2


def test_gateways_never_mix(store):
    apply(store, "message.queued", source="x", sessionKey="s1", gatewayId="a")
    apply(store, "message.queued", source="x", sessionKey="s1", gatewayId="b")
    assert session(store, "s1", "a") is not session(store, "s1", "b")
    assert len(store.find_all("s1")) == 2


def test_dedupe_by_event_id_and_by_seq_ts(store):
    assert apply(store, "message.queued", source="x", sessionKey="s1", eventId="e1").outcome == ACCEPTED
    assert apply(store, "message.queued", source="x", sessionKey="s1", eventId="e1").outcome == DUPLICATE
    assert apply(store, "message.queued", source="x", sessionKey="s1", seq=5).outcome == ACCEPTED
    assert apply(store, "message.queued", source="x", sessionKey="s1", seq=5).outcome == DUPLICATE
    assert apply(store, "message.queued", None, source="x", sessionKey="s1", seq=5).outcome == ACCEPTED
    assert session(store).queue_depth == 3
    # another gateway's identical key is not a duplicate
    assert apply(store, "message.queued", source="x", sessionKey="s1", eventId="e1", gatewayId="b").outcome == ACCEPTED


def test_dedupe_window_forgets_after_an_hour(store):
    apply(store, "message.queued", source="x", sessionKey="s1", eventId="e1")
    later = T0 + 3_600_001
    assert store.apply_event(ev("message.queued", later, source="x", sessionKey="s1", eventId="e1"), later).outcome == ACCEPTED


def test_future_ts_is_clamped_to_receive_time(store):
    result = apply(store, "session.state", T0 + 120_000, received=T0, state="processing", sessionKey="s1")
    assert result.clamped
    assert session(store).last_activity == T0


def test_skew_is_the_minimum_delay_and_defines_gateway_now(store):
    # the gateway's clock runs 5 minutes behind the service's
    behind = 300_000
    apply(store, "session.state", T0 - behind, received=T0 + 40, state="processing", sessionKey="s1")
    apply(store, "run.progress", T0 - behind + 1000, received=T0 + 1000 + 15, sessionKey="s1", reason="x")
    info = store.gateway_info("default")
    assert info.skew_ms == behind + 15
    assert info.now(T0 + 2000) == T0 - behind + 2000 - 15


def test_missing_ts_uses_gateway_now(store):
    apply(store, "session.state", T0 - 10_000, received=T0, state="processing", sessionKey="s1")
    apply(store, "session.progress", None, received=T0 + 500, sessionKey="s1")
    assert session(store).last_activity == T0 - 10_000 + 500


def test_usage_sums_on_existing_sessions_only(store):
    usage = {"input": 10, "output": 6, "cacheRead": 1, "cacheWrite": 2, "total": 19}
    apply(store, "model.usage", sessionKey="nobody", usage=usage, costUsd=0.5)
    assert store.find("default", "nobody") is None
    apply(store, "session.state", state="processing", sessionKey="s1")
    generation = session(store).generation
    apply(store, "model.usage", T0 + 1, sessionKey="s1", usage=usage, costUsd=0.5)
    apply(store, "model.usage", T0 + 2, sessionKey="s1", usage=usage, costUsd=0.25)
    s = session(store)
    assert s.usage == [20, 12, 2, 4, 38, 0.75]
    assert s.generation == generation and s.last_activity == T0


def test_gateway_verdicts_are_stored_not_applied(store):
    apply(store, "session.state", state="processing", sessionKey="s1")
    apply(store, "session.stalled", T0 + 5, sessionKey="s1", state="processing", reason="active_work_without_progress",
          ageMs=89040.5, activeWorkKind="model_call", classification="stalled_agent_run")
    s = session(store)
    assert s.gateway_verdict["eventType"] == "session.stalled"
    assert s.gateway_verdict["ageMs"] == 89040
    assert s.attention is None and s.generation == 1


def test_keepalive_reports_drop_increases(store):
    r1 = apply(store, "forwarder.keepalive", queued=3, dropped=10)
    r2 = apply(store, "forwarder.keepalive", queued=0, dropped=14)
    r3 = apply(store, "forwarder.keepalive", queued=0, dropped=2)  # forwarder restarted
    assert (r1.forwarder_dropped, r2.forwarder_dropped, r3.forwarder_dropped) == (0, 4, 2)
    assert store.gateway_info("default").forwarder_queued == 0
    assert store.session_count == 0


def test_metrics_only_events_never_create_sessions(store):
    result = apply(store, "queue.lane.enqueue", lane="session:s1", queueSize=1, sessionKey="s1")
    assert result.outcome == ACCEPTED and store.session_count == 0


def test_candidate_index(store):
    apply(store, "session.state", state="processing", sessionKey="p")
    apply(store, "session.state", state="waiting", sessionKey="w")
    apply(store, "message.queued", source="x", sessionKey="q")  # idle, queued, no markers
    apply(store, "model.call.started", sessionKey="q", provider="p", model="m")
    apply(store, "message.queued", source="x", sessionKey="plain")
    assert {s.key for s in store.considered()} == {"p", "q"}
    apply(store, "session.state", T0 + 1, state="idle", sessionKey="p")
    assert {s.key for s in store.considered()} == {"q"}


def test_state_counts_follow_every_change(store):
    apply(store, "session.state", state="processing", sessionKey="a")
    apply(store, "session.state", state="processing", sessionKey="b")
    apply(store, "session.state", T0 + 1, state="idle", sessionKey="b")
    assert {(g, st): n for g, st, n in store.sessions_by_state() if n} == {("default", "processing"): 1, ("default", "idle"): 1}
    store.evict(session(store, "b"))
    assert {(g, st): n for g, st, n in store.sessions_by_state() if n} == {("default", "processing"): 1}


def test_recovery_generation_guard(store):
    apply(store, "session.state", state="idle", sessionKey="s1")
    apply(store, "message.queued", T0 + 1, source="x", sessionKey="s1", queueDepth=2)
    s = session(store)
    request = recovery_request(stateGeneration=s.generation, expectedState="idle", requestedAt=T0 + 10, queueDepth=2)
    released = recovery_outcome(status="released", action="release_lane")
    assert store.is_current(s, request, released)
    apply(store, "run.started", T0 + 11, sessionKey="s1", runId="new")  # a newer owner
    assert not store.is_current(s, request, released)


@pytest.mark.parametrize(("profile_is_2026_9", "expected"), [(False, False), (True, True)])
def test_an_idle_abort_one_generation_on_passes_only_the_2026_9_guard(store, profile_is_2026_9, expected):
    """2026.9 accepts generation + 1 for an idle abort (the abort's own end of the run moved it)."""
    apply(store, "session.state", state="idle", sessionKey="s1")
    apply(store, "message.queued", T0 + 1, source="x", sessionKey="s1", queueDepth=1)
    s = session(store)
    request = recovery_request(stateGeneration=s.generation, expectedState="idle", requestedAt=T0 + 10, queueDepth=1)
    apply(store, "session.state", T0 + 11, state="idle", sessionKey="s1")  # one generation on, still idle
    aborted = recovery_outcome(status="aborted", action="abort_embedded_run")
    assert store.is_current(s, request, aborted, profile_is_2026_9) is expected
    released = recovery_outcome(status="released", action="release_lane")
    assert store.is_current(s, request, released, profile_is_2026_9) is False  # only the idle abort


@pytest.mark.parametrize(
    ("profile", "outcome", "applied", "kind"),
    [
        # the seed applies a noop that found no active work; 2026.9 applies aborted / released only
        ("seed", {"status": "noop", "action": "none", "outcomeReason": "no_active_work"}, True, "model_call"),
        ("openclaw-2026.9", {"status": "noop", "action": "none", "outcomeReason": "no_active_work"}, False, None),
        # 2026.9 reports the work the gateway found, the seed the work the request named
        ("seed", {"status": "aborted", "action": "abort_embedded_run", "activeWorkKind": "embedded_run"},
         True, "model_call"),
        ("openclaw-2026.9", {"status": "aborted", "action": "abort_embedded_run", "activeWorkKind": "embedded_run"},
         True, "embedded_run"),
    ],
)
def test_what_a_completed_recovery_applies_and_reports_follows_the_profile(store, profile, outcome, applied, kind):
    apply(store, "session.state", state="processing", sessionKey="s1")
    apply(store, "model.call.started", T0 + 1, sessionKey="s1", provider="p", model="m")
    s = session(store)
    request = recovery_request(stateGeneration=s.generation, expectedState="processing", requestedAt=T0 + 5,
                               activeWorkKind="model_call")
    store.begin_recovery(s, request)
    done = store.complete_recovery(s, request, recovery_outcome(**outcome), T0 + 100, profile)
    assert done.applied is applied
    assert done.entry.get("activeWorkKind") == kind
    assert s.state == ("idle" if applied else "processing")


@pytest.mark.parametrize(
    ("outcome", "expected_depth"),
    [
        ({"status": "released", "action": "release_lane"}, 0),
        ({"status": "released", "action": "release_lane", "queuedCount": 2}, 5),  # seed: 0
        ({"status": "aborted", "action": "abort_embedded_run", "released": 1}, 0),  # seed: 2 (no queuedCount)
        ({"status": "released", "action": "release_lane", "queuedCount": 0}, 0),
        ({"status": "aborted", "action": "abort_embedded_run"}, 2),  # current - 1
    ],
)
def test_apply_recovery_queue_rules_2026_9(store, outcome, expected_depth):
    """upstream's applyRecoveryOutcomeToDiagnosticState: a missing queuedCount counts as 0, and
    queued idle work is kept whatever the mutating status."""
    apply(store, "message.queued", source="x", sessionKey="s1", queueDepth=3)
    apply(store, "model.call.started", T0 + 1, sessionKey="s1", provider="p", model="m")
    s = session(store)
    request = recovery_request(stateGeneration=s.generation, expectedState="idle", requestedAt=T0 + 5, queueDepth=5)
    store.apply_recovery(s, request, recovery_outcome(**outcome), T0 + 100, upstream=True)
    assert (s.state, s.queue_depth) == ("idle", expected_depth)


@pytest.mark.parametrize(
    ("outcome", "expected_depth"),
    [
        ({"status": "released", "action": "release_lane"}, 0),
        ({"status": "aborted", "action": "abort_embedded_run", "released": 1, "queuedCount": 0}, 0),
        ({"status": "noop", "action": "none", "outcomeReason": "no_active_work"}, 0),
        ({"status": "aborted", "action": "abort_embedded_run", "queuedCount": 2}, 5),  # max(current, request)
        ({"status": "aborted", "action": "abort_embedded_run"}, 2),  # current - 1
    ],
)
def test_apply_recovery_queue_rules(store, outcome, expected_depth):
    apply(store, "message.queued", source="x", sessionKey="s1", queueDepth=3)
    apply(store, "model.call.started", T0 + 1, sessionKey="s1", provider="p", model="m")
    s = session(store)
    generation = s.generation
    request = recovery_request(stateGeneration=generation, expectedState="idle", requestedAt=T0 + 5, queueDepth=5)
    store.apply_recovery(s, request, recovery_outcome(**outcome), T0 + 100)
    assert (s.state, s.queue_depth, s.generation, s.last_activity) == ("idle", expected_depth, generation + 1, T0 + 100)
    assert s.snapshot(T0 + 100).active_work_kind is None


def test_earlier_session_ids_of_a_key_keep_resolving_and_survive_restore(store):
    apply(store, "session.state", state="processing", sessionKey="k1", sessionId="id1")
    apply(store, "session.state", T0 + 1, state="processing", sessionKey="k1", sessionId="id2")
    assert store.find("default", "id1") is store.find("default", "id2") is session(store, "k1")
    restored = Store()
    restored.restore_session(type(session(store, "k1")).from_state(session(store, "k1").to_state()))
    assert restored.find("default", "id1") is restored.find("default", "k1")


def test_a_run_id_belongs_to_the_session_that_claimed_it_last(store):
    apply(store, "run.started", sessionKey="b", runId="run-x")
    apply(store, "run.progress", sessionKey="a", reason="x")
    apply(store, "run.completed", T0 + 1, sessionKey="a", runId="run-x")
    assert "run-x" not in (session(store, "b").runs or {})
    assert store.gateway_info("default").runs["run-x"] == "a"


def test_an_eviction_walk_costs_what_it_evicts_not_what_stays():
    """Old sessions that may not go (work queued) are walked once, then moved behind the fresh."""
    store = Store()
    for i in range(1_000):  # old, idle, one message queued: not evictable
        apply(store, "message.queued", T0 + i, received=T0 + i, sessionKey=f"queued{i}", source="x")
    apply(store, "session.state", T0 + 2_000, received=T0 + 2_000, sessionKey="gone", state="idle", queueDepth=0)
    apply(store, "session.state", T0 + 9_000, received=T0 + 9_000, sessionKey="fresh", state="idle")
    now = lambda info: T0 + 10_000  # noqa: E731
    assert [s.key for s in store.evictable(now, 5_000, limit=10_000)] == ["gone"]
    # every visited session now sits behind the fresh one: the next walk stops at it at once
    order = list(store.gateway_info("default").sessions)
    assert order == ["fresh", *[f"queued{i}" for i in range(1_000)], "gone"]
    # at most `limit` sessions are visited per walk: later, with everything old, round-robin
    found = store.evictable(lambda info: T0 + 100_000, 5_000, limit=10)
    assert [s.key for s in found] == ["fresh"]
    order = list(store.gateway_info("default").sessions)
    assert order[0] == "queued9" and order[-10:] == ["fresh", *[f"queued{i}" for i in range(9)]]


def test_the_gateway_version_of_a_keepalive_is_kept_and_checkpointed(store):
    """`forwarder.keepalive`'s gatewayVersion (the plugin reads it from the gateway it runs in)
    is kept per gateway, survives a checkpoint, and a state written before it had one reads None."""
    apply(store, "forwarder.keepalive", gatewayVersion="2026.9.6", queued=0)
    apply(store, "forwarder.keepalive", T0 + 1, queued=0)  # a keepalive without it changes nothing
    info = store.gateway_info("default")
    assert info.gateway_version == "2026.9.6"
    state = info.to_state()
    assert GatewayInfo.from_state(state).gateway_version == "2026.9.6"
    assert GatewayInfo.from_state(state[:-2]).gateway_version is None  # before versions and maintenance


def test_a_maintenance_window_is_checkpointed_and_ends_at_its_deadline(store):
    apply(store, "forwarder.keepalive", queued=0)
    window = {"until": T0 + 60_000, "since": T0, "reason": "upgrade", "actor": "alice"}
    assert store.set_maintenance("default", window) and not store.set_maintenance("unknown", window)
    info = GatewayInfo.from_state(store.gateway_info("default").to_state())
    assert info.maintenance == window
    assert info.in_maintenance(T0 + 59_999) and not info.in_maintenance(T0 + 60_000)
