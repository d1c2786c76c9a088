"""The recorder in memory: each call -> the instruments, attributes, log records and span of
telemetry.md (read back from the metric store's own export data and in-memory exporters)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.decoding import decode_ndjson
from app.events import KNOWN_TYPES, Event
from app.session_ids import SessionIds
from telemetry import instruments as ins
from telemetry.record import (
    GatewayStatus,
    LiveSources,
    OtelRecorder,
    Recorder,
    SessionCount,
)
from telemetry.setup import build_recorder
from telemetry.store import normalise_value
from tests.support.paths import SHARED_DATA
from tests.support.telemetry_scenario import (
    GW,
    IDS,
    SESSION_ID,
    SESSION_KEY,
    TOOL_CALL_ID,
    attention_payload,
    drive_all,
    gateway_events,
    recovery_payload,
)

DATA = SHARED_DATA


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
class Setup:
    def __init__(self, gateway_attribute: bool = True, limit: int = 2048, session_ids: Any = None) -> None:
        self.logs = InMemoryLogRecordExporter()
        self.spans = InMemorySpanExporter()
        self.recorder = build_recorder(
            gateway_attribute, limit, env={}, log_exporter=self.logs, span_exporter=self.spans,
            session_ids=session_ids,
        )
        assert isinstance(self.recorder, OtelRecorder)

    def metrics(self, with_export_failures: bool = False) -> dict[str, Any]:
        """Collected metrics by name; the export failure counter (zero rows for the in-memory
        exporters' signals) only when asked for."""
        data = self.recorder.store.collect()
        found = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        if not with_export_failures:
            found.pop(ins.MONITOR_EXPORT_FAILURES.name, None)
        return found

    def points(self, name: str) -> list[Any]:
        metric = self.metrics(with_export_failures=True).get(name)
        return list(metric.data.data_points) if metric else []

    def attrs(self, name: str) -> list[dict[str, Any]]:
        return [dict(p.attributes) for p in self.points(name)]

    def value(self, name: str, **match: Any) -> Any:
        found = [p for p in self.points(name) if all(p.attributes.get(k) == v for k, v in match.items())]
        assert len(found) == 1, (name, match, [dict(p.attributes) for p in self.points(name)])
        point = found[0]
        return point.count if hasattr(point, "bucket_counts") else point.value

    def log_records(self, name: str | None = None) -> list[Any]:
        self.recorder.force_flush()
        records = [item.log_record for item in self.logs.get_finished_logs()]
        return [r for r in records if name is None or r.event_name == name]

    def close(self) -> None:
        self.recorder.shutdown()


@pytest.fixture
def tel():
    setup = Setup()
    yield setup
    setup.close()


def k(**attrs: Any) -> dict[str, Any]:
    """Attribute dict from keyword names: k(state="idle") -> {"openclaw.state": "idle"}."""
    return {f"openclaw.{key}": value for key, value in attrs.items()}


# --------------------------------------------------------------------------------------------
# the base contract
# --------------------------------------------------------------------------------------------
def test_the_event_table_names_known_event_types() -> None:
    """A misspelt type in telemetry/event_table.py would never fire: every one is a known type."""
    from telemetry.event_table import RULES

    assert set(RULES) <= KNOWN_TYPES and "model.usage" in KNOWN_TYPES


def test_base_recorder_is_a_noop_contract() -> None:
    recorder = Recorder()
    recorder.events_counted({(GW, "session.state", "accepted"): 1})
    recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
    assert recorder.export_health() == {"otlp": "disabled", "failures": {}}
    body, content_type = recorder.render_metrics()
    assert body == b"" and content_type.startswith("text/plain")
    recorder.shutdown()


# --------------------------------------------------------------------------------------------
# events_counted / session_state
# --------------------------------------------------------------------------------------------
def test_events_counted_known_types_else_other(tel: Setup) -> None:
    tel.recorder.events_counted(
        {
            (GW, "session.state", "accepted"): 3,
            (GW, "session.state", "duplicate"): 1,
            (GW, "totally.new", "ignored"): 2,
            (GW, "also.new", "ignored"): 5,
            (GW, "x", "rejected"): 0,  # nothing to count
        }
    )
    name = ins.MONITOR_EVENTS.name
    assert tel.value(name, **k(event_type="session.state", outcome="accepted", gateway=GW)) == 3
    assert tel.value(name, **k(event_type="session.state", outcome="duplicate")) == 1
    assert tel.value(name, **k(event_type="other", outcome="ignored")) == 7
    assert not any(a.get(ins.OUTCOME) == "rejected" for a in tel.attrs(name))
    assert "other" not in KNOWN_TYPES


def test_session_state_counter_and_not_from_event_applied(tel: Setup) -> None:
    tel.recorder.event_applied(Event(type="session.state", state="processing", sessionKey="ID-x"), GW)
    assert tel.points(ins.SESSION_STATE.name) == []
    tel.recorder.session_state(GW, "processing", "run_started")
    tel.recorder.session_state(GW, "idle", None)
    assert tel.value(ins.SESSION_STATE.name, **k(state="processing", reason="run_started", gateway=GW)) == 1
    idle = [a for a in tel.attrs(ins.SESSION_STATE.name) if a[ins.STATE] == "idle"]
    assert idle == [k(state="idle", gateway=GW)]  # no reason: attribute omitted, never invented


# --------------------------------------------------------------------------------------------
# event_applied: the gateway contract
# --------------------------------------------------------------------------------------------
MODEL_CALL = k(provider="openai", model="gpt-5", api="openai-completions", transport="sse")
TOOL = {ins.GEN_AI_TOOL_NAME: "exec", ins.TOOL_NAME: "exec", ins.TOOL_SOURCE: "core", ins.TOOL_OWNER: "core"}
EXPECTED: list[tuple[str, dict[str, Any], float]] = [
    # instrument, attributes (gateway added by the test), count (counter value / histogram count)
    (ins.MESSAGE_QUEUED.name, k(channel="telegram", source="telegram"), 1),
    (ins.SESSION_TURN_CREATED.name, k(agent="main", channel="telegram", trigger="user"), 1),
    (ins.QUEUE_LANE_ENQUEUE.name, k(lane="session"), 1),
    (ins.QUEUE_LANE_ENQUEUE.name, k(lane="cron"), 1),
    (ins.QUEUE_LANE_DEQUEUE.name, k(lane="session"), 1),
    (ins.QUEUE_DEPTH.name, k(lane="session"), 2),
    (ins.QUEUE_DEPTH.name, k(lane="cron"), 1),
    (ins.QUEUE_DEPTH.name, k(channel="heartbeat"), 1),
    (ins.QUEUE_WAIT.name, k(lane="session"), 1),
    (ins.RUN_ATTEMPT.name, k(attempt=2), 1),  # a number, as upstream records it
    # one point from run.completed, one from model.usage (upstream records the run duration there)
    (ins.RUN_DURATION.name, k(channel="telegram", provider="openai", model="gpt-5"), 2),
    (ins.MODEL_CALL_DURATION.name,
     {**k(provider="openai", model="gpt-5", api="openai-completions", transport="sse"), ins.OBSERVATION_UNIT: "request"},
     1),
    (
        ins.MODEL_CALL_DURATION.name,
        {**k(provider="openai", model="gpt-5", api="openai-completions", transport="sse"),
         ins.ERROR_CATEGORY: "Error", ins.FAILURE_KIND: "timeout", ins.OBSERVATION_UNIT: "request"},  # its default
        1,
    ),
    (ins.MODEL_CALL_REQUEST_BYTES.name, {**MODEL_CALL, ins.OBSERVATION_UNIT: "request"}, 1),
    (ins.MODEL_CALL_RESPONSE_BYTES.name, {**MODEL_CALL, ins.OBSERVATION_UNIT: "request"}, 1),
    (ins.MODEL_CALL_TTFB.name, {**MODEL_CALL, ins.OBSERVATION_UNIT: "request"}, 1),
    (ins.MODEL_FAILOVER.name,
     {**k(provider="openai", model="gpt-5", lane="main"), ins.FAILOVER_TO_PROVIDER: "anthropic",
      ins.FAILOVER_TO_MODEL: "claude-sonnet", ins.FAILOVER_REASON: "rate_limit", ins.FAILOVER_SUSPENDED: "false"},
     1),
    (ins.TOKENS.name, k(token="input", channel="telegram", provider="openai", model="gpt-5", agent="main"), 1000),
    (ins.TOKENS.name, k(token="cache_read", channel="telegram", provider="openai", model="gpt-5", agent="main"), 50),
    (ins.TOKENS.name, k(token="total", channel="telegram", provider="openai", model="gpt-5", agent="main"), 1260),
    (ins.COST_USD.name, k(channel="telegram", provider="openai", model="gpt-5"), 0.25),
    (ins.CONTEXT_TOKENS.name, k(context="limit", channel="telegram", provider="openai", model="gpt-5"), 1),
    (ins.CONTEXT_TOKENS.name, k(context="used", channel="telegram", provider="openai", model="gpt-5"), 1),
    (ins.TOOL_DURATION.name, {**TOOL, ins.TOOL_PARAMS_KIND: "object"}, 1),
    (ins.TOOL_DURATION.name, {**TOOL, ins.TOOL_PARAMS_KIND: "object", ins.ERROR_CATEGORY: "EACCES"}, 1),
    (ins.TOOL_BLOCKED.name, {**TOOL, ins.TOOL_PARAMS_KIND: "string", ins.DENIED_REASON: "policy"}, 1),
    (ins.TOOL_LOOP.name, {ins.TOOL_NAME: "exec", ins.LOOP_LEVEL: "warning", ins.LOOP_ACTION: "warn",
                          ins.LOOP_DETECTOR: "generic_repeat", ins.LOOP_COUNT: 5}, 1),
    (ins.WEBHOOK_RECEIVED.name, k(channel="telegram", webhook="message"), 1),
    (ins.WEBHOOK_DURATION.name, k(channel="telegram", webhook="message"), 1),
    (ins.WEBHOOK_ERROR.name, k(channel="telegram", webhook="message"), 1),
    (ins.MESSAGE_RECEIVED.name, k(channel="telegram", source="telegram"), 1),
    (ins.MESSAGE_PROCESSED.name, k(channel="telegram", outcome="completed"), 1),
    (ins.MESSAGE_DURATION.name, k(channel="telegram", outcome="completed"), 1),
    (ins.MESSAGE_DISPATCH_STARTED.name, k(channel="telegram", source="reply"), 1),
    (ins.MESSAGE_DISPATCH_COMPLETED.name, k(channel="telegram", outcome="completed", reason="sent", source="reply"), 1),
    (ins.MESSAGE_DISPATCH_DURATION.name, k(channel="telegram", outcome="completed", reason="sent", source="reply"), 1),
    (ins.MESSAGE_DELIVERY_STARTED.name, {ins.CHANNEL: "telegram", ins.DELIVERY_KIND: "text"}, 1),
    # the outcome comes from the event type: delivery events carry none
    (ins.MESSAGE_DELIVERY_DURATION.name, {ins.CHANNEL: "telegram", ins.DELIVERY_KIND: "text", ins.OUTCOME: "completed"}, 1),
    (
        ins.MESSAGE_DELIVERY_DURATION.name,
        {ins.CHANNEL: "telegram", ins.DELIVERY_KIND: "text", ins.OUTCOME: "error", ins.ERROR_CATEGORY: "HttpError"},
        1,
    ),
]


def test_gateway_contract_from_events(tel: Setup) -> None:
    for event in gateway_events():
        tel.recorder.event_applied(event, GW)
    for name, attrs, expected in EXPECTED:
        full = {**attrs, ins.GATEWAY: GW}
        found = [p for p in tel.points(name) if dict(p.attributes) == full]
        assert len(found) == 1, (name, full, tel.attrs(name))
        point = found[0]
        actual = point.count if hasattr(point, "bucket_counts") else point.value
        assert actual == pytest.approx(expected), (name, full)


def test_histogram_values_land_in_the_right_buckets(tel: Setup) -> None:
    for event in gateway_events():
        tel.recorder.event_applied(event, GW)
    (wait,) = tel.points(ins.QUEUE_WAIT.name)
    assert list(wait.explicit_bounds) == [float(b) for b in ins.DURATION_BUCKETS_MS]
    # 1250 ms: (1000, 2500] -> the bucket whose upper bound is 2500
    assert wait.bucket_counts[ins.DURATION_BUCKETS_MS.index(2.5e3)] == 1
    assert (wait.sum, wait.min, wait.max, wait.count) == (1250.0, 1250.0, 1250.0, 1)
    depth = [p for p in tel.points(ins.QUEUE_DEPTH.name) if p.attributes.get(ins.LANE) == "session"][0]
    # queueSize 3 and 2 -> both in (0, 5]: upper-inclusive, as OTel defines them
    assert depth.bucket_counts[ins.QUEUE_DEPTH_BUCKETS.index(5)] == 2
    assert sum(depth.bucket_counts) == depth.count == 2


def test_absent_fields_take_upstreams_defaults_or_are_left_out(tel: Setup) -> None:
    """Where upstream's recorders write a fallback for a missing field, so do we; where they
    leave the attribute out (a run's channel, a tool's owner), so do we; nothing is invented."""
    tel.recorder.event_applied(Event(type="message.processed"), GW)
    tel.recorder.event_applied(Event(type="model.call.completed", provider="p", model="m", durationMs=5), GW)
    tel.recorder.event_applied(Event(type="run.completed", runId="ID-r"), GW)  # no durationMs: nothing
    tel.recorder.event_applied(Event(type="run.completed", runId="ID-r", durationMs=7), GW)
    tel.recorder.event_applied(Event(type="message.dispatch.completed", outcome="completed", durationMs=3), GW)
    tel.recorder.event_applied(Event(type="tool.execution.blocked", toolName="exec"), GW)
    tel.recorder.event_applied(Event(type="message.delivery.error", durationMs=4, errorCategory="has space"), GW)
    tel.recorder.event_applied(Event(type="tool.loop", level="warning", action="warn", detector="d", count=3), GW)
    u = ins.UNKNOWN_VALUE
    assert tel.attrs(ins.MESSAGE_PROCESSED.name) == [{ins.GATEWAY: GW, ins.CHANNEL: u, ins.OUTCOME: u}]
    assert tel.attrs(ins.MODEL_CALL_DURATION.name) == [{
        ins.GATEWAY: GW, ins.PROVIDER: "p", ins.MODEL: "m", ins.API: u, ins.TRANSPORT: u,
        ins.OBSERVATION_UNIT: "request"}]
    assert tel.points(ins.MODEL_CALL_REQUEST_BYTES.name) == []
    assert tel.attrs(ins.RUN_DURATION.name) == [{ins.GATEWAY: GW, ins.PROVIDER: u, ins.MODEL: u}]
    assert tel.attrs(ins.MESSAGE_DISPATCH_COMPLETED.name) == [{
        ins.GATEWAY: GW, ins.CHANNEL: u, ins.OUTCOME: "completed", ins.REASON: "none", ins.SOURCE: u}]
    assert tel.attrs(ins.TOOL_BLOCKED.name) == [{
        ins.GATEWAY: GW, ins.GEN_AI_TOOL_NAME: "exec", ins.TOOL_NAME: "exec", ins.TOOL_SOURCE: "core",
        ins.DENIED_REASON: "other"}]
    # a value that is not low-cardinality falls back to the attribute's own default
    assert tel.attrs(ins.MESSAGE_DELIVERY_DURATION.name) == [{
        ins.GATEWAY: GW, ins.CHANNEL: u, ins.DELIVERY_KIND: "other", ins.OUTCOME: "error", ins.ERROR_CATEGORY: "other"}]
    assert tel.attrs(ins.TOOL_LOOP.name) == [{
        ins.GATEWAY: GW, ins.TOOL_NAME: "tool", ins.LOOP_LEVEL: "warning", ins.LOOP_ACTION: "warn",
        ins.LOOP_DETECTOR: "d", ins.LOOP_COUNT: 3}]


def test_metrics_only_and_activity_events_without_instruments_are_noops(tel: Setup) -> None:
    for event_type in ("run.started", "run.progress", "model.call.started", "tool.execution.started",
                       "harness.run.started", "run.execution_phase", "session.progress", "forwarder.keepalive",
                       "session.stuck", "session.recovery.completed", "unknown.type"):
        tel.recorder.event_applied(Event(type=event_type, sessionKey="ID-s", runId="ID-r"), GW)
    assert tel.metrics() == {}


def test_gateway_verdict_events_are_not_counted_as_ours(tel: Setup) -> None:
    tel.recorder.event_applied(
        Event(type="session.stuck", sessionKey="ID-s", state="idle", ageMs=200_000, reason="stale_session_state"), GW
    )
    assert tel.points(ins.SESSION_STUCK.name) == [] and tel.log_records() == []


# --------------------------------------------------------------------------------------------
# attribute hygiene
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("openai", "openai"),
        ("gpt-5.1:latest", "gpt-5.1:latest"),
        ("has space", "unknown"),
        ("x" * 120, "x" * 120),
        ("x" * 121, "unknown"),
        ("ünïcode", "unknown"),
        ("a/b", "unknown"),
        ("", None),
        (None, None),
        (True, "true"),
        (False, "false"),
        (3, 3),  # numbers stay numbers (openclaw.attempt): an int on OTLP
        (2.0, 2),
        (2.5, 2.5),
    ],
)
def test_normalise_value(raw: Any, expected: Any) -> None:
    assert normalise_value(raw) == expected
    assert normalise_value(raw) == expected  # memoised answer is the same


