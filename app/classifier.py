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

LONG_RUNNING, STALLED, STUCK = AttentionKind.LONG_RUNNING, AttentionKind.STALLED, AttentionKind.STUCK

_TERMINAL_REASONS = frozenset({"run:completed", "embedded_run:ended"})
_TERMINAL_MARKERS = (
    "response.completed",
    "rawResponseItem/completed",
    "raw_response_item.completed",
    "output_item.done",
)


@dataclass(slots=True, kw_only=True)
class ActivitySnapshot:
    """What the classifier sees of a session's activity (events.md, "Activity snapshot").

    Not frozen: the monitor builds one per visited session, and a frozen dataclass pays an
    `object.__setattr__` per field for it."""

    active_work_kind: WorkKind | None = None
    has_active_embedded_run: bool | None = None
    active_tool_name: str | None = None
    active_tool_call_id: str | None = None
    active_tool_age_ms: int | None = None
    last_progress_age_ms: int | None = None
    last_progress_reason: str | None = None


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
    return AttentionResult(STUCK, reason, Classification.STALE_SESSION_STATE, None, True)


def classify_session_attention(
    *,
    state: SessionState | None,
    queue_depth: int,
    activity: ActivitySnapshot | None,
    stale_ms: int,
) -> AttentionResult:
    """The decision table of classifier.md: the first matching row wins."""
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
        return _stuck(Reason.QUEUED_WORK_WITHOUT_ACTIVE_RUN)
    if kind == "tool_call" and tool > stale_ms and lp > stale_ms:
        return AttentionResult(STALLED, Reason.BLOCKED_TOOL_CALL, Classification.BLOCKED_TOOL_CALL, kind, False)
    if queued and kind == "embedded_run" and is_terminal_progress_reason(activity.last_progress_reason):
        return AttentionResult(
            STALLED, Reason.QUEUED_BEHIND_TERMINAL_ACTIVE_WORK, Classification.STALLED_AGENT_RUN, kind, False
        )
    if kind is not None and lp > stale_ms:
        return AttentionResult(
            STALLED, Reason.ACTIVE_WORK_WITHOUT_PROGRESS, Classification.STALLED_AGENT_RUN, kind, False
        )
    if kind is not None:
        reason = Reason.QUEUED_BEHIND_ACTIVE_WORK if queued else Reason.ACTIVE_WORK
        return AttentionResult(LONG_RUNNING, reason, Classification.LONG_RUNNING, kind, False)
    # Row 6: runtimes that only send run.progress are not stuck while that progress is fresh.
    if progress_age is not None and progress_age <= stale_ms:
        reason = Reason.QUEUED_BEHIND_UNTRACKED_ACTIVE_PROGRESS if queued else Reason.UNTRACKED_ACTIVE_PROGRESS
        return AttentionResult(LONG_RUNNING, reason, Classification.LONG_RUNNING, None, False)
    return _stuck(Reason.QUEUED_WORK_WITHOUT_ACTIVE_RUN if queued else Reason.STALE_SESSION_STATE)
