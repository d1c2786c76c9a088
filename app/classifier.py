"""OpenClaw's session attention classifier (README, "How it decides").

A pure function: no I/O, no clock. Everything it needs is in its arguments, so the monitor,
the replay command and the tests all run the very same decision table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.vocabulary import AttentionKind, Classification, Reason

SessionState = Literal["idle", "processing", "waiting"]
WorkKind = Literal["embedded_run", "model_call", "tool_call"]

# Module-level names for the members: an Enum member's attribute lookup costs ~100 ns on Python
# 3.11, and the monitor classifies every considered session on every tick (bench/inprocess.py).
LONG_RUNNING, STALLED, STUCK = AttentionKind.LONG_RUNNING, AttentionKind.STALLED, AttentionKind.STUCK
_LONG, _STALLED_RUN, _BLOCKED, _STALE = (Classification.LONG_RUNNING, Classification.STALLED_AGENT_RUN,
                                         Classification.BLOCKED_TOOL_CALL, Classification.STALE_SESSION_STATE)
(_QUEUED_NO_RUN, _STALE_STATE, _BLOCKED_TOOL, _QUEUED_TERMINAL, _NO_PROGRESS, _QUEUED_ACTIVE, _ACTIVE,
 _QUEUED_UNTRACKED, _UNTRACKED) = (
    Reason.QUEUED_WORK_WITHOUT_ACTIVE_RUN, Reason.STALE_SESSION_STATE, Reason.BLOCKED_TOOL_CALL,
    Reason.QUEUED_BEHIND_TERMINAL_ACTIVE_WORK, Reason.ACTIVE_WORK_WITHOUT_PROGRESS,
    Reason.QUEUED_BEHIND_ACTIVE_WORK, Reason.ACTIVE_WORK, Reason.QUEUED_BEHIND_UNTRACKED_ACTIVE_PROGRESS,
    Reason.UNTRACKED_ACTIVE_PROGRESS)
_PROVIDER_RETRY_WAIT, _RUNTIME_OWNED_WAIT, _REPEATED_REQUESTS, _MODEL_CALL_NO_PROGRESS = (
    Reason.PROVIDER_RETRY_WAIT, Reason.RUNTIME_OWNED_WAIT, Reason.REPEATED_MODEL_REQUESTS_WITHOUT_PROGRESS,
    Reason.ACTIVE_MODEL_CALL_WITHOUT_PROGRESS)

_TERMINAL_REASONS = frozenset({"run:completed", "embedded_run:ended"})
_TERMINAL_MARKERS = (
    "response.completed",
    "rawResponseItem/completed",
    "raw_response_item.completed",
    "output_item.done",
)


@dataclass(slots=True, kw_only=True)
class ActivitySnapshot:
    """What the classifier sees of a session's activity (README, "How it decides").

    Not frozen: the monitor builds one per visited session, and a frozen dataclass pays an
    `object.__setattr__` per field for it."""

    active_work_kind: WorkKind | None = None
    has_active_embedded_run: bool | None = None
    active_tool_name: str | None = None
    active_tool_call_id: str | None = None
    active_tool_age_ms: int | None = None
    last_progress_age_ms: int | None = None
    last_progress_reason: str | None = None
    # read by the openclaw-2026.9 table only (classify_session_attention_2026_9)
    repeated_request_no_progress_age_ms: int | None = None
    active_retry_wait_deadline_at_ms: int | None = None


EMPTY_SNAPSHOT = ActivitySnapshot()


@dataclass(frozen=True, slots=True)
class AttentionResult:
    event_type: AttentionKind
    reason: Reason
    classification: Classification
    active_work_kind: WorkKind | None
    recovery_eligible: bool


def is_terminal_progress_reason(reason: str | None) -> bool:
    """True when the last progress mark says the active work already finished."""
    if not reason:
        return False
    if reason in _TERMINAL_REASONS:
        return True
    return any(marker in reason for marker in _TERMINAL_MARKERS)


def _stuck(reason: Reason) -> AttentionResult:
    return AttentionResult(STUCK, reason, _STALE, None, True)


def classify_session_attention(
    *,
    state: SessionState | None,
    queue_depth: int,
    activity: ActivitySnapshot | None,
    stale_ms: int,
) -> AttentionResult:
    """The seed's decision table (README, "How it decides"): the first matching row wins."""
    activity = activity or EMPTY_SNAPSHOT
    kind = activity.active_work_kind
    progress_age = activity.last_progress_age_ms
    lp = progress_age or 0
    tool = activity.active_tool_age_ms or 0
    queued = queue_depth > 0

    # Row 1 (OpenClaw 286964c): an idle session whose queued work waits behind activity that no
    # embedded run owns is stale bookkeeping, recoverable — not stalled work.
    if (
        kind is not None
        and state == "idle"
        and queued
        and activity.has_active_embedded_run is not True
        and lp > stale_ms
    ):
        return _stuck(_QUEUED_NO_RUN)
    if kind == "tool_call" and tool > stale_ms and lp > stale_ms:
        return AttentionResult(STALLED, _BLOCKED_TOOL, _BLOCKED, kind, False)
    if queued and kind == "embedded_run" and is_terminal_progress_reason(activity.last_progress_reason):
        return AttentionResult(
            STALLED, _QUEUED_TERMINAL, _STALLED_RUN, kind, False
        )
    if kind is not None and lp > stale_ms:
        return AttentionResult(
            STALLED, _NO_PROGRESS, _STALLED_RUN, kind, False
        )
    if kind is not None:
        reason = _QUEUED_ACTIVE if queued else _ACTIVE
        return AttentionResult(LONG_RUNNING, reason, _LONG, kind, False)
    # Row 6: runtimes that only send run.progress are not stuck while that progress is fresh.
    if progress_age is not None and progress_age <= stale_ms:
        reason = _QUEUED_UNTRACKED if queued else _UNTRACKED
        return AttentionResult(LONG_RUNNING, reason, _LONG, None, False)
    return _stuck(_QUEUED_NO_RUN if queued else _STALE_STATE)