def test_lanes_named_after_sessions_are_one_lane(tel: Setup) -> None:
    for i in range(50):
        tel.recorder.event_applied(Event(type="queue.lane.enqueue", lane=f"session:agent:main:{i}", queueSize=i), GW)
    tel.recorder.event_applied(Event(type="queue.lane.enqueue", lane="weird lane!", queueSize=1), GW)
    assert sorted(a[ins.LANE] for a in tel.attrs(ins.QUEUE_LANE_ENQUEUE.name)) == ["session", "unknown"]
    assert tel.value(ins.QUEUE_LANE_ENQUEUE.name, **k(lane="session")) == 50


def test_gateway_attribute_switched_off() -> None:
    setup = Setup(gateway_attribute=False)
    try:
        drive_all(setup.recorder)
        for name, metric in setup.metrics().items():
            for point in metric.data.data_points:
                assert ins.GATEWAY not in point.attributes, name
        # gauges aggregate over gateways
        sessions = {(p.attributes[ins.STATE], p.attributes[ins.ATTENTION]): p.value
                    for p in setup.points(ins.MONITOR_SESSIONS.name)}
        assert sessions[("idle", "none")] == 14
        gateways = {p.attributes[ins.STATUS]: p.value for p in setup.points(ins.MONITOR_GATEWAYS.name)}
        assert gateways == {"live": 1, "silent": 1}
        (skew,) = setup.points(ins.MONITOR_CLOCK_SKEW.name)
        assert skew.value == 1200  # the gateway furthest off
        (queued,) = setup.points(ins.MONITOR_FORWARDER_QUEUED.name)
        assert queued.value == 3
    finally:
        setup.close()


