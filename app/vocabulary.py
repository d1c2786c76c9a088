"""The words the service decides in: attention kinds, their reasons and classifications.

One place for them, so that the classifier, the monitor, the API, the page, the CLI and
telemetry spell them the same way. The members are `StrEnum`s: equal to (and hashed like) their
string values, so events, checkpoints and JSON carry plain strings, and a plain string read back
from any of them finds its entry in the tables below.
"""

from __future__ import annotations

import re
from enum import StrEnum


class AttentionKind(StrEnum):
    """The attention event types OpenClaw emits, in the order of their severity (worst last)."""

    LONG_RUNNING = "session.long_running"
    STALLED = "session.stalled"
    STUCK = "session.stuck"


class Reason(StrEnum):
    """Why the classifier chose its kind (the decision table in app/classifier.py)."""

    QUEUED_WORK_WITHOUT_ACTIVE_RUN = "queued_work_without_active_run"
    STALE_SESSION_STATE = "stale_session_state"
    BLOCKED_TOOL_CALL = "blocked_tool_call"
    QUEUED_BEHIND_TERMINAL_ACTIVE_WORK = "queued_behind_terminal_active_work"
    ACTIVE_WORK_WITHOUT_PROGRESS = "active_work_without_progress"
    QUEUED_BEHIND_ACTIVE_WORK = "queued_behind_active_work"
    ACTIVE_WORK = "active_work"
    QUEUED_BEHIND_UNTRACKED_ACTIVE_PROGRESS = "queued_behind_untracked_active_progress"
    UNTRACKED_ACTIVE_PROGRESS = "untracked_active_progress"
    # the openclaw-2026.9 profile's rows (app/classifier.py, classify_session_attention_2026_9)
    PROVIDER_RETRY_WAIT = "provider_retry_wait"
    RUNTIME_OWNED_WAIT = "runtime_owned_wait"
    REPEATED_MODEL_REQUESTS_WITHOUT_PROGRESS = "repeated_model_requests_without_progress"
    ACTIVE_MODEL_CALL_WITHOUT_PROGRESS = "active_model_call_without_progress"


class Classification(StrEnum):
    LONG_RUNNING = "long_running"
    BLOCKED_TOOL_CALL = "blocked_tool_call"
    STALLED_AGENT_RUN = "stalled_agent_run"
    STALE_SESSION_STATE = "stale_session_state"


# Most severe first: listings sort by it.
SEVERITY: dict[str, int] = {AttentionKind.STUCK: 0, AttentionKind.STALLED: 1, AttentionKind.LONG_RUNNING: 2}

# The short name: the API's `?attention=` filter, telemetry's `openclaw.attention` value, the CLI.
LABEL: dict[str, str] = {kind: kind.value.removeprefix("session.") for kind in AttentionKind}
KIND_OF_LABEL: dict[str, AttentionKind] = {label: AttentionKind(kind) for kind, label in LABEL.items()}

# For people: the status page's badges.
TITLE: dict[str, str] = {AttentionKind.STUCK: "Stuck", AttentionKind.STALLED: "Stalled",
                         AttentionKind.LONG_RUNNING: "Long-running"}


# -- classifier profiles (app/classifier.py): the seed table, or the one of the gateways in the field
SEED, OPENCLAW_2026_9, AUTO = "seed", "openclaw-2026.9", "auto"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def profile_for(setting: str, gateway_version: str | None) -> str:
    """The profile a gateway's sessions are classified with. `auto`: `openclaw-2026.9` for a
    gateway that reports version 2026.9 or later (its forwarder's keepalive), else `seed`."""
    if setting != AUTO:
        return setting
    match = _VERSION.match(gateway_version or "")
    if match and (int(match.group(1)), int(match.group(2))) >= (2026, 9):
        return OPENCLAW_2026_9
    return SEED


# -- what changes (app/changes.py): the change stream's and the notifier's event names
ATTENTION_OPENED, ATTENTION_CHANGED, ATTENTION_CLEARED = "attention.opened", "attention.changed", "attention.cleared"
RECOVERY_REQUESTED, RECOVERY_COMPLETED = "recovery.requested", "recovery.completed"
RECOVERY_VERIFIED, RECOVERY_INEFFECTIVE = "recovery.verified", "recovery.ineffective"
SESSION_NEEDS_HUMAN = "session.needs_human"
GATEWAY_SILENT, GATEWAY_BACK = "gateway.silent", "gateway.back"
MAINTENANCE_BEGAN, MAINTENANCE_ENDED = "maintenance.began", "maintenance.ended"
CHANGE_EVENTS = (ATTENTION_OPENED, ATTENTION_CHANGED, ATTENTION_CLEARED, RECOVERY_REQUESTED, RECOVERY_COMPLETED,
                 RECOVERY_VERIFIED, RECOVERY_INEFFECTIVE, SESSION_NEEDS_HUMAN, GATEWAY_SILENT, GATEWAY_BACK,
                 MAINTENANCE_BEGAN, MAINTENANCE_ENDED)


# -- closing the loop (app/monitor.py): what became of an applied recovery
VERIFIED, INEFFECTIVE = "verified", "ineffective"
BUDGET_SPENT, INEFFECTIVE_TWICE = "budget_spent", "ineffective_twice"  # why a session needs a human
