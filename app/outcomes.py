"""Recovery requests and outcomes as typed records, and how an answer is recorded.

The field names are the webhook contract's (README, "Recovery webhook contract"), so a record
is its own wire form: `as_json()` for the webhook body, telemetry and the API's history. The
records also travel through the journal and checkpoints as msgpack maps with these names, which
is what release 0.1 wrote as dicts: `request_from` and `outcome_from` read either.

Pure values and functions, shared by the monitor (which builds a request), the store (which
applies an outcome), the coordinator (which asks for one) and the executors (which produce one).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

MUTATING = frozenset({"aborted", "released"})

Status = Literal["aborted", "released", "skipped", "noop", "failed"]
Action = Literal["abort_embedded_run", "release_lane", "observe_only", "keep_lane", "none"]
Count = Annotated[int, msgspec.Meta(ge=0)]
# the actions each status may come with
ACTIONS: dict[str, frozenset[str]] = {
    "aborted": frozenset({"abort_embedded_run"}),
    "released": frozenset({"release_lane"}),
    "skipped": frozenset({"observe_only", "keep_lane"}),
    "noop": frozenset({"none"}),
    "failed": frozenset({"none"}),
}


class RecoveryRequest(msgspec.Struct, frozen=True):
    """What the monitor asks the gateway to do for one stuck session."""

    gatewayId: str
    sessionKey: str | None
    sessionId: str | None
    ageMs: int
    queueDepth: int
    expectedState: str
    stateGeneration: int
    reason: str
    activeWorkKind: str | None
    allowActiveAbort: bool
    requestedAt: int
    origin: str = "automatic"  # automatic (the monitor) | operator (an action, app/http/actions.py)

    def as_json(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


class RecoveryOutcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a gateway answered, or what the service recorded in its place (`failed`). Read back
    from the journal unchecked: what a gateway may send is checked by `GatewayAnswer`."""

    status: str
    action: str
    outcomeReason: str | None = None
    released: int | None = None
    queuedCount: int | None = None
    aborted: bool | None = None
    drained: bool | None = None
    forceCleared: bool | None = None
    error: str | None = None
    activeWorkKind: str | None = None  # the work the gateway found (2026.9 reports it)

    @property
    def mutating(self) -> bool:
        return self.status in MUTATING or (self.status == "noop" and self.outcomeReason == "no_active_work")


class GatewayAnswer(RecoveryOutcome, frozen=True, omit_defaults=True, forbid_unknown_fields=False):
    """The webhook's 200 body as a gateway may send it (app/recovery.py, WebhookExecutor)."""

    status: Status
    action: Action
    outcomeReason: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    released: Count | None = None
    queuedCount: Count | None = None
    error: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    activeWorkKind: Literal["embedded_run", "model_call", "tool_call"] | None = None


SKIPPED_IN_FLIGHT = RecoveryOutcome("skipped", "observe_only", "already_in_flight")
NO_RECOVERY_TARGET = RecoveryOutcome("skipped", "observe_only", "no_recovery_target")


def request_from(value: RecoveryRequest | dict[str, Any]) -> RecoveryRequest:
    return value if isinstance(value, RecoveryRequest) else msgspec.convert(value, RecoveryRequest)


def outcome_from(value: RecoveryOutcome | dict[str, Any]) -> RecoveryOutcome:
    return value if isinstance(value, RecoveryOutcome) else msgspec.convert(value, RecoveryOutcome)


def failed(reason: str, error: str | None = None) -> RecoveryOutcome:
    return RecoveryOutcome("failed", "none", reason, error=error)


def completion(request: RecoveryRequest, outcome: RecoveryOutcome) -> dict[str, Any]:
    """`{...request, status, action, outcomeReason?, released? (> 0 only), error?}`: the completed
    event's fields (docs/telemetry.md) and the history entry's."""
    entry = {**request.as_json(), "status": outcome.status, "action": outcome.action}
    if outcome.outcomeReason:
        entry["outcomeReason"] = outcome.outcomeReason
    if (outcome.released or 0) > 0:
        entry["released"] = outcome.released
    if outcome.error:
        entry["error"] = outcome.error
    return entry
