"""Records built for tests, with defaults for the fields a test does not care about."""

from __future__ import annotations

from typing import Any

from app.outcomes import RecoveryOutcome, RecoveryRequest, outcome_from


def recovery_request(**fields: Any) -> RecoveryRequest:
    base: dict[str, Any] = {
        "gatewayId": "default", "sessionKey": None, "sessionId": None, "ageMs": 0, "queueDepth": 0,
        "expectedState": "idle", "stateGeneration": 0, "reason": "stale_session_state",
        "activeWorkKind": None, "allowActiveAbort": False, "requestedAt": 0,
    }
    return RecoveryRequest(**{**base, **fields})


def recovery_outcome(**fields: Any) -> RecoveryOutcome:
    return outcome_from(fields)