def test_gateway_attribute_on_everything_from_a_gateway(tel: Setup) -> None:
    drive_all(tel.recorder)
    not_scoped = {s.name for s in ins.INSTRUMENTS if not s.gateway_scoped}
    for name, metric in tel.metrics().items():
        for point in metric.data.data_points:
            if name in not_scoped:
                assert ins.GATEWAY not in point.attributes, name
            else:
                assert point.attributes.get(ins.GATEWAY) in (GW, "gw-2"), (name, dict(point.attributes))


def test_only_declared_attribute_keys_are_used(tel: Setup) -> None:
    drive_all(tel.recorder)
    for name, metric in tel.metrics().items():
        allowed = set(ins.BY_NAME[name].attribute_keys) | {ins.OVERFLOW}
        for point in metric.data.data_points:
            assert set(point.attributes) <= allowed, (name, dict(point.attributes))


def _all_attribute_values(setup: Setup) -> set[str]:
    return {
        str(value)
        for metric in setup.metrics().values()
        for point in metric.data.data_points
        for value in point.attributes.values()
    }


def test_ids_never_become_metric_attributes(tel: Setup) -> None:
    drive_all(tel.recorder)
    values = _all_attribute_values(tel)
    for ident in IDS:
        assert not any(ident in value for value in values), ident