def classify_session_attention_2026_9(
    *,
    state: SessionState | None,
    queue_depth: int,
    activity: ActivitySnapshot | None,
    stale_ms: int,
    abort_ms: int | None,
    now_ms: int,
    runtime_owns_liveness: bool = False,
) -> AttentionResult:
    """The decision table of the gateways in the field (`openclaw@2026.9.6`,
    `classifySessionAttention` in its dist): the first matching row wins. Beside the seed's it
    has the wait rows, calls a model call an embedded run owns long-running until the abort
    threshold, and has no row for untracked progress (no active work is stuck).

    `now_ms` is the clock the retry-wait deadline is read against (upstream reads Date.now());
    `runtime_owns_liveness` is upstream's `runtimeOwnsLiveness`. What no forwarded event carries
    yet (the retry deadline, repeated requests, who owns liveness) is None / False: the rows that
    need it do not fire."""
    activity = activity or EMPTY_SNAPSHOT
    kind = activity.active_work_kind
    deadline = activity.active_retry_wait_deadline_at_ms
    if deadline is not None and now_ms < deadline:
        return AttentionResult(LONG_RUNNING, _PROVIDER_RETRY_WAIT, _LONG, kind, False)
    if runtime_owns_liveness:
        return AttentionResult(LONG_RUNNING, _RUNTIME_OWNED_WAIT, _LONG, kind, False)
    queued = queue_depth > 0
    if kind is None:
        return _stuck(_QUEUED_NO_RUN if queued else _STALE_STATE)
    lp = activity.last_progress_age_ms or 0
    owned = activity.has_active_embedded_run is True
    if owned and abort_ms is not None and (activity.repeated_request_no_progress_age_ms or 0) >= abort_ms:
        return AttentionResult(STALLED, _REPEATED_REQUESTS, _STALLED_RUN, kind, False)
    if state == "idle" and queued and not owned and lp > stale_ms:
        return AttentionResult(STUCK, _QUEUED_NO_RUN, _STALE, None, True)
    if kind == "tool_call" and (activity.active_tool_age_ms or 0) > stale_ms and lp > stale_ms:
        return AttentionResult(STALLED, _BLOCKED_TOOL, _BLOCKED, kind, False)
    if queued and kind == "embedded_run" and is_terminal_progress_reason(activity.last_progress_reason):
        return AttentionResult(STALLED, _QUEUED_TERMINAL, _STALLED_RUN, kind, False)
    if kind == "model_call" and owned and lp > stale_ms:
        if abort_ms is not None and lp >= abort_ms:
            return AttentionResult(STALLED, _NO_PROGRESS, _STALLED_RUN, kind, False)
        return AttentionResult(LONG_RUNNING, _MODEL_CALL_NO_PROGRESS, _LONG, kind, False)
    if lp > stale_ms:
        return AttentionResult(STALLED, _NO_PROGRESS, _STALLED_RUN, kind, False)
    return AttentionResult(LONG_RUNNING, _QUEUED_ACTIVE if queued else _ACTIVE, _LONG, kind, False)


# upstream's floors for an active abort (dist/diagnostic-run-activity-*.mjs in openclaw@2026.9.6)
BLOCKED_TOOL_CALL_ABORT_FLOOR_MS = 900_000


def active_abort_eligible_2026_9(
    result: AttentionResult, activity: ActivitySnapshot, abort_ms: int, now_ms: int,
) -> bool:
    """May recovery abort the active work of a stalled session? The 2026.9 gateways' rule
    (`isActiveAbortRecoveryEligible` with `resolveRunStaleThresholdMs`). The tool deadline, the
    model call's request timeout and the backend liveness deadline are not in any forwarded
    event: they are taken as absent, as upstream does when a run has none (docs/design.md)."""
    lp = activity.last_progress_age_ms
    if result.event_type != STALLED or lp is None:
        return False
    deadline = activity.active_retry_wait_deadline_at_ms
    retry_wait_ms = 0 if deadline is None else lp + deadline - now_ms
    if result.classification == _BLOCKED and result.active_work_kind == "tool_call":
        threshold = max(abort_ms, BLOCKED_TOOL_CALL_ABORT_FLOOR_MS, retry_wait_ms)
        tool_age = activity.active_tool_age_ms
        return tool_age is not None and lp >= threshold and tool_age >= threshold
    if result.classification != _STALLED_RUN:
        return False
    if activity.has_active_embedded_run and (activity.repeated_request_no_progress_age_ms or 0) >= abort_ms:
        return True
    return result.active_work_kind in ("model_call", "embedded_run") and lp >= max(abort_ms, retry_wait_ms)
