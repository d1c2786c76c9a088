"""Every instrument, attribute key, log event name and histogram bucket (docs/telemetry.md).

This is the ONE module that spells them. Everything else refers to the constants below, and
the instrument list in docs/telemetry.md is generated from ``INSTRUMENTS``:

    python -m telemetry.instruments --markdown          # print the generated section
    python -m telemetry.instruments --write docs/telemetry.md   # refresh it in place

Names, units and attribute keys are OpenClaw's ``diagnostics-otel`` contract, so dashboards
built for the gateway's own exporter work unchanged against this service.

Why ~550 lines: it is one table (50 instruments with their units, attributes, buckets and
"produced when" text, and the log events), kept whole so that nothing else spells a name
(tests/e2e/test_telemetry_instruments.py checks that); the generator of its documentation sits
beside it because it only reads the table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from telemetry import prometheus

SCOPE_NAME = "openclaw"
NAME_PREFIX = "openclaw."  # what OPENCLAW_DIAG_METRIC_NAME_PREFIX replaces (telemetry/store.py)
DEFAULT_SERVICE_NAME = "openclaw-diagnostics"

Kind = Literal["counter", "histogram", "gauge"]
ValueType = Literal["int", "float"]

# --------------------------------------------------------------------------------------------
# Attribute keys (metric attributes: bounded vocabularies only; ids never)
# --------------------------------------------------------------------------------------------
GATEWAY = "openclaw.gateway"
STATE = "openclaw.state"
REASON = "openclaw.reason"
RESULT = "openclaw.result"  # verified | ineffective
ORIGIN = "openclaw.origin"  # automatic | operator
NEEDS_HUMAN = "openclaw.needs_human"  # true | false
MAINTENANCE = "openclaw.maintenance"  # true | false: the gateway is in an operator's maintenance window
STRUCTURE = "openclaw.structure"
ACTION = "openclaw.action"
STATUS = "openclaw.status"
ACTIVE_WORK_KIND = "openclaw.active_work_kind"
ATTENTION = "openclaw.attention"
LANE = "openclaw.lane"
CHANNEL = "openclaw.channel"
AGENT = "openclaw.agent"
TRIGGER = "openclaw.trigger"
ATTEMPT = "openclaw.attempt"
TOKEN = "openclaw.token"
CONTEXT = "openclaw.context"
PROVIDER = "openclaw.provider"
MODEL = "openclaw.model"
OUTCOME = "openclaw.outcome"
API = "openclaw.api"
TRANSPORT = "openclaw.transport"
ERROR_CATEGORY = "openclaw.errorCategory"
FAILURE_KIND = "openclaw.failureKind"
TOOL_NAME = "openclaw.toolName"
TOOL_SOURCE = "openclaw.tool.source"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
TOOL_OWNER = "openclaw.tool.owner"
TOOL_PARAMS_KIND = "openclaw.tool.params.kind"
DENIED_REASON = "openclaw.deniedReason"
LOOP_LEVEL = "openclaw.loop.level"
LOOP_ACTION = "openclaw.loop.action"
LOOP_DETECTOR = "openclaw.loop.detector"
LOOP_COUNT = "openclaw.loop.count"
LOOP_PAIRED_TOOL = "openclaw.loop.paired_tool"
WEBHOOK = "openclaw.webhook"
SOURCE = "openclaw.source"
DELIVERY_KIND = "openclaw.delivery.kind"
OBSERVATION_UNIT = "openclaw.model_call.observation_unit"
FAILOVER_TO_PROVIDER = "openclaw.failover.to_provider"
FAILOVER_TO_MODEL = "openclaw.failover.to_model"
FAILOVER_REASON = "openclaw.failover.reason"
FAILOVER_SUSPENDED = "openclaw.failover.suspended"
EVENT_TYPE = "openclaw.event_type"
SIGNAL = "openclaw.signal"
INSTRUMENT = "openclaw.instrument"
OVERFLOW = "openclaw.overflow"

# Fixed attribute values
OVERFLOW_ATTRIBUTES = {OVERFLOW: "true"}
UNKNOWN_VALUE = "unknown"
# what upstream's recorders write where an event lacks a field (extensions/diagnostics-otel in
# the public openclaw repository: normalizeDiagnosticValue's fallbacks; docs/telemetry.md)
NONE_VALUE, OTHER_VALUE, CORE_VALUE, TOOL_VALUE, REQUEST_VALUE = "none", "other", "core", "tool", "request"
OTHER_EVENT_TYPE = "other"
HEARTBEAT_CHANNEL = "heartbeat"
ACTION_ABORT = "abort"
ACTION_RECOVER = "recover"
TRUE = "true"
FALSE = "false"
GATEWAY_LIVE = "live"
GATEWAY_SILENT = "silent"
ATTENTION_NONE = "none"
CONTEXT_LIMIT = "limit"
CONTEXT_USED = "used"
# openclaw.token values, keyed by the model.usage `usage` field they come from (upstream's order)
TOKEN_KINDS: tuple[tuple[str, str], ...] = (
    ("input", "input"),
    ("output", "output"),
    ("cacheRead", "cache_read"),
    ("cacheWrite", "cache_write"),
    ("promptTokens", "prompt"),
    ("total", "total"),
)
SIGNALS = ("metrics", "logs", "traces")

# Attribute values must match this, else they are reported as `unknown` (docs/telemetry.md).
ATTRIBUTE_VALUE_PATTERN = r"[A-Za-z0-9_.:-]{1,120}"

# Event fields that identify one session, run, call or message: never metric attributes.
ID_FIELDS = frozenset(
    {
        "sessionKey",
        "sessionId",
        "runId",
        "callId",
        "toolCallId",
        "chatId",
        "messageId",
        "eventId",
        "workKey",
        "activeToolCallId",
    }
)

# --------------------------------------------------------------------------------------------
# Histogram bucket boundaries (explicit; SDK defaults stop at 10 s)
# --------------------------------------------------------------------------------------------
# Every upstream-named histogram's buckets are a superset of upstream's: the OpenTelemetry JS
# SDK's default boundaries (upstream sets no others for these), then ours above its last one,
# where durations and ages in minutes and hours would otherwise all land in +Inf. Cumulative
# buckets: each `le` of upstream's counts exactly what upstream's would (docs/telemetry.md).
JS_SDK_DEFAULT_BUCKETS: tuple[float, ...] = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
AGE_BUCKETS_MS: tuple[float, ...] = JS_SDK_DEFAULT_BUCKETS + (
    30e3, 60e3, 120e3, 300e3, 600e3, 1.8e6, 3.6e6, 7.2e6, 21.6e6, 86.4e6,
)
DURATION_BUCKETS_MS: tuple[float, ...] = JS_SDK_DEFAULT_BUCKETS + (30e3, 60e3, 120e3, 300e3, 600e3, 1.8e6, 3.6e6)
QUEUE_DEPTH_BUCKETS: tuple[float, ...] = JS_SDK_DEFAULT_BUCKETS
BYTES_BUCKETS: tuple[float, ...] = JS_SDK_DEFAULT_BUCKETS + (
    16384, 65536, 262144, 1048576, 4194304, 16777216,
)
# the two layouts upstream's exporter sets itself (AGENT_DURATION_MS_BUCKETS and
# CONTEXT_TOKENS_BUCKETS in its extensions/diagnostics-otel source), exactly
AGENT_DURATION_BUCKETS_MS: tuple[float, ...] = JS_SDK_DEFAULT_BUCKETS + (
    15e3, 20e3, 30e3, 45e3, 60e3, 120e3, 180e3, 240e3, 300e3, 600e3, 900e3, 1.8e6, 3.6e6,
)
TOKENS_BUCKETS: tuple[float, ...] = JS_SDK_DEFAULT_BUCKETS + (16e3, 32e3, 64e3, 128e3, 2e5, 4e5, 1e6, 2e6)
SCAN_BUCKETS_MS: tuple[float, ...] = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

# --------------------------------------------------------------------------------------------
# Log events and spans
# --------------------------------------------------------------------------------------------
EVENT_LONG_RUNNING = "openclaw.session.long_running"
EVENT_STALLED = "openclaw.session.stalled"
EVENT_STUCK = "openclaw.session.stuck"
EVENT_RECOVERY_REQUESTED = "openclaw.session.recovery.requested"
EVENT_RECOVERY_COMPLETED = "openclaw.session.recovery.completed"
EVENT_RECOVERY_VERIFIED = "openclaw.session.recovery.verified"
SPAN_STUCK = "openclaw.session.stuck"
EVENT_NAME_ATTRIBUTE = "event.name"
LOG_ATTRIBUTE_PREFIX = "openclaw."

ATTENTION_FIELDS: tuple[str, ...] = (
    "sessionKey", "sessionId", "gatewayId", "state", "ageMs", "queueDepth", "reason",
    "classification", "activeWorkKind", "lastProgressAgeMs", "lastProgressReason",
    "activeToolName", "activeToolCallId", "activeToolAgeMs", "terminalProgressStale",
    "gatewaySilent", "warmingUp", "classifierProfile",
)
RECOVERY_REQUESTED_FIELDS: tuple[str, ...] = (
    "sessionKey", "sessionId", "gatewayId", "state", "stateGeneration", "ageMs", "queueDepth",
    "reason", "activeWorkKind", "allowActiveAbort",
)
RECOVERY_COMPLETED_FIELDS: tuple[str, ...] = RECOVERY_REQUESTED_FIELDS + (
    "status", "action", "outcomeReason", "released", "stale",
)
RECOVERY_VERIFIED_FIELDS: tuple[str, ...] = (
    "sessionKey", "sessionId", "gatewayId", "result", "origin", "reason", "appliedAt",
)


@dataclass(frozen=True, slots=True)
class LogEventSpec:
    name: str
    severity: str
    fields: tuple[str, ...]
    produced_when: str


LOG_EVENTS: tuple[LogEventSpec, ...] = (
    LogEventSpec(EVENT_LONG_RUNNING, "INFO", ATTENTION_FIELDS, "the monitor reports session.long_running (not suppressed)"),
    LogEventSpec(EVENT_STALLED, "WARN", ATTENTION_FIELDS, "the monitor reports session.stalled (not suppressed)"),
    LogEventSpec(EVENT_STUCK, "WARN", ATTENTION_FIELDS, "the monitor reports session.stuck (not suppressed)"),
    LogEventSpec(EVENT_RECOVERY_REQUESTED, "INFO", RECOVERY_REQUESTED_FIELDS, "a recovery is requested"),
    LogEventSpec(
        EVENT_RECOVERY_COMPLETED,
        "INFO (WARN when status is failed)",
        RECOVERY_COMPLETED_FIELDS,
        "a recovery completes (any status, stale ones included)",
    ),
    LogEventSpec(
        EVENT_RECOVERY_VERIFIED,
        "INFO (WARN when ineffective)",
        RECOVERY_VERIFIED_FIELDS,
        "an applied recovery is verified or found ineffective",
    ),
)


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    gateway_scoped: bool = True  # carries openclaw.gateway (unless switched off)
    value_type: ValueType = "int"
    produced_when: str = ""

    @property
    def attribute_keys(self) -> tuple[str, ...]:
        """Every key this instrument may carry (openclaw.gateway first when scoped)."""
        return ((GATEWAY,) if self.gateway_scoped else ()) + self.attributes


_MODEL_CALL_ATTRS = (PROVIDER, MODEL, API, TRANSPORT, OBSERVATION_UNIT, ERROR_CATEGORY, FAILURE_KIND)
_USAGE_ATTRS = (CHANNEL, PROVIDER, MODEL)  # openclaw.tokens adds openclaw.agent

# -- the session contract ---------------------------------------------------------------------
SESSION_STATE = InstrumentSpec(
    "openclaw.session.state", "counter", "1", "Session state transitions.",
    (STATE, REASON), produced_when="a `session.state` event is applied; a recovery sets a session idle",
)
SESSION_STUCK = InstrumentSpec(
    "openclaw.session.stuck", "counter", "1", "Sessions reported stuck (reports that were not suppressed).",
    (STATE,), produced_when="the monitor reports `session.stuck`",
)
SESSION_STUCK_AGE = InstrumentSpec(
    "openclaw.session.stuck_age_ms", "histogram", "ms", "Age of sessions reported stuck.",
    (STATE,), AGE_BUCKETS_MS, value_type="float", produced_when="the monitor reports `session.stuck` (the attention age)",
)
SESSION_TURN_CREATED = InstrumentSpec(
    "openclaw.session.turn.created", "counter", "1", "Agent turns created.",
    (AGENT, CHANNEL, TRIGGER), produced_when="`session.turn.created`",
)
RECOVERY_REQUESTED = InstrumentSpec(
    "openclaw.session.recovery.requested", "counter", "1", "Stuck-session recoveries requested.",
    (STATE, ACTION, ACTIVE_WORK_KIND, REASON),
    produced_when="a recovery is requested (`openclaw.action` abort if allowActiveAbort else recover)",
)
RECOVERY_COMPLETED = InstrumentSpec(
    "openclaw.session.recovery.completed", "counter", "1", "Stuck-session recoveries completed.",
    (STATE, ACTION, STATUS, ACTIVE_WORK_KIND, REASON),
    produced_when="a recovery completes",
)
RECOVERY_AGE = InstrumentSpec(
    "openclaw.session.recovery.age_ms", "histogram", "ms", "Session age at recovery request and completion.",
    (STATE, ACTION, STATUS, ACTIVE_WORK_KIND, REASON), AGE_BUCKETS_MS, value_type="float",
    produced_when="both recovery events (the attributes of the matching counter)",
)
QUEUE_LANE_ENQUEUE = InstrumentSpec(
    "openclaw.queue.lane.enqueue", "counter", "1", "Command queue lane enqueues.",
    (LANE,), produced_when="`queue.lane.enqueue`",
)
QUEUE_LANE_DEQUEUE = InstrumentSpec(
    "openclaw.queue.lane.dequeue", "counter", "1", "Command queue lane dequeues.",
    (LANE,), produced_when="`queue.lane.dequeue`",
)
QUEUE_DEPTH = InstrumentSpec(
    "openclaw.queue.depth", "histogram", "1", "Queue depth on enqueue/dequeue and heartbeat.",
    (LANE, CHANNEL), QUEUE_DEPTH_BUCKETS,
    produced_when="lane events' `queueSize` (`openclaw.lane`); `diagnostic.heartbeat` `queued` (`openclaw.channel=heartbeat`)",
)
QUEUE_WAIT = InstrumentSpec(
    "openclaw.queue.wait_ms", "histogram", "ms", "Command queue wait time before execution.",
    (LANE,), DURATION_BUCKETS_MS, value_type="float", produced_when="`queue.lane.dequeue` `waitMs`",
)
RUN_ATTEMPT = InstrumentSpec(
    "openclaw.run.attempt", "counter", "1", "Agent run attempts.",
    (ATTEMPT,), produced_when="`run.attempt`",
)

# -- the rest of the gateway contract ---------------------------------------------------------
TOKENS = InstrumentSpec(
    "openclaw.tokens", "counter", "1", "Token usage by type.",
    (TOKEN,) + _USAGE_ATTRS + (AGENT,), value_type="float",
    produced_when="`model.usage` (one add per non-zero usage field)",
)
COST_USD = InstrumentSpec(
    "openclaw.cost.usd", "counter", "1", "Estimated model cost (USD).",
    _USAGE_ATTRS, value_type="float", produced_when="`model.usage` `costUsd`",
)
CONTEXT_TOKENS = InstrumentSpec(
    "openclaw.context.tokens", "histogram", "1", "Context window size and usage.",
    (CONTEXT,) + _USAGE_ATTRS, TOKENS_BUCKETS, value_type="float",
    produced_when="`model.usage` `context.limit` / `context.used`",
)
RUN_DURATION = InstrumentSpec(
    "openclaw.run.duration_ms", "histogram", "ms", "Agent run duration.",
    (CHANNEL, PROVIDER, MODEL), AGENT_DURATION_BUCKETS_MS, value_type="float",
    produced_when="`run.completed` and `model.usage` `durationMs`",
)
MODEL_CALL_DURATION = InstrumentSpec(
    "openclaw.model_call.duration_ms", "histogram", "ms", "Model call duration.",
    _MODEL_CALL_ATTRS, DURATION_BUCKETS_MS, value_type="float",
    produced_when="`model.call.completed` / `.error` `durationMs`",
)
MODEL_CALL_REQUEST_BYTES = InstrumentSpec(
    "openclaw.model_call.request_bytes", "histogram", "By", "Model call request payload size.",
    _MODEL_CALL_ATTRS, BYTES_BUCKETS, value_type="float",
    produced_when="`model.call.completed` / `.error` `requestPayloadBytes`",
)
MODEL_CALL_RESPONSE_BYTES = InstrumentSpec(
    "openclaw.model_call.response_bytes", "histogram", "By", "Model call response stream size.",
    _MODEL_CALL_ATTRS, BYTES_BUCKETS, value_type="float",
    produced_when="`model.call.completed` / `.error` `responseStreamBytes`",
)
MODEL_CALL_TTFB = InstrumentSpec(
    "openclaw.model_call.time_to_first_byte_ms", "histogram", "ms", "Model call time to first byte.",
    _MODEL_CALL_ATTRS, DURATION_BUCKETS_MS, value_type="float",
    produced_when="`model.call.completed` / `.error` `timeToFirstByteMs`",
)
MODEL_FAILOVER = InstrumentSpec(
    "openclaw.model.failover", "counter", "1", "Model failovers.",
    (PROVIDER, MODEL, FAILOVER_TO_PROVIDER, FAILOVER_TO_MODEL, FAILOVER_REASON, FAILOVER_SUSPENDED, LANE),
    produced_when="`model.failover` (`openclaw.provider`/`openclaw.model`: `fromProvider`/`fromModel`)",
)
TOOL_DURATION = InstrumentSpec(
    "openclaw.tool.execution.duration_ms", "histogram", "ms", "Tool execution duration.",
    (GEN_AI_TOOL_NAME, TOOL_NAME, TOOL_SOURCE, TOOL_OWNER, TOOL_PARAMS_KIND, ERROR_CATEGORY), DURATION_BUCKETS_MS,
    value_type="float",
    produced_when="`tool.execution.completed` / `.error` `durationMs`",
)
TOOL_BLOCKED = InstrumentSpec(
    "openclaw.tool.execution.blocked", "counter", "1", "Tool executions blocked.",
    (GEN_AI_TOOL_NAME, TOOL_NAME, TOOL_SOURCE, TOOL_OWNER, TOOL_PARAMS_KIND, DENIED_REASON),
    produced_when="`tool.execution.blocked`",
)
TOOL_LOOP = InstrumentSpec(
    "openclaw.tool.loop", "counter", "1", "Tool loops detected.",
    (TOOL_NAME, LOOP_LEVEL, LOOP_ACTION, LOOP_DETECTOR, LOOP_COUNT, LOOP_PAIRED_TOOL), produced_when="`tool.loop`",
)
WEBHOOK_RECEIVED = InstrumentSpec(
    "openclaw.webhook.received", "counter", "1", "Webhook requests received.",
    (CHANNEL, WEBHOOK), produced_when="`webhook.received` (`openclaw.webhook` = `updateType`)",
)
WEBHOOK_ERROR = InstrumentSpec(
    "openclaw.webhook.error", "counter", "1", "Webhook processing errors.",
    (CHANNEL, WEBHOOK), produced_when="`webhook.error`",
)
WEBHOOK_DURATION = InstrumentSpec(
    "openclaw.webhook.duration_ms", "histogram", "ms", "Webhook processing duration.",
    (CHANNEL, WEBHOOK), DURATION_BUCKETS_MS, value_type="float", produced_when="`webhook.processed` `durationMs`",
)
MESSAGE_QUEUED = InstrumentSpec(
    "openclaw.message.queued", "counter", "1", "Messages queued for processing.",
    (CHANNEL, SOURCE), produced_when="`message.queued`",
)
MESSAGE_RECEIVED = InstrumentSpec(
    "openclaw.message.received", "counter", "1", "Inbound messages received.",
    (CHANNEL, SOURCE), produced_when="`message.received`",
)
MESSAGE_PROCESSED = InstrumentSpec(
    "openclaw.message.processed", "counter", "1", "Messages processed by outcome.",
    (CHANNEL, OUTCOME), produced_when="`message.processed`",
)
MESSAGE_DURATION = InstrumentSpec(
    "openclaw.message.duration_ms", "histogram", "ms", "Message processing duration.",
    (CHANNEL, OUTCOME), DURATION_BUCKETS_MS, value_type="float", produced_when="`message.processed` `durationMs`",
)
MESSAGE_DISPATCH_STARTED = InstrumentSpec(
    "openclaw.message.dispatch.started", "counter", "1", "Reply dispatches started.",
    (CHANNEL, SOURCE), produced_when="`message.dispatch.started`",
)
MESSAGE_DISPATCH_COMPLETED = InstrumentSpec(
    "openclaw.message.dispatch.completed", "counter", "1", "Reply dispatches completed.",
    (CHANNEL, OUTCOME, REASON, SOURCE), produced_when="`message.dispatch.completed`",
)
MESSAGE_DISPATCH_DURATION = InstrumentSpec(
    "openclaw.message.dispatch.duration_ms", "histogram", "ms", "Reply dispatch duration.",
    (CHANNEL, OUTCOME, REASON, SOURCE), DURATION_BUCKETS_MS, value_type="float",
    produced_when="`message.dispatch.completed` `durationMs`",
)
MESSAGE_DELIVERY_STARTED = InstrumentSpec(
    "openclaw.message.delivery.started", "counter", "1", "Outbound deliveries started.",
    (CHANNEL, DELIVERY_KIND), produced_when="`message.delivery.started`",
)
MESSAGE_DELIVERY_DURATION = InstrumentSpec(
    "openclaw.message.delivery.duration_ms", "histogram", "ms", "Outbound delivery duration.",
    (CHANNEL, DELIVERY_KIND, OUTCOME, ERROR_CATEGORY), DURATION_BUCKETS_MS, value_type="float",
    produced_when="`message.delivery.completed` / `.error` `durationMs` (`openclaw.outcome` `completed` / `error` by event type)",
)

# -- the service's own instruments ------------------------------------------------------------
MONITOR_EVENTS = InstrumentSpec(
    "openclaw.monitor.events", "counter", "1", "Events received, by type and ingest outcome.",
    (EVENT_TYPE, OUTCOME),
    produced_when="every ingest request (`openclaw.event_type` = the known type, else `other`)",
)
MONITOR_SESSIONS = InstrumentSpec(
    "openclaw.monitor.sessions", "gauge", "{session}", "Tracked sessions by state and current attention.",
    (STATE, ATTENTION, REASON, NEEDS_HUMAN, MAINTENANCE), produced_when="observed at collection (the live picture)",
)
MONITOR_ATTENTION_AGE = InstrumentSpec(
    "openclaw.monitor.attention.oldest_age_ms", "gauge", "ms",
    "The longest attention age among the sessions under each attention and reason (since when).",
    (ATTENTION, REASON), produced_when="observed at collection (the live picture)",
)
MONITOR_GATEWAYS = InstrumentSpec(
    "openclaw.monitor.gateways", "gauge", "{gateway}", "Gateways heard from, live or silent.",
    (STATUS, MAINTENANCE), produced_when="observed at collection",
)
MONITOR_CLOCK_SKEW = InstrumentSpec(
    "openclaw.monitor.gateway.clock_skew_ms", "gauge", "ms", "Measured gateway clock skew (receive time - ts).",
    (), produced_when="observed at collection, per gateway",
)
MONITOR_SCAN_DURATION = InstrumentSpec(
    "openclaw.monitor.scan.duration_ms", "histogram", "ms", "Monitor scan pass duration.",
    (), SCAN_BUCKETS_MS, gateway_scoped=False, value_type="float", produced_when="every monitor pass",
)
MONITOR_SCAN_LAG = InstrumentSpec(
    "openclaw.monitor.scan.lag_ms", "histogram", "ms", "How late each monitor tick started.",
    (), SCAN_BUCKETS_MS, gateway_scoped=False, value_type="float", produced_when="every monitor pass",
)
MONITOR_SESSIONS_EVICTED = InstrumentSpec(
    "openclaw.monitor.sessions.evicted", "counter", "1", "Sessions evicted from the store.",
    (REASON,), gateway_scoped=False, produced_when="eviction (`openclaw.reason` ttl|cap)",
)
MONITOR_EXPORT_FAILURES = InstrumentSpec(
    "openclaw.monitor.export.failures", "counter", "1", "Failed OTLP exports.",
    (SIGNAL,), gateway_scoped=False, produced_when="an OTLP export fails (per signal, configured signals only)",
)
MONITOR_FORWARDER_DROPPED = InstrumentSpec(
    "openclaw.monitor.forwarder.dropped", "counter", "1", "Events the gateway-side forwarder dropped.",
    (), produced_when="increases of `forwarder.keepalive`'s cumulative `dropped`",
)
MONITOR_FORWARDER_QUEUED = InstrumentSpec(
    "openclaw.monitor.forwarder.queued", "gauge", "{event}", "Events queued in the gateway-side forwarder.",
    (), produced_when="observed at collection (the latest keepalive's `queued`)",
)
MONITOR_CLOCK_CLAMPED = InstrumentSpec(
    "openclaw.monitor.clock.clamped", "counter", "1", "Events whose ts was too far in the future.",
    (), produced_when="an event's `ts` is clamped to the receive time",
)
MONITOR_BOUNDED_EVICTED = InstrumentSpec(
    "openclaw.monitor.bounded.evicted", "counter", "1", "Entries dropped by a bound on a client-growable structure.",
    (STRUCTURE,), gateway_scoped=False,
    produced_when="a bounded structure drops its oldest entry (`openclaw.structure` gateway|run|tombstone)",
)
MONITOR_JOURNAL_REFUSED = InstrumentSpec(
    "openclaw.monitor.journal.refused", "counter", "1", "Ingest requests refused because the journal cannot commit.",
    (REASON,), gateway_scoped=False,
    produced_when="an ingest request is answered 503 (`openclaw.reason` journal_unavailable|journal_full)",
)
MONITOR_NOTIFY_FAILURES = InstrumentSpec(
    "openclaw.monitor.notify.failures", "counter", "1", "Notification deliveries that failed or were dropped.",
    (REASON,), gateway_scoped=False,
    produced_when="a notification target fails (`openclaw.reason` http_status|timeout|connection), a change is "
                  "given up after its retries (gave_up) or pushed out of a full queue (queue_full)",
)
MONITOR_RECOVERY_VERIFICATIONS = InstrumentSpec(
    "openclaw.monitor.recovery.verifications", "counter", "1",
    "Applied recoveries checked: did the gateway show that the session moved?",
    (RESULT, ORIGIN), produced_when="an applied recovery is verified (an event from the gateway after it) or "
                                    "ineffective (none within OPENCLAW_DIAG_RECOVERY_VERIFY_MS)",
)
MONITOR_RECOVERY_RELEASED_ITEMS = InstrumentSpec(
    "openclaw.monitor.recovery.released_items", "counter", "1",
    "Queued items completed recoveries released, as the gateway counted them.",
    (STATUS, ACTION),
    produced_when="a recovery completes with `released` > 0: what an `openclaw.released` label on the "
                  "completed counter used to tell (\"released, yet nothing released\"), kept off the "
                  "upstream-named instrument",
)
MONITOR_TELEMETRY_OVERFLOW = InstrumentSpec(
    "openclaw.monitor.telemetry.overflow", "counter", "1", "Measurements refused by the cardinality guard.",
    (INSTRUMENT,), gateway_scoped=False,
    produced_when="a measurement whose attribute set would exceed the per-instrument cap",
)

SESSION_CONTRACT: tuple[InstrumentSpec, ...] = (
    SESSION_STATE, SESSION_STUCK, SESSION_STUCK_AGE, SESSION_TURN_CREATED, RECOVERY_REQUESTED,
    RECOVERY_COMPLETED, RECOVERY_AGE, QUEUE_LANE_ENQUEUE, QUEUE_LANE_DEQUEUE, QUEUE_DEPTH,
    QUEUE_WAIT, RUN_ATTEMPT,
)
GATEWAY_CONTRACT: tuple[InstrumentSpec, ...] = (
    TOKENS, COST_USD, CONTEXT_TOKENS, RUN_DURATION, MODEL_CALL_DURATION, MODEL_CALL_REQUEST_BYTES,
    MODEL_CALL_RESPONSE_BYTES, MODEL_CALL_TTFB, MODEL_FAILOVER, TOOL_DURATION, TOOL_BLOCKED,
    TOOL_LOOP, WEBHOOK_RECEIVED, WEBHOOK_ERROR, WEBHOOK_DURATION, MESSAGE_QUEUED, MESSAGE_RECEIVED,
    MESSAGE_PROCESSED, MESSAGE_DURATION, MESSAGE_DISPATCH_STARTED, MESSAGE_DISPATCH_COMPLETED,
    MESSAGE_DISPATCH_DURATION, MESSAGE_DELIVERY_STARTED, MESSAGE_DELIVERY_DURATION,
)
MONITOR_INSTRUMENTS: tuple[InstrumentSpec, ...] = (
    MONITOR_EVENTS, MONITOR_SESSIONS, MONITOR_ATTENTION_AGE, MONITOR_GATEWAYS, MONITOR_CLOCK_SKEW, MONITOR_SCAN_DURATION,
    MONITOR_SCAN_LAG, MONITOR_SESSIONS_EVICTED, MONITOR_EXPORT_FAILURES, MONITOR_FORWARDER_DROPPED,
    MONITOR_FORWARDER_QUEUED, MONITOR_CLOCK_CLAMPED, MONITOR_TELEMETRY_OVERFLOW, MONITOR_JOURNAL_REFUSED,
    MONITOR_BOUNDED_EVICTED, MONITOR_RECOVERY_RELEASED_ITEMS, MONITOR_NOTIFY_FAILURES,
    MONITOR_RECOVERY_VERIFICATIONS,
)
INSTRUMENTS: tuple[InstrumentSpec, ...] = SESSION_CONTRACT + GATEWAY_CONTRACT + MONITOR_INSTRUMENTS
BY_NAME: dict[str, InstrumentSpec] = {spec.name: spec for spec in INSTRUMENTS}

# --------------------------------------------------------------------------------------------
# Prometheus names: telemetry/prometheus.py's translation (the one /metrics uses), for the docs
# and the tests
# --------------------------------------------------------------------------------------------
def prometheus_name(spec: InstrumentSpec) -> str:
    """The series name family in Prometheus: counters `_total`, histograms `_bucket/_sum/_count`."""
    return prometheus.full_name(spec.name, spec.unit, counter=spec.kind == "counter")


def prometheus_label(key: str) -> str:
    return prometheus.label_name(key)


def prometheus_series(spec: InstrumentSpec) -> tuple[str, ...]:
    base = prometheus_name(spec)
    if spec.kind == "histogram":
        return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
    return (base,)


# --------------------------------------------------------------------------------------------
# Documentation (generated; docs/telemetry.md embeds this between the markers)
# --------------------------------------------------------------------------------------------
BEGIN_MARKER = "<!-- BEGIN GENERATED: python -m telemetry.instruments --markdown -->"
END_MARKER = "<!-- END GENERATED -->"

_KIND_LABEL = {"counter": "counter", "histogram": "histogram", "gauge": "observable gauge"}
_BUCKET_NAMES = {
    AGE_BUCKETS_MS: "ages",
    DURATION_BUCKETS_MS: "durations",
    AGENT_DURATION_BUCKETS_MS: "agent durations",
    QUEUE_DEPTH_BUCKETS: "queue depth",
    BYTES_BUCKETS: "bytes",
    TOKENS_BUCKETS: "tokens",
    SCAN_BUCKETS_MS: "scan",
}


def _fmt_bound(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _table(specs: Iterable[InstrumentSpec]) -> list[str]:
    lines = [
        "| instrument | type | unit | attributes | buckets | Prometheus | produced when |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in specs:
        attrs = ", ".join(f"`{key}`" for key in spec.attribute_keys) or "—"
        buckets = _BUCKET_NAMES.get(spec.buckets, "") if spec.buckets else ""
        prom = " ".join(f"`{name}`" for name in prometheus_series(spec))
        lines.append(
            f"| `{spec.name}` | {_KIND_LABEL[spec.kind]} | `{spec.unit}` | {attrs} | {buckets} | {prom} "
            f"| {spec.produced_when} |"
        )
    return lines


def markdown() -> str:
    """The generated instrument reference (docs/telemetry.md embeds it verbatim)."""
    out = [BEGIN_MARKER, "", "### The session contract", ""]
    out += _table(SESSION_CONTRACT)
    out += ["", "### The rest of the gateway contract", ""]
    out += _table(GATEWAY_CONTRACT)
    out += ["", "### The service's own instruments", ""]
    out += _table(MONITOR_INSTRUMENTS)
    out += ["", "### Histogram buckets", "", "| buckets | boundaries |", "|---|---|"]
    for bounds, label in _BUCKET_NAMES.items():
        out.append(f"| {label} | {', '.join(_fmt_bound(b) for b in bounds)} |")
    out += ["", "### Log events (OTLP logs, scope `openclaw`)", ""]
    out += ["| event name | severity | attributes (`openclaw.<field>`) | produced when |", "|---|---|---|---|"]
    for event in LOG_EVENTS:
        fields = ", ".join(event.fields)
        out.append(f"| `{event.name}` | {event.severity} | {fields} | {event.produced_when} |")
    out += ["", END_MARKER]
    return "\n".join(out) + "\n"


def splice(document: str, generated: str | None = None) -> str:
    """`document` with the text between the markers replaced by the generated section."""
    generated = markdown() if generated is None else generated
    start = document.index(BEGIN_MARKER)
    end = document.index(END_MARKER, start) + len(END_MARKER)
    rest = document[end:]
    if rest.startswith("\n"):
        rest = rest[1:]
    return document[:start] + generated + rest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    if len(args) == 2 and args[0] == "--write":
        with open(args[1], encoding="utf-8") as handle:
            text = handle.read()
        with open(args[1], "w", encoding="utf-8") as handle:
            handle.write(splice(text))
        return 0
    if args[:1] == ["--list"]:
        for spec in INSTRUMENTS:
            sys.stdout.write(f"{spec.name}\t{spec.kind}\t{spec.unit}\t{','.join(spec.attribute_keys)}\n")
        return 0
    sys.stderr.write("usage: python -m telemetry.instruments --markdown | --list | --write FILE\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