_ID_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-:", min_size=6, max_size=40).map(lambda s: f"ID-{s}")
_TYPES = sorted(KNOWN_TYPES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(_TYPES),
                "sessionKey": _ID_TEXT,
                "sessionId": _ID_TEXT,
                "runId": _ID_TEXT,
                "callId": _ID_TEXT,
                "toolCallId": _ID_TEXT,
                "eventId": _ID_TEXT,
                "workKey": _ID_TEXT,
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_property_no_id_in_any_metric_attribute(tel: Setup, rows: list[dict[str, str]]) -> None:
    ids = set()
    for row in rows:
        ids.update(v for key, v in row.items() if key != "type")
        event = Event(
            **row, toolName="exec", provider="p", model="m", lane="session:" + row["sessionKey"], queueSize=1,
            durationMs=3.0, waitMs=1.0, reason="r", source="s", channel="c", outcome="ok", queued=1, attempt=1,
        )
        tel.recorder.event_applied(event, GW)
    values = _all_attribute_values(tel)
    assert not (ids & values)
    assert not any(value.startswith("ID-") for value in values)


# --------------------------------------------------------------------------------------------
# the cardinality guard
# --------------------------------------------------------------------------------------------
def test_cardinality_guard_caps_and_counts() -> None:
    setup = Setup(limit=16)
    try:
        for i in range(100):
            setup.recorder.event_applied(
                Event(type="model.call.completed", provider="p", model=f"model-{i}", durationMs=10.0), GW
            )
        points = setup.points(ins.MODEL_CALL_DURATION.name)
        normal = [p for p in points if ins.OVERFLOW not in p.attributes]
        overflow = [p for p in points if ins.OVERFLOW in p.attributes]
        assert len(normal) == 16
        assert len(overflow) == 1 and dict(overflow[0].attributes) == {ins.OVERFLOW: "true"}
        assert overflow[0].count == 84
        assert setup.value(ins.MONITOR_TELEMETRY_OVERFLOW.name, **{ins.INSTRUMENT: ins.MODEL_CALL_DURATION.name}) == 84
        # an admitted set keeps being counted normally
        setup.recorder.event_applied(Event(type="model.call.completed", provider="p", model="model-0", durationMs=1.0), GW)
        assert setup.value(ins.MODEL_CALL_DURATION.name, **{ins.MODEL: "model-0"}) == 2
        # other instruments are not affected
        setup.recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        assert setup.value(ins.QUEUE_LANE_ENQUEUE.name, **k(lane="main")) == 1
    finally:
        setup.close()


def test_cardinality_guard_on_gauges() -> None:
    setup = Setup(limit=16)
    try:
        setup.recorder.bind(
            LiveSources(
                sessions=lambda: [SessionCount(f"gw-{i}", "idle", "none", None, 1) for i in range(40)],
                gateways=lambda: [],
            )
        )
        points = setup.points(ins.MONITOR_SESSIONS.name)
        assert len(points) == 17
        overflow = [p for p in points if ins.OVERFLOW in p.attributes]
        assert len(overflow) == 1 and overflow[0].value == 24
        assert sum(p.value for p in points) == 40
    finally:
        setup.close()


# --------------------------------------------------------------------------------------------
# attention reports, recovery: counters, histograms, log events, span
# --------------------------------------------------------------------------------------------
def test_stuck_report(tel: Setup) -> None:
    tel.recorder.attention_reported(attention_payload("stuck", state="idle", ageMs=150_000))
    assert tel.value(ins.SESSION_STUCK.name, **k(state="idle", gateway=GW)) == 1
    (age,) = tel.points(ins.SESSION_STUCK_AGE.name)
    assert dict(age.attributes) == k(state="idle", gateway=GW)
    assert list(age.explicit_bounds) == [float(b) for b in ins.AGE_BUCKETS_MS]
    assert age.bucket_counts[ins.AGE_BUCKETS_MS.index(300e3)] == 1
    (record,) = tel.log_records(ins.EVENT_STUCK)
    assert record.severity_text == "WARN" and record.severity_number.name == "WARN"
    attrs = dict(record.attributes)
    assert attrs["event.name"] == ins.EVENT_STUCK
    assert attrs["openclaw.sessionKey"].startswith("ID-")  # logs may carry ids
    assert attrs["openclaw.state"] == "idle" and attrs["openclaw.ageMs"] == 150_000
    assert attrs["openclaw.gatewaySilent"] is False
    assert "openclaw.activeToolName" not in attrs  # None: omitted
    assert "openclaw.eventType" not in attrs
    tel.recorder.force_flush()
    (span,) = tel.spans.get_finished_spans()
    assert span.name == ins.SPAN_STUCK and span.status.status_code.name == "ERROR"
    assert span.attributes["openclaw.state"] == "idle"
    assert span.attributes["openclaw.ageMs"] == 150_000 and span.attributes["openclaw.queueDepth"] == 1
    assert span.start_time == span.end_time  # the instant span
    assert span.instrumentation_scope.name == "openclaw"


@pytest.mark.parametrize(("kind", "event_name", "severity"), [
    ("long_running", ins.EVENT_LONG_RUNNING, "INFO"),
    ("stalled", ins.EVENT_STALLED, "WARN"),
])
def test_long_running_and_stalled_are_log_events_only(tel: Setup, kind: str, event_name: str, severity: str) -> None:
    tel.recorder.attention_reported(attention_payload(kind))
    assert tel.metrics() == {}  # upstream has no openclaw.session.* counter for these
    (record,) = tel.log_records(event_name)
    assert record.severity_text == severity
    attrs = dict(record.attributes)
    for field in ("sessionKey", "sessionId", "gatewayId", "state", "ageMs", "queueDepth", "reason",
                  "classification", "activeWorkKind", "lastProgressAgeMs", "lastProgressReason",
                  "terminalProgressStale", "gatewaySilent", "warmingUp"):
        assert f"openclaw.{field}" in attrs, field
    tel.recorder.force_flush()
    assert tel.spans.get_finished_spans() == ()


def test_recovery_requested(tel: Setup) -> None:
    tel.recorder.recovery_requested(recovery_payload(expectedState="idle"))
    tel.recorder.recovery_requested(
        recovery_payload(expectedState="processing", allowActiveAbort=True, activeWorkKind="embedded_run",
                         reason="active_work_without_progress", ageMs=400_000)
    )
    name = ins.RECOVERY_REQUESTED.name
    assert tel.value(name, **k(state="idle", action="recover", reason="stale_session_state", gateway=GW)) == 1
    abort = tel.value(name, **{**k(state="processing", action="abort", gateway=GW), ins.ACTIVE_WORK_KIND: "embedded_run"})
    assert abort == 1
    ages = tel.points(ins.RECOVERY_AGE.name)
    assert sorted(p.sum for p in ages) == [150_000, 400_000]
    assert {p.attributes[ins.ACTION] for p in ages} == {"recover", "abort"}
    records = tel.log_records(ins.EVENT_RECOVERY_REQUESTED)
    assert len(records) == 2 and all(r.severity_text == "INFO" for r in records)
    attrs = dict(records[0].attributes)
    assert attrs["openclaw.state"] == "idle"  # the request's expectedState
    assert attrs["openclaw.stateGeneration"] == 7 and attrs["openclaw.allowActiveAbort"] is False
    assert "openclaw.activeWorkKind" not in attrs  # None: omitted


def test_recovery_completed_and_what_it_released(tel: Setup) -> None:
    rec = tel.recorder
    rec.recovery_completed(recovery_payload(expectedState="idle", status="released", action="release_lane", released=3))
    rec.recovery_completed(recovery_payload(expectedState="idle", status="released", action="release_lane"))
    rec.recovery_completed(
        recovery_payload(status="skipped", action="observe_only", outcomeReason="no_recovery_target")
    )
    rec.recovery_completed(
        recovery_payload(status="failed", action="none", outcomeReason="exception", error="boom: connection refused")
    )
    rec.recovery_completed(
        recovery_payload(status="aborted", action="abort_embedded_run", released=True, stale=True,
                         activeWorkKind="embedded_run")
    )
    name = ins.RECOVERY_COMPLETED.name
    assert tel.value(name, **k(status="released", state="idle", action="release_lane")) == 2
    skipped = k(status="skipped", action="observe_only", reason="no_recovery_target", state="processing", gateway=GW)
    assert skipped in tel.attrs(name)  # outcomeReason wins over the request's reason
    assert tel.value(name, **k(status="aborted")) == 1
    assert not any("openclaw.released" in attrs for attrs in tel.attrs(name))  # not an upstream attribute
    # what was released is an instrument of ours: 3 items, from the one outcome that counted any
    # (a `released: true` is a flag, not a count)
    released = ins.MONITOR_RECOVERY_RELEASED_ITEMS.name
    assert tel.attrs(released) == [k(status="released", action="release_lane", gateway=GW)]
    assert tel.value(released, **k(status="released", action="release_lane")) == 3
    assert sum(point.count for point in tel.points(ins.RECOVERY_AGE.name)) == 5
    records = tel.log_records(ins.EVENT_RECOVERY_COMPLETED)
    assert [r.severity_text for r in records] == ["INFO", "INFO", "INFO", "WARN", "INFO"]
    first = dict(records[0].attributes)
    assert first["openclaw.released"] == 3 and first["openclaw.status"] == "released"
    assert first["openclaw.state"] == "idle"
    assert dict(records[3].attributes)["openclaw.error"] == "boom: connection refused"
    assert dict(records[4].attributes)["openclaw.stale"] is True
    # free text never reaches a metric attribute
    assert not any("boom" in v for v in _all_attribute_values(tel))


def test_unknown_attention_type_is_ignored(tel: Setup) -> None:
    tel.recorder.attention_reported({"eventType": "session.weird", "gatewayId": GW})
    assert tel.metrics() == {} and tel.log_records() == []


# --------------------------------------------------------------------------------------------
# monitor instruments and gauges
# --------------------------------------------------------------------------------------------
def test_monitor_self_instruments(tel: Setup) -> None:
    rec = tel.recorder
    rec.scan_finished(12.5, 3.0)
    rec.scan_finished(2600.0, 0.0)
    rec.sessions_evicted("ttl", 4)
    rec.sessions_evicted("cap", 0)
    rec.clock_clamped(GW)
    rec.clock_clamped(GW)
    rec.forwarder_dropped(GW, 5)
    rec.forwarder_dropped(GW, 0)
    (duration,) = tel.points(ins.MONITOR_SCAN_DURATION.name)
    assert duration.count == 2 and list(duration.explicit_bounds) == [float(b) for b in ins.SCAN_BUCKETS_MS]
    assert dict(duration.attributes) == {}
    assert tel.value(ins.MONITOR_SESSIONS_EVICTED.name, **k(reason="ttl")) == 4
    assert tel.attrs(ins.MONITOR_SESSIONS_EVICTED.name) == [k(reason="ttl")]
    assert tel.value(ins.MONITOR_CLOCK_CLAMPED.name, **k(gateway=GW)) == 2
    assert tel.value(ins.MONITOR_FORWARDER_DROPPED.name, **k(gateway=GW)) == 5


def test_observable_gauges_read_live_sources(tel: Setup) -> None:
    assert tel.points(ins.MONITOR_SESSIONS.name) == []  # not bound yet
    counts = {"stuck": 1}
    tel.recorder.bind(
        LiveSources(
            sessions=lambda: [
                SessionCount(GW, "processing", "stuck", "stale_session_state", counts["stuck"], 61_000),
                SessionCount(GW, "idle", "stuck", "stale_session_state", 1, 420_000),
                SessionCount(GW, "idle", "none", "ignored-for-none", 7),
            ],
            gateways=lambda: [GatewayStatus(GW, False, -40, 2), GatewayStatus("gw-2", True, 900, None)],
        )
    )
    assert tel.value(ins.MONITOR_SESSIONS.name, **k(attention="stuck", state="processing",
                                                    reason="stale_session_state", gateway=GW)) == 1
    assert k(attention="none", state="idle", gateway=GW, needs_human="false", maintenance="false") in tel.attrs(
        ins.MONITOR_SESSIONS.name)
    counts["stuck"] = 3  # the gauge is read at collection time
    assert tel.value(ins.MONITOR_SESSIONS.name, **k(attention="stuck", state="processing")) == 3
    # since when: the oldest attention age per gateway, attention and reason, whatever the state
    assert tel.attrs(ins.MONITOR_ATTENTION_AGE.name) == [k(attention="stuck", reason="stale_session_state", gateway=GW)]
    assert tel.value(ins.MONITOR_ATTENTION_AGE.name, **k(attention="stuck")) == 420_000
    metric = tel.metrics()[ins.MONITOR_SESSIONS.name]
    assert isinstance(metric.data, Gauge) and metric.unit == "{session}"
    gateways = {(p.attributes[ins.GATEWAY], p.attributes[ins.STATUS]): p.value
                for p in tel.points(ins.MONITOR_GATEWAYS.name)}
    assert gateways == {(GW, "live"): 1, (GW, "silent"): 0, ("gw-2", "live"): 0, ("gw-2", "silent"): 1}
    skew = {p.attributes[ins.GATEWAY]: p.value for p in tel.points(ins.MONITOR_CLOCK_SKEW.name)}
    assert skew == {GW: -40, "gw-2": 900}
    queued = {p.attributes[ins.GATEWAY]: p.value for p in tel.points(ins.MONITOR_FORWARDER_QUEUED.name)}
    assert queued == {GW: 2}


def test_a_failing_live_source_does_not_break_collection(tel: Setup) -> None:
    def broken() -> list[SessionCount]:
        raise RuntimeError("store is busy")

    tel.recorder.bind(LiveSources(sessions=broken, gateways=lambda: [GatewayStatus(GW, False, 0, None)]))
    tel.recorder.scan_finished(1.0, 1.0)
    names = set(tel.metrics())
    assert ins.MONITOR_SESSIONS.name not in names
    assert {ins.MONITOR_GATEWAYS.name, ins.MONITOR_SCAN_DURATION.name} <= names


# --------------------------------------------------------------------------------------------
# kinds and units as exported, every instrument
# --------------------------------------------------------------------------------------------
def test_every_instrument_exported_with_its_kind_and_unit(tel: Setup) -> None:
    drive_all(tel.recorder)
    metrics = tel.metrics()
    missing = {s.name for s in ins.INSTRUMENTS} - set(metrics) - {
        ins.MONITOR_TELEMETRY_OVERFLOW.name,  # only when the guard refuses something
        ins.MONITOR_EXPORT_FAILURES.name,  # only for configured signals (in-memory exporters here)
    }
    assert not missing
    for name, metric in metrics.items():
        spec = ins.BY_NAME[name]
        assert metric.unit == spec.unit and metric.description == spec.description
        if spec.kind == "counter":
            assert isinstance(metric.data, Sum) and metric.data.is_monotonic
            assert metric.data.aggregation_temporality.name == "CUMULATIVE"
        elif spec.kind == "histogram":
            assert isinstance(metric.data, Histogram)
            assert metric.data.aggregation_temporality.name == "CUMULATIVE"
            for point in metric.data.data_points:
                assert list(point.explicit_bounds) == [float(b) for b in spec.buckets]
                assert sum(point.bucket_counts) == point.count
        else:
            assert isinstance(metric.data, Gauge)


def test_counter_value_types(tel: Setup) -> None:
    drive_all(tel.recorder)
    metrics = tel.metrics()
    assert all(isinstance(p.value, int) for p in metrics[ins.QUEUE_LANE_ENQUEUE.name].data.data_points)
    assert all(isinstance(p.value, float) for p in metrics[ins.COST_USD.name].data.data_points)


# --------------------------------------------------------------------------------------------
# concurrency: collection on another thread while the writer writes
# --------------------------------------------------------------------------------------------
def test_collect_while_writing_is_consistent(tel: Setup) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            i = 0
            while not stop.is_set():
                tel.recorder.event_applied(Event(type="queue.lane.dequeue", lane=f"lane-{i % 50}", queueSize=i % 7, waitMs=float(i % 900)), GW)
                i += 1
                if i % 200 == 0:
                    time.sleep(0)  # let the collecting thread have the GIL now and then
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(30):
            for point in tel.points(ins.QUEUE_WAIT.name):
                assert sum(point.bucket_counts) == point.count
            tel.recorder.render_metrics()
    finally:
        stop.set()
        thread.join()
    assert not errors


# --------------------------------------------------------------------------------------------
# real captures
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not DATA.is_dir(), reason="shared/data captures not present")
def test_real_gateway_captures(tel: Setup) -> None:
    ids: set[str] = set()
    for path in sorted(DATA.glob("*.ndjson")):
        decoded = decode_ndjson(path.read_bytes())
        assert not decoded.rejected
        for _, event in decoded.events:
            for name in ("sessionKey", "sessionId", "runId", "callId", "toolCallId"):
                if getattr(event, name):
                    ids.add(getattr(event, name))
            if event.type in KNOWN_TYPES:
                tel.recorder.event_applied(event, "default")
    metrics = tel.metrics()
    assert {ins.QUEUE_LANE_ENQUEUE.name, ins.MODEL_CALL_DURATION.name, ins.RUN_DURATION.name, ins.TOKENS.name,
            ins.QUEUE_DEPTH.name} <= set(metrics)
    assert {a[ins.LANE] for a in tel.attrs(ins.QUEUE_LANE_ENQUEUE.name)} <= {"session", "main", "cron", "subagent", "nested"}
    assert ids and not (ids & _all_attribute_values(tel))
    errors = [a for a in tel.attrs(ins.MODEL_CALL_DURATION.name) if a.get(ins.FAILURE_KIND)]
    assert errors and errors[0][ins.FAILURE_KIND] == "timeout"


