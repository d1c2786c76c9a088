"""The vocabulary of recovery outcomes: what a gateway can answer, and how an answer is recorded.

Pure values and functions, shared by the store (which applies an outcome), the coordinator
(which asks for one) and the executors (which produce one).
"""

from __future__ import annotations

from typing import Any

MUTATING = frozenset({"aborted", "released"})

SKIPPED_IN_FLIGHT = {"status": "skipped", "action": "observe_only", "outcomeReason": "already_in_flight"}


def failed(reason: str, error: str | None = None) -> dict[str, Any]:
    outcome: dict[str, Any] = {"status": "failed", "action": "none", "outcomeReason": reason}
    if error is not None:
        outcome["error"] = error
    return outcome


def is_mutating(outcome: dict[str, Any]) -> bool:
    return outcome["status"] in MUTATING or (
        outcome["status"] == "noop" and outcome.get("outcomeReason") == "no_active_work"
    )


def completion(request: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """`{...request, status, action, outcomeReason?, released? (> 0 only), stale?}`."""
    entry = {**request, "status": outcome["status"], "action": outcome["action"]}
    if outcome.get("outcomeReason"):
        entry["outcomeReason"] = outcome["outcomeReason"]
    if (outcome.get("released") or 0) > 0:
        entry["released"] = outcome["released"]
    if outcome.get("error"):
        entry["error"] = outcome["error"]
    return entry
