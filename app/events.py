"""The inbound event vocabulary (README, "Event vocabulary").

One typed msgspec struct carries every field the service reads from any event type; the sets
below say what each type is for. Decoding a request body into events is app/decoding.py.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MIN_TS = 946_684_800_000  # 2000-01-01T00:00:00Z
INT64_MAX = 2**63 - 1

Ts = Annotated[int, msgspec.Meta(ge=MIN_TS, le=INT64_MAX)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Depth = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
Amount = Annotated[float, msgspec.Meta(ge=0)]
Str = Annotated[str, msgspec.Meta(max_length=512)]
GatewayStr = Annotated[str, msgspec.Meta(max_length=128)]
EventIdStr = Annotated[str, msgspec.Meta(max_length=256)]


class Usage(msgspec.Struct, omit_defaults=True):
    input: Amount | None = None
    output: Amount | None = None
    cacheRead: Amount | None = None
    cacheWrite: Amount | None = None
    promptTokens: Amount | None = None
    total: Amount | None = None


class ContextSize(msgspec.Struct, omit_defaults=True):
    limit: Amount | None = None
    used: Amount | None = None


class ParamsSummary(msgspec.Struct, omit_defaults=True):
    """A tool call's parameters, summarised by the gateway: their JSON kind (and length)."""

    kind: Str | None = None
    length: Count | None = None


class Event(msgspec.Struct, omit_defaults=True):
    """Every field any event type may carry that the service acts on. Unknown fields are skipped."""

    type: Str
    ts: Ts | None = None
    seq: Seq | None = None
    eventId: EventIdStr | None = None
    gatewayId: GatewayStr | None = None
    sessionKey: Str | None = None
    sessionId: Str | None = None
    runId: Str | None = None
    # session state
    state: Str | None = None
    prevState: Str | None = None
    reason: Str | None = None
    queueDepth: Depth | None = None
    source: Str | None = None
    channel: Str | None = None
    # activity
    toolName: Str | None = None
    toolCallId: Str | None = None
    toolSource: Str | None = None
    toolOwner: Str | None = None
    paramsSummary: ParamsSummary | None = None
    deniedReason: Str | None = None
    # tool.loop
    level: Str | None = None
    detector: Str | None = None
    count: Count | None = None
    pairedToolName: Str | None = None
    provider: Str | None = None
    model: Str | None = None
    callId: Str | None = None
    workKey: Str | None = None
    clearRunActivity: bool | None = None
    outcome: Str | None = None
    trigger: Str | None = None
    agentId: Str | None = None
    api: Str | None = None
    transport: Str | None = None
    errorCategory: Str | None = None
    failureKind: Str | None = None
    # metrics
    durationMs: Amount | None = None
    requestPayloadBytes: Amount | None = None
    responseStreamBytes: Amount | None = None
    timeToFirstByteMs: Amount | None = None
    waitMs: Amount | None = None
    usage: Usage | None = None
    context: ContextSize | None = None
    costUsd: Amount | None = None
    lane: Str | None = None
    queueSize: Count | None = None
    queued: Count | None = None
    dropped: Count | None = None
    attempt: Count | None = None
    updateType: Str | None = None
    deliveryKind: Str | None = None
    gatewayVersion: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # forwarder.keepalive
    observationUnit: Str | None = None
    # model.failover
    fromProvider: Str | None = None
    fromModel: Str | None = None
    toProvider: Str | None = None
    toModel: Str | None = None
    suspended: bool | None = None
    phase: Str | None = None
    # the gateway's own verdicts
    ageMs: Amount | None = None
    classification: Str | None = None
    activeWorkKind: Str | None = None
    lastProgressAgeMs: Amount | None = None
    lastProgressReason: Str | None = None
    status: Str | None = None
    action: Str | None = None
    outcomeReason: Str | None = None
    released: Count | None = None


SESSION_STATE_TYPES = frozenset({"message.queued", "session.state", "session.progress"})
ACTIVITY_TYPES = frozenset(
    {
        "tool.execution.started",
        "tool.execution.completed",
        "tool.execution.error",
        "tool.execution.blocked",
        "model.call.started",
        "model.call.completed",
        "model.call.error",
        "run.progress",
        "run.started",
        "run.completed",
        "embedded_run.started",
        "embedded_run.ended",
    }
)
SESSION_SCOPED_TYPES = SESSION_STATE_TYPES | ACTIVITY_TYPES
METRICS_ONLY_TYPES = frozenset(
    {
        "model.usage",
        "model.failover",
        "webhook.received",
        "webhook.processed",
        "webhook.error",
        "message.received",
        "message.processed",
        "message.dispatch.started",
        "message.dispatch.completed",
        "message.delivery.started",
        "message.delivery.completed",
        "message.delivery.error",
        "queue.lane.enqueue",
        "queue.lane.dequeue",
        "session.turn.created",
        "run.attempt",
        "tool.loop",
        "diagnostic.heartbeat",
        "harness.run.started",
        "harness.run.completed",
        "harness.run.error",
        "run.execution_phase",
    }
)
GATEWAY_VERDICT_TYPES = frozenset(
    {"session.long_running", "session.stalled", "session.stuck"}
)
GATEWAY_RECOVERY_TYPES = frozenset({"session.recovery.requested", "session.recovery.completed"})
KEEPALIVE_TYPE = "forwarder.keepalive"
KNOWN_TYPES = (
    SESSION_SCOPED_TYPES
    | METRICS_ONLY_TYPES
    | GATEWAY_VERDICT_TYPES
    | GATEWAY_RECOVERY_TYPES
    | frozenset({KEEPALIVE_TYPE})
)

SESSION_STATES = ("idle", "processing", "waiting")

# Fields each known type must carry (README, "Event vocabulary").
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "message.queued": ("source",),
    "session.state": ("state",),
    "tool.execution.started": ("toolName",),
    "tool.execution.completed": ("toolName",),
    "tool.execution.error": ("toolName",),
    "tool.execution.blocked": ("toolName",),
    "model.call.started": ("provider", "model"),
    "model.call.completed": ("provider", "model"),
    "model.call.error": ("provider", "model"),
    "run.progress": ("reason",),
    "run.started": ("runId",),
    "run.completed": ("runId",),
}


_stored_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return msgspec.json.encode(event)


def decode_stored_event(data: bytes) -> Event:
    return _stored_decoder.decode(data)