def test_shutdown_is_idempotent() -> None:
    setup = Setup()
    setup.recorder.shutdown()
    setup.recorder.shutdown()


def test_a_lane_event_counts_under_its_prefix(tel: Setup) -> None:
    """Lanes keep the text before their first `:`; one naming an agent falls back."""
    for lane in ("workboard:b1:c1", "workboard:b2:c7", "agent:main:x"):
        tel.recorder.event_applied(Event(type="queue.lane.enqueue", lane=lane, queueSize=1), "gw")
    lanes = sorted(attrs[ins.LANE] for attrs in tel.attrs(ins.QUEUE_LANE_ENQUEUE.name))
    assert lanes == ["unknown", "workboard"]
    assert tel.value(ins.QUEUE_LANE_ENQUEUE.name, **{ins.LANE: "workboard"}) == 2


@pytest.mark.parametrize("mode", ["hash", "off"])
def test_session_ids_leave_as_the_policy_says(mode: str) -> None:
    """OPENCLAW_DIAG_EXPORT_SESSION_IDS (app/session_ids.py): the records and the span carry the
    keyed hash, or no id at all; the raw key appears nowhere."""
    policy = SessionIds(mode, lambda: b"deployment-key")
    tel = Setup(session_ids=policy.exported)
    payload = attention_payload("stuck", state="idle", activeToolCallId=TOOL_CALL_ID)
    tel.recorder.attention_reported(payload)
    tel.recorder.recovery_requested(recovery_payload())
    tel.recorder.force_flush()
    records = tel.log_records(ins.EVENT_STUCK) + tel.log_records(ins.EVENT_RECOVERY_REQUESTED)
    (span,) = tel.spans.get_finished_spans()
    everything = [dict(r.attributes) for r in records] + [dict(span.attributes)]
    for attrs in everything:
        assert not any(str(v) in (SESSION_KEY, SESSION_ID, TOOL_CALL_ID) for v in attrs.values()), attrs
        if mode == "hash":
            assert attrs["openclaw.sessionKey"] == policy.hash(SESSION_KEY)
            assert attrs["openclaw.sessionId"] == policy.hash(SESSION_ID)
        else:
            assert "openclaw.sessionKey" not in attrs and "openclaw.sessionId" not in attrs
    if mode == "hash":
        assert dict(records[0].attributes)["openclaw.activeToolCallId"] == policy.hash(TOOL_CALL_ID)
