"""The decision table of classifier.md, row by row, boundary by boundary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.classifier import (
    ActivitySnapshot,
    classify_session_attention,
    is_terminal_progress_reason,
)

WARN = 120_000


def classify(state="processing", queue=0, stale_ms=WARN, **activity):
    snapshot = ActivitySnapshot(**activity) if activity else None
    r = classify_session_attention(state=state, queue_depth=queue, activity=snapshot, stale_ms=stale_ms)
    return (r.event_type, r.reason, r.classification, r.active_work_kind, r.recovery_eligible)


# -- the worked examples of classifier.md -------------------------------------------------------


def test_processing_model_call_without_progress_is_stalled():
    assert classify("processing", 0, active_work_kind="model_call", last_progress_age_ms=125_000) == (
        "session.stalled", "active_work_without_progress", "stalled_agent_run", "model_call", False)


def test_idle_queued_orphaned_tool_call_is_stuck():
    assert classify("idle", 2, active_work_kind="tool_call", active_tool_age_ms=200_000,
                    last_progress_age_ms=200_000) == (
        "session.stuck", "queued_work_without_active_run", "stale_session_state", None, True)


def test_idle_queued_tool_call_owned_by_embedded_run_is_blocked():
    assert classify("idle", 2, active_work_kind="tool_call", active_tool_age_ms=200_000,
                    last_progress_age_ms=200_000, has_active_embedded_run=True)[:3] == (
        "session.stalled", "blocked_tool_call", "blocked_tool_call")


def test_row_1_needs_queued_work():
    assert classify("idle", 0, active_work_kind="model_call", last_progress_age_ms=500_000)[:2] == (
        "session.stalled", "active_work_without_progress")


def test_queued_behind_terminal_embedded_run():
    assert classify("processing", 3, active_work_kind="embedded_run", last_progress_age_ms=5,
                    last_progress_reason="openai:response.completed")[:3] == (
        "session.stalled", "queued_behind_terminal_active_work", "stalled_agent_run")


def test_progress_exactly_at_threshold_is_still_long_running():
    assert classify("processing", 0, active_work_kind="embedded_run", last_progress_age_ms=120_000) == (
        "session.long_running", "active_work", "long_running", "embedded_run", False)


def test_processing_with_queue_and_no_activity_is_stuck():
    assert classify("processing", 1) == (
        "session.stuck", "queued_work_without_active_run", "stale_session_state", None, True)


# -- row 1: only idle counts ----------------------------------------------------------------------


@pytest.mark.parametrize("state", ["processing", "waiting", None])
def test_row_1_does_not_fire_unless_idle(state):
    result = classify(state, 2, active_work_kind="model_call", last_progress_age_ms=200_000)
    assert result[:2] == ("session.stalled", "active_work_without_progress")
    assert result[4] is False


@pytest.mark.parametrize("state", ["processing", "waiting", None])
def test_orphaned_tool_call_outside_idle_is_blocked(state):
    result = classify(state, 2, active_work_kind="tool_call", active_tool_age_ms=200_000,
                      last_progress_age_ms=200_000)
    assert result[:2] == ("session.stalled", "blocked_tool_call")


def test_row_1_boundary_progress_equal_to_threshold():
    at = classify("idle", 1, active_work_kind="model_call", last_progress_age_ms=WARN)
    over = classify("idle", 1, active_work_kind="model_call", last_progress_age_ms=WARN + 1)
    assert at[:2] == ("session.long_running", "queued_behind_active_work")
    assert over[:2] == ("session.stuck", "queued_work_without_active_run")


def test_row_1_with_absent_progress_counts_as_zero():
    assert classify("idle", 1, active_work_kind="model_call")[:2] == (
        "session.long_running", "queued_behind_active_work")


def test_row_1_has_active_embedded_run_false_is_not_an_owner():
    # Only True means owned: anything else is the orphan case.
    result = classify("idle", 1, active_work_kind="model_call", last_progress_age_ms=WARN + 1,
                      has_active_embedded_run=False)
    assert result[0] == "session.stuck"


# -- row 2: tool and progress must both be old --------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "progress", "expected"),
    [
        (WARN + 1, WARN + 1, "blocked_tool_call"),
        (WARN, WARN + 1, "active_work_without_progress"),  # tool not old enough: row 4
        (WARN + 1, WARN, "active_work"),  # progress not old enough: row 5
        (None, WARN + 1, "active_work_without_progress"),
    ],
)
def test_row_2_boundaries(tool, progress, expected):
    assert classify("processing", 0, active_work_kind="tool_call", active_tool_age_ms=tool,
                    last_progress_age_ms=progress)[1] == expected


# -- row 3 -----------------------------------------------------------------------------------------


def test_row_3_needs_queue_embedded_run_and_terminal_reason():
    terminal = "run:completed"
    assert classify("processing", 1, active_work_kind="embedded_run", last_progress_age_ms=1,
                    last_progress_reason=terminal)[1] == "queued_behind_terminal_active_work"
    assert classify("processing", 0, active_work_kind="embedded_run", last_progress_age_ms=1,
                    last_progress_reason=terminal)[1] == "active_work"
    assert classify("processing", 1, active_work_kind="model_call", last_progress_age_ms=1,
                    last_progress_reason=terminal)[1] == "queued_behind_active_work"
    assert classify("processing", 1, active_work_kind="embedded_run", last_progress_age_ms=1,
                    last_progress_reason="model_call:started")[1] == "queued_behind_active_work"


# -- rows 4 and 5 -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["embedded_run", "model_call", "tool_call"])
def test_rows_4_and_5_for_every_kind(kind):
    assert classify("processing", 0, active_work_kind=kind, last_progress_age_ms=WARN + 1)[:2] == (
        "session.stalled", "active_work_without_progress")
    assert classify("processing", 0, active_work_kind=kind, last_progress_age_ms=WARN)[:2] == (
        "session.long_running", "active_work")
    assert classify("processing", 2, active_work_kind=kind, last_progress_age_ms=0)[1] == "queued_behind_active_work"


# -- rows 6 and 7 -------------------------------------------------------------------------------


def test_row_6_fresh_untracked_progress_is_long_running():
    assert classify("processing", 0, last_progress_age_ms=WARN) == (
        "session.long_running", "untracked_active_progress", "long_running", None, False)
    assert classify("processing", 4, last_progress_age_ms=0)[1] == "queued_behind_untracked_active_progress"


def test_row_7_stale_untracked_progress_is_stuck():
    assert classify("processing", 0, last_progress_age_ms=WARN + 1) == (
        "session.stuck", "stale_session_state", "stale_session_state", None, True)
    assert classify("processing", 2, last_progress_age_ms=WARN + 1)[1] == "queued_work_without_active_run"


def test_empty_snapshot_cannot_reach_row_6():
    empty = classify_session_attention(state="processing", queue_depth=0, activity=ActivitySnapshot(), stale_ms=WARN)
    assert (empty.event_type, empty.reason) == ("session.stuck", "stale_session_state")
    assert classify("processing", 0)[:2] == ("session.stuck", "stale_session_state")


def test_snapshot_accepts_any_subset_of_keywords():
    assert ActivitySnapshot(last_progress_reason="x").active_work_kind is None


# -- is_terminal_progress_reason -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "terminal"),
    [
        (None, False),
        ("", False),
        ("run:completed", True),
        ("embedded_run:ended", True),
        ("openai:response.completed", True),
        ("codex:rawResponseItem/completed", True),
        ("x raw_response_item.completed y", True),
        ("stream:output_item.done", True),
        ("run:completed:extra", False),
        ("model_call:ended", False),
        ("tool:exec:ended", False),
    ],
)
def test_terminal_progress_reasons(reason, terminal):
    assert is_terminal_progress_reason(reason) is terminal


# -- properties ---------------------------------------------------------------------------------

ages = st.one_of(st.none(), st.integers(min_value=0, max_value=10**9))
snapshots = st.builds(
    ActivitySnapshot,
    active_work_kind=st.sampled_from([None, "embedded_run", "model_call", "tool_call"]),
    has_active_embedded_run=st.sampled_from([None, True]),
    active_tool_age_ms=ages,
    last_progress_age_ms=ages,
    last_progress_reason=st.sampled_from([None, "run:completed", "model_call:started", "x:response.completed"]),
)


@given(
    state=st.sampled_from(["idle", "processing", "waiting", None]),
    queue=st.integers(min_value=0, max_value=1000),
    snapshot=st.one_of(st.none(), snapshots),
    stale=st.integers(min_value=1000, max_value=86_400_000),
)
def test_properties(state, queue, snapshot, stale):
    r = classify_session_attention(state=state, queue_depth=queue, activity=snapshot, stale_ms=stale)
    assert (r.event_type == "session.stuck") == r.recovery_eligible
    if r.event_type == "session.stuck":
        assert r.active_work_kind is None
        assert r.classification == "stale_session_state"
    kind = snapshot.active_work_kind if snapshot else None
    if kind is not None and r.event_type != "session.stuck":
        assert r.active_work_kind == kind
    if kind is None:
        assert r.active_work_kind is None
    # queued work is named in the reason exactly when the table says so
    if r.reason in ("queued_behind_active_work", "queued_behind_untracked_active_progress",
                    "queued_behind_terminal_active_work"):
        assert queue > 0
