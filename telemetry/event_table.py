"""Which instruments each gateway event feeds, as one table (docs/telemetry.md, "produced when").

Each rule names the event fields that become attributes (``openclaw.gateway`` is added to all
of them), the counters it adds 1 to, and the histograms it records a field into when the field
is present. ``model.usage`` is the one event that needs code (a point per non-zero usage field).

``handlers(store)`` compiles the table once into one function per event type: the hot path is
an ``attrgetter``, a tuple and, per instrument, a cache lookup and an add (telemetry/store.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from telemetry import instruments as ins
from telemetry.instruments import InstrumentSpec
from telemetry.store import MetricStore, normalise_lane, normalise_value

Handler = Callable[[Any, Any], None]  # (event, gateway attribute value or None)


@dataclass(frozen=True, slots=True)
class Rule:
    attributes: tuple[tuple[str, str], ...]  # (attribute key, event field)
    counters: tuple[InstrumentSpec, ...] = ()
    histograms: tuple[tuple[InstrumentSpec, str], ...] = ()  # (instrument, event field measured)
    fixed: tuple[tuple[str, str], ...] = ()  # attributes with a constant value
    # (attribute key, value) written where the event lacks the field or its value is not a
    # low-cardinality one: upstream's fallbacks; an attribute without one is left out
    defaults: tuple[tuple[str, str], ...] = ()


def _keys(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return pairs


_CHANNEL = (ins.CHANNEL, "channel")
_OUTCOME = (ins.OUTCOME, "outcome")
_ERROR = (ins.ERROR_CATEGORY, "errorCategory")
_U = ins.UNKNOWN_VALUE
# upstream's fallbacks, by the recorders that write them
_CHANNEL_SOURCE_DEFAULTS = ((ins.CHANNEL, _U), (ins.SOURCE, _U))
_ERROR_DEFAULT = ((ins.ERROR_CATEGORY, ins.OTHER_VALUE),)
_TOOL_DEFAULTS = ((ins.TOOL_SOURCE, ins.CORE_VALUE),)
_MODEL_CALL_DEFAULTS = ((ins.API, _U), (ins.TRANSPORT, _U), (ins.OBSERVATION_UNIT, ins.REQUEST_VALUE))
_WEBHOOK_DEFAULTS = ((ins.CHANNEL, _U), (ins.WEBHOOK, _U))
_DELIVERY_DEFAULTS = ((ins.CHANNEL, _U), (ins.DELIVERY_KIND, ins.OTHER_VALUE))
_TOOL = _keys((ins.GEN_AI_TOOL_NAME, "toolName"), (ins.TOOL_NAME, "toolName"), (ins.TOOL_SOURCE, "toolSource"),
              (ins.TOOL_OWNER, "toolOwner"), (ins.TOOL_PARAMS_KIND, "paramsSummary.kind"))
_WEBHOOK = _keys(_CHANNEL, (ins.WEBHOOK, "updateType"))
_MODEL_CALL = _keys((ins.PROVIDER, "provider"), (ins.MODEL, "model"), (ins.API, "api"), (ins.TRANSPORT, "transport"),
                    (ins.OBSERVATION_UNIT, "observationUnit"))
_MODEL_CALL_HISTOGRAMS = (
    (ins.MODEL_CALL_DURATION, "durationMs"),
    (ins.MODEL_CALL_REQUEST_BYTES, "requestPayloadBytes"),
    (ins.MODEL_CALL_RESPONSE_BYTES, "responseStreamBytes"),
    (ins.MODEL_CALL_TTFB, "timeToFirstByteMs"),
)
_DELIVERY = _keys(_CHANNEL, (ins.DELIVERY_KIND, "deliveryKind"))  # then the outcome: by event type

RULES: dict[str, Rule] = {
    # no openclaw.queue.depth point from its queueDepth: the exact session contract (docs/telemetry.md)
    # and the 2026.9.6 docs give that histogram a lane or channel=heartbeat only
    "message.queued": Rule(
        _keys(_CHANNEL, (ins.SOURCE, "source")), counters=(ins.MESSAGE_QUEUED,), defaults=_CHANNEL_SOURCE_DEFAULTS,
    ),
    "session.turn.created": Rule(
        _keys((ins.AGENT, "agentId"), _CHANNEL, (ins.TRIGGER, "trigger")), counters=(ins.SESSION_TURN_CREATED,),
        defaults=((ins.AGENT, _U), (ins.CHANNEL, _U)),
    ),
    "queue.lane.enqueue": Rule(
        _keys((ins.LANE, "lane")), counters=(ins.QUEUE_LANE_ENQUEUE,), histograms=((ins.QUEUE_DEPTH, "queueSize"),),
        defaults=((ins.LANE, _U),),
    ),
    "queue.lane.dequeue": Rule(
        _keys((ins.LANE, "lane")),
        counters=(ins.QUEUE_LANE_DEQUEUE,),
        histograms=((ins.QUEUE_DEPTH, "queueSize"), (ins.QUEUE_WAIT, "waitMs")),
        defaults=((ins.LANE, _U),),
    ),
    "diagnostic.heartbeat": Rule(
        (), histograms=((ins.QUEUE_DEPTH, "queued"),), fixed=((ins.CHANNEL, ins.HEARTBEAT_CHANNEL),)
    ),
    "run.attempt": Rule(_keys((ins.ATTEMPT, "attempt")), counters=(ins.RUN_ATTEMPT,)),
    "run.completed": Rule(
        _keys(_CHANNEL, (ins.PROVIDER, "provider"), (ins.MODEL, "model")),
        histograms=((ins.RUN_DURATION, "durationMs"),),
        defaults=((ins.PROVIDER, _U), (ins.MODEL, _U)),  # the channel only when the run has one
    ),
    "model.call.completed": Rule(_MODEL_CALL, histograms=_MODEL_CALL_HISTOGRAMS, defaults=_MODEL_CALL_DEFAULTS),
    "model.call.error": Rule(
        _MODEL_CALL + (_ERROR, (ins.FAILURE_KIND, "failureKind")), histograms=_MODEL_CALL_HISTOGRAMS,
        defaults=_MODEL_CALL_DEFAULTS + _ERROR_DEFAULT,
    ),
    "model.failover": Rule(
        _keys((ins.PROVIDER, "fromProvider"), (ins.MODEL, "fromModel"), (ins.FAILOVER_TO_PROVIDER, "toProvider"),
              (ins.FAILOVER_TO_MODEL, "toModel"), (ins.FAILOVER_REASON, "reason"),
              (ins.FAILOVER_SUSPENDED, "suspended"), (ins.LANE, "lane")),
        counters=(ins.MODEL_FAILOVER,),
    ),
    "tool.execution.completed": Rule(_TOOL, histograms=((ins.TOOL_DURATION, "durationMs"),), defaults=_TOOL_DEFAULTS),
    "tool.execution.error": Rule(
        _TOOL + (_ERROR,), histograms=((ins.TOOL_DURATION, "durationMs"),), defaults=_TOOL_DEFAULTS + _ERROR_DEFAULT
    ),
    "tool.execution.blocked": Rule(
        _TOOL + ((ins.DENIED_REASON, "deniedReason"),), counters=(ins.TOOL_BLOCKED,),
        defaults=_TOOL_DEFAULTS + ((ins.DENIED_REASON, ins.OTHER_VALUE),),
    ),
    "tool.loop": Rule(
        _keys((ins.TOOL_NAME, "toolName"), (ins.LOOP_LEVEL, "level"), (ins.LOOP_ACTION, "action"),
              (ins.LOOP_DETECTOR, "detector"), (ins.LOOP_COUNT, "count"), (ins.LOOP_PAIRED_TOOL, "pairedToolName")),
        counters=(ins.TOOL_LOOP,),
        defaults=((ins.TOOL_NAME, ins.TOOL_VALUE),),  # the paired tool only when there is one
    ),
    "webhook.received": Rule(_WEBHOOK, counters=(ins.WEBHOOK_RECEIVED,), defaults=_WEBHOOK_DEFAULTS),
    "webhook.processed": Rule(
        _WEBHOOK, histograms=((ins.WEBHOOK_DURATION, "durationMs"),), defaults=_WEBHOOK_DEFAULTS
    ),
    "webhook.error": Rule(_WEBHOOK, counters=(ins.WEBHOOK_ERROR,), defaults=_WEBHOOK_DEFAULTS),
    "message.received": Rule(
        _keys(_CHANNEL, (ins.SOURCE, "source")), counters=(ins.MESSAGE_RECEIVED,), defaults=_CHANNEL_SOURCE_DEFAULTS
    ),
    "message.processed": Rule(
        _keys(_CHANNEL, _OUTCOME), counters=(ins.MESSAGE_PROCESSED,), histograms=((ins.MESSAGE_DURATION, "durationMs"),),
        defaults=((ins.CHANNEL, _U), (ins.OUTCOME, _U)),
    ),
    "message.dispatch.started": Rule(
        _keys(_CHANNEL, (ins.SOURCE, "source")), counters=(ins.MESSAGE_DISPATCH_STARTED,),
        defaults=_CHANNEL_SOURCE_DEFAULTS,
    ),
    "message.dispatch.completed": Rule(
        _keys(_CHANNEL, _OUTCOME, (ins.REASON, "reason"), (ins.SOURCE, "source")),
        counters=(ins.MESSAGE_DISPATCH_COMPLETED,),
        histograms=((ins.MESSAGE_DISPATCH_DURATION, "durationMs"),),
        defaults=_CHANNEL_SOURCE_DEFAULTS + ((ins.REASON, ins.NONE_VALUE),),
    ),
    "message.delivery.started": Rule(
        _keys(_CHANNEL, (ins.DELIVERY_KIND, "deliveryKind")), counters=(ins.MESSAGE_DELIVERY_STARTED,),
        defaults=_DELIVERY_DEFAULTS,
    ),
    "message.delivery.completed": Rule(
        _DELIVERY, histograms=((ins.MESSAGE_DELIVERY_DURATION, "durationMs"),), fixed=((ins.OUTCOME, "completed"),),
        defaults=_DELIVERY_DEFAULTS,
    ),
    "message.delivery.error": Rule(
        _DELIVERY + (_ERROR,), histograms=((ins.MESSAGE_DELIVERY_DURATION, "durationMs"),),
        fixed=((ins.OUTCOME, "error"),), defaults=_DELIVERY_DEFAULTS + _ERROR_DEFAULT,
    ),
}


def lane(raw: str | None) -> str | None:
    # done before the cache lookup: per-session and per-card lanes must not grow the raw-value cache
    return normalise_lane(raw) if raw is not None and ":" in raw else raw


def add(inst: Any, pairs: tuple, value: float) -> None:
    series = inst.cache.get(pairs)
    if series is None:
        series = inst.resolve(pairs)
    series.value += value


def record(inst: Any, pairs: tuple, value: float) -> None:
    series = inst.cache.get(pairs)
    if series is None:
        series = inst.resolve(pairs)
    series.record(value)


def _compile(index: int, rule: Rule, store: MetricStore) -> Handler:
    keys = tuple(key for key, _ in rule.attributes)
    fields = tuple(field for _, field in rule.attributes)
    if any("." in field for field in fields):  # a nested field, whose parent may be absent
        getters = [_nested(field) if "." in field else attrgetter(field) for field in fields]
        values_of: Callable[[Any], tuple] = lambda e: tuple(get(e) for get in getters)  # noqa: E731
    elif len(fields) > 1:
        values_of = attrgetter(*fields)
    elif fields:
        one = attrgetter(fields[0])
        values_of = lambda e: (one(e),)  # noqa: E731
    else:
        values_of = lambda e: ()  # noqa: E731
    lane_at = keys.index(ins.LANE) if ins.LANE in keys else -1
    fixed = rule.fixed
    counters = tuple(store.instrument(spec) for spec in rule.counters)
    histograms = tuple((store.instrument(spec), attrgetter(field)) for spec, field in rule.histograms)

    fallbacks = dict(rule.defaults)
    defaults = tuple(fallbacks.get(key) for key in keys)

    def pairs(gateway: Any, values: tuple) -> tuple:
        # built on a series-cache miss only: the defaults cost nothing on the hot path
        if fallbacks:
            values = tuple(value if default is None else with_default(key, value, default)
                           for key, value, default in zip(keys, values, defaults))
        return ((ins.GATEWAY, gateway), *zip(keys, values), *fixed)

    def handle(event: Any, gateway: Any) -> None:
        values = values_of(event)
        if lane_at >= 0:
            values = values[:lane_at] + (lane(values[lane_at]),) + values[lane_at + 1 :]
        # the series cache key: the rule's index and the raw values (the attribute keys are
        # the rule's, so they need not be in it; building the pairs is left to a cache miss)
        key = (index, gateway, *values)
        for inst in counters:
            series = inst.cache.get(key)
            if series is None:
                series = inst.resolve(pairs(gateway, values), key)
            series.value += 1
        for inst, measured in histograms:
            value = measured(event)
            if value is not None:
                series = inst.cache.get(key)
                if series is None:
                    series = inst.resolve(pairs(gateway, values), key)
                series.record(value)

    return handle


def with_default(key: str, raw: Any, default: str) -> Any:
    """Upstream's `normalizeDiagnosticValue(value, default)`: the default where the value is
    missing, or not a low-cardinality value."""
    value = normalise_lane(raw) if key == ins.LANE else normalise_value(raw)
    if value is None or (value == ins.UNKNOWN_VALUE and raw != ins.UNKNOWN_VALUE):
        return default
    return value


def _nested(path: str) -> Callable[[Any], Any]:
    parent, child = path.split(".", 1)
    get_parent, get_child = attrgetter(parent), attrgetter(child)

    def get(event: Any) -> Any:
        value = get_parent(event)
        return None if value is None else get_child(value)

    return get


def _usage(store: MetricStore) -> Handler:
    """`model.usage`: a token point per non-zero usage field, the cost, the context sizes, and
    the run's duration when it reports one (upstream records `openclaw.run.duration_ms` from it)."""
    tokens, cost, context_tokens, run_duration = (
        store.instrument(s) for s in (ins.TOKENS, ins.COST_USD, ins.CONTEXT_TOKENS, ins.RUN_DURATION)
    )

    def handle(e: Any, gateway: Any) -> None:
        base = ((ins.GATEWAY, gateway), (ins.CHANNEL, e.channel or _U), (ins.PROVIDER, e.provider or _U),
                (ins.MODEL, e.model or _U))
        usage = e.usage
        if usage is not None:
            by_agent = base + ((ins.AGENT, e.agentId or _U),)  # only openclaw.tokens carries the agent
            for field_name, token in ins.TOKEN_KINDS:
                value = getattr(usage, field_name)
                if value:
                    add(tokens, ((ins.TOKEN, token),) + by_agent, value)
        if e.costUsd:
            add(cost, base, e.costUsd)
        if e.durationMs is not None:
            record(run_duration, base, e.durationMs)
        context = e.context
        if context is not None:
            if context.limit is not None:
                record(context_tokens, ((ins.CONTEXT, ins.CONTEXT_LIMIT),) + base, context.limit)
            if context.used is not None:
                record(context_tokens, ((ins.CONTEXT, ins.CONTEXT_USED),) + base, context.used)

    return handle


def handlers(store: MetricStore) -> dict[str, Handler]:
    """Event type -> the function feeding its instruments in `store`."""
    compiled = {event_type: _compile(i, rule, store) for i, (event_type, rule) in enumerate(RULES.items())}
    compiled["model.usage"] = _usage(store)
    return compiled
