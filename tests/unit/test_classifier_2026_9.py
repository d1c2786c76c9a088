"""The `openclaw-2026.9` profile's decision table, row by row, as `classifySessionAttention` in
the `openclaw@2026.9.6` package's dist (src/logging/diagnostic-session-attention.ts) orders it;
and where it parts from the seed table (tests/unit/test_classifier.py)."""

from __future__ import annotations

import pytest

from app.classifier import (
    ActivitySnapshot,
    classify_session_attention,
    classify_session_attention_2026_9,
)

WARN, ABORT, NOW = 30_000, 90_000, 1_800_000_000_000


def verdict(state="processing", queue=0, runtime_owns_liveness=False, **activity):
    result = classify_session_attention_2026_9(
        state=state, queue_depth=queue, activity=ActivitySnapshot(**activity), stale_ms=WARN, abort_ms=ABORT,
        now_ms=NOW, runtime_owns_liveness=runtime_owns_liveness)
    return result.event_type, result.reason, result.classification, result.recovery_eligible


MODEL_CALL = {"active_work_kind": "model_call", "has_active_embedded_run": True}


@pytest.mark.parametrize(("case", "expected"), [
    # the wait rows come first, whatever the activity
    ({"active_retry_wait_deadline_at_ms": NOW + 1, **MODEL_CALL, "last_progress_age_ms": 10 * ABORT},
     ("session.long_running", "provider_retry_wait", "long_running", False)),
    ({"active_retry_wait_deadline_at_ms": NOW, **MODEL_CALL, "last_progress_age_ms": 10 * ABORT},
     ("session.stalled", "active_work_without_progress", "stalled_agent_run", False)),  # the wait is over
    ({"runtime_owns_liveness": True},
     ("session.long_running", "runtime_owned_wait", "long_running", False)),
    # repeated model requests without progress, past abort, in an embedded run
    ({"repeated_request_no_progress_age_ms": ABORT, **MODEL_CALL, "last_progress_age_ms": 1},
     ("session.stalled", "repeated_model_requests_without_progress", "stalled_agent_run", False)),
    # an owned, silent model call: long-running from warn, stalled only at abort
    ({**MODEL_CALL, "last_progress_age_ms": WARN + 1},
     ("session.long_running", "active_model_call_without_progress", "long_running", False)),
    ({**MODEL_CALL, "last_progress_age_ms": ABORT},
     ("session.stalled", "active_work_without_progress", "stalled_agent_run", False)),
    # orphaned activity behind queued work on an idle session (286964c)
    ({"state": "idle", "queue": 2, "active_work_kind": "tool_call", "last_progress_age_ms": WARN + 1},
     ("session.stuck", "queued_work_without_active_run", "stale_session_state", True)),
    ({"active_work_kind": "tool_call", "active_tool_age_ms": WARN + 1, "last_progress_age_ms": WARN + 1},
     ("session.stalled", "blocked_tool_call", "blocked_tool_call", False)),
    ({"queue": 1, "active_work_kind": "embedded_run", "last_progress_reason": "run:completed"},
     ("session.stalled", "queued_behind_terminal_active_work", "stalled_agent_run", False)),
    ({"active_work_kind": "embedded_run", "last_progress_age_ms": WARN + 1},
     ("session.stalled", "active_work_without_progress", "stalled_agent_run", False)),
    ({"queue": 1, "active_work_kind": "embedded_run", "last_progress_age_ms": 5},
     ("session.long_running", "queued_behind_active_work", "long_running", False)),
    # no active work: stuck, fresh progress or not (the seed's untracked-progress row is not here)
    ({"last_progress_age_ms": 5, "last_progress_reason": "run.progress"},
     ("session.stuck", "stale_session_state", "stale_session_state", True)),
    ({"queue": 3}, ("session.stuck", "queued_work_without_active_run", "stale_session_state", True)),
])
def test_the_rows(case, expected) -> None:
    assert verdict(**case) == expected


def test_where_the_profiles_part() -> None:
    """The hung model call of the real gateway: the seed says stalled at warn, 2026.9
    long-running until abort; untracked fresh progress: seed long-running, 2026.9 stuck."""
    hung = ActivitySnapshot(active_work_kind="model_call", has_active_embedded_run=True, last_progress_age_ms=WARN + 1)
    seed = classify_session_attention(state="processing", queue_depth=0, activity=hung, stale_ms=WARN)
    field = classify_session_attention_2026_9(state="processing", queue_depth=0, activity=hung, stale_ms=WARN,
                                              abort_ms=ABORT, now_ms=NOW)
    assert (seed.event_type, field.event_type) == ("session.stalled", "session.long_running")
    fresh = ActivitySnapshot(last_progress_age_ms=5)
    seed = classify_session_attention(state="processing", queue_depth=0, activity=fresh, stale_ms=WARN)
    field = classify_session_attention_2026_9(state="processing", queue_depth=0, activity=fresh, stale_ms=WARN,
                                              abort_ms=ABORT, now_ms=NOW)
    assert (seed.reason, field.reason) == ("untracked_active_progress", "stale_session_state")
