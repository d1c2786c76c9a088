"""Real OTLP export, over gRPC and over HTTP/protobuf, to a real receiver (tests/support/otlp_receiver.py).

The exporters read their endpoint, headers and TLS settings from the process environment, so
each test sets its OTEL_* variables there (monkeypatch) and checks what arrives on the wire.

No timing assertions: exports are forced with force_flush() or awaited with a deadline; "does
not block" is shown by behaviour (calls complete while an export is provably still in flight).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest

from app.events import Event
from telemetry import instruments as ins
from telemetry.record import OtelRecorder
from telemetry.setup import build_recorder
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.telemetry_scenario import (
    GW,
    IDS,
    attention_payload,
    drive_all,
    recovery_payload,
)

PROTOCOLS = ("grpc", "http")
_KIND = {"counter": "sum", "histogram": "histogram", "gauge": "gauge"}


@pytest.fixture(params=PROTOCOLS)
def receiver(request: pytest.FixtureRequest) -> Iterator[OtlpReceiver]:
    with OtlpReceiver(request.param) as rx:
        yield rx


MakeRecorder = Callable[..., OtelRecorder]


@pytest.fixture
def make_recorder(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> MakeRecorder:
    """A recorder exporting to `receiver`; keyword arguments add or override OTEL_* variables
    (None: unset it)."""

    def make(**extra: str | None) -> OtelRecorder:
        env: dict[str, str | None] = dict(
            receiver.env(
                OTEL_METRIC_EXPORT_INTERVAL="3600000",  # exports happen when the test says so
                OTEL_EXPORTER_OTLP_TIMEOUT="1000",
                OTEL_BLRP_SCHEDULE_DELAY="50",
                OTEL_BSP_SCHEDULE_DELAY="50",
                OTEL_SERVICE_NAME="diag-under-test",
                OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
            )
        )
        env.update(extra)
        for key in [key for key in os.environ if key.startswith("OTEL_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if value is not None:
                monkeypatch.setenv(key, value)
        recorder = build_recorder(True, 2048)
        assert isinstance(recorder, OtelRecorder)
        return recorder

    return make


def test_the_whole_contract_over_the_wire(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(OTEL_EXPORTER_OTLP_HEADERS="X-Api-Key=k123")
    try:
        drive_all(recorder)
        assert recorder.force_flush()
        metric = receiver.wait_for_metric(ins.SESSION_STUCK.name)
        # -- every instrument: name, kind, unit, description, attribute keys, buckets
        expected = {s.name for s in ins.INSTRUMENTS} - {ins.MONITOR_TELEMETRY_OVERFLOW.name}
        assert expected <= receiver.metric_names()
        for spec in ins.INSTRUMENTS:
            if spec.name not in expected:
                continue
            metric = receiver.metric(spec.name)
            assert metric is not None, spec.name
            assert metric.kind == _KIND[spec.kind], spec.name
            assert metric.unit == spec.unit and metric.description == spec.description, spec.name
            assert metric.scope == "openclaw"
            assert metric.resource["service.name"] == "diag-under-test"
            assert metric.resource["deployment.environment"] == "test"
            if spec.kind == "counter":
                assert metric.monotonic is True and metric.temporality == "cumulative", spec.name
            if spec.kind == "histogram":
                assert metric.temporality == "cumulative", spec.name
                for point in metric.points:
                    assert point.explicit_bounds == [float(b) for b in spec.buckets], spec.name
                    assert sum(point.bucket_counts) == point.count
            assert metric.attribute_keys <= set(spec.attribute_keys), (spec.name, metric.attribute_keys)
            # ids are never metric attributes
            for point in metric.points:
                assert not set(point.attributes) & {f"openclaw.{f}" for f in ins.ID_FIELDS}
                assert not any(str(v).startswith("ID-") for v in point.attributes.values()), spec.name
        # -- a few values end to end
        stuck = receiver.metric(ins.SESSION_STUCK.name)
        assert stuck.point(**{ins.STATE: "idle", ins.GATEWAY: GW}).value == 1
        age = receiver.metric(ins.SESSION_STUCK_AGE.name).points[0]
        assert age.count == 1 and age.sum == 150_000 and age.min == age.max == 150_000
        sessions = receiver.metric(ins.MONITOR_SESSIONS.name)
        assert sessions.point(**{ins.ATTENTION: "stuck", ins.REASON: "stale_session_state"}).value == 1
        # numbers travel as numbers, as upstream records them (an int_value, not a string)
        assert receiver.metric(ins.RUN_ATTEMPT.name).points[0].attributes[ins.ATTEMPT] == 2
        assert receiver.metric(ins.TOOL_LOOP.name).points[0].attributes[ins.LOOP_COUNT] == 5
        completed = receiver.metric(ins.RECOVERY_COMPLETED.name)
        assert completed.point(**{ins.STATUS: "released"}).value == 1
        released = receiver.metric(ins.MONITOR_RECOVERY_RELEASED_ITEMS.name)
        assert released.point(**{ins.STATUS: "released", ins.ACTION: "release_lane", ins.GATEWAY: GW}).value == 2
        failures = receiver.metric(ins.MONITOR_EXPORT_FAILURES.name)
        assert {p.attributes[ins.SIGNAL] for p in failures.points} == {"metrics", "logs", "traces"}
        # -- log events
        for _kind, name, severity in (
            ("long_running", ins.EVENT_LONG_RUNNING, "INFO"),
            ("stalled", ins.EVENT_STALLED, "WARN"),
            ("stuck", ins.EVENT_STUCK, "WARN"),
        ):
            record = receiver.wait_for_log(name)
            assert record.severity_text == severity and record.scope == "openclaw"
            assert record.attributes["event.name"] == name
            assert record.attributes["openclaw.sessionKey"] in IDS  # logs may carry ids
            assert record.attributes["openclaw.gatewayId"] == GW
            assert "openclaw.activeToolName" not in record.attributes
            assert record.resource["service.name"] == "diag-under-test"
        requested = receiver.wait_for_log(ins.EVENT_RECOVERY_REQUESTED)
        assert requested.attributes["openclaw.state"] == "idle"
        assert requested.attributes["openclaw.stateGeneration"] == 7
        assert requested.attributes["openclaw.allowActiveAbort"] is False
        completed_logs = receiver.wait_until(
            lambda: (lambda found: found if len(found) == 2 else None)(receiver.logs(ins.EVENT_RECOVERY_COMPLETED)),
            what="two completion records",
        )
        released = next(r for r in completed_logs if r.attributes.get("openclaw.status") == "released")
        assert released.attributes["openclaw.released"] == 2
        assert released.attributes["openclaw.action"] == "release_lane"
        # -- the stuck span
        span = receiver.wait_for_span(ins.SPAN_STUCK)
        assert span.status_code == 2 and span.scope == "openclaw"
        assert span.attributes["openclaw.state"] == "idle" and span.attributes["openclaw.ageMs"] == 150_000
        # -- headers reached the collector
        assert all(headers.get("x-api-key") == "k123" for headers in receiver.headers())
        assert recorder.export_health()["status"] == "ok"
    finally:
        recorder.shutdown()


def test_periodic_export_without_flush(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(OTEL_METRIC_EXPORT_INTERVAL="100")
    try:
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main", queueSize=1), GW)
        metric = receiver.wait_for_metric(ins.QUEUE_LANE_ENQUEUE.name)
        assert metric.point(**{ins.LANE: "main"}).value == 1
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main", queueSize=1), GW)
        receiver.wait_for_metric(
            ins.QUEUE_LANE_ENQUEUE.name, lambda m: m.point(**{ins.LANE: "main"}).value == 2
        )
    finally:
        recorder.shutdown()


def test_shutdown_flushes(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    recorder.attention_reported(attention_payload("stuck", state="idle"))
    recorder.recovery_requested(recovery_payload())
    assert receiver.requests("metrics") == 0  # the interval is an hour: nothing sent yet
    recorder.shutdown()
    assert receiver.metric(ins.SESSION_STUCK.name) is not None
    assert receiver.logs(ins.EVENT_STUCK) and receiver.logs(ins.EVENT_RECOVERY_REQUESTED)
    assert receiver.spans(ins.SPAN_STUCK)


def test_collector_outage_counted_and_exports_resume(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    try:
        lane = {ins.LANE: "main"}
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        recorder.force_flush()
        assert receiver.wait_for_metric(ins.QUEUE_LANE_ENQUEUE.name).point(**lane).value == 1

        receiver.stop()
        # ingest and the monitor go on: every call returns normally while the collector is gone
        for _ in range(1000):
            recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        recorder.events_counted({(GW, "queue.lane.enqueue", "accepted"): 1000})
        recorder.attention_reported(attention_payload("stuck", state="idle"))
        recorder.scan_finished(5.0, 0.0)
        recorder.force_flush()  # each signal tries once (bounded by the 1 s exporter timeout)

        health = recorder.export_health()
        assert health["status"] == "degraded"
        assert health["failures"]["metrics"] >= 1
        assert health["failures"]["logs"] >= 1
        assert health["failures"]["traces"] >= 1
        assert health["last_error"] is not None and health["last_error"]["error"]
        assert health["signals"]["metrics"]["failing"] is True
        body = recorder.render_metrics()[0].decode()
        assert 'openclaw_monitor_export_failures_total{openclaw_signal="metrics"' in body
        assert "openclaw_queue_lane_enqueue_total" in body  # /metrics never depends on the collector

        receiver.start()  # same port
        # Exports resume. Forced here (in the service the next interval does it); gRPC may
        # need a second attempt while its channel reconnects, so poll with a deadline. What
        # was counted during the outage arrives with the first export that succeeds
        # (cumulative); log records and spans of failed batches are dropped, new ones arrive.
        def resumed() -> bool:
            recorder.attention_reported(attention_payload("stalled"))
            recorder.attention_reported(attention_payload("stuck", state="idle"))
            recorder.force_flush()
            metric = receiver.metric(ins.QUEUE_LANE_ENQUEUE.name)
            return (
                metric is not None
                and metric.point(**lane).value == 1001
                and bool(receiver.logs(ins.EVENT_STALLED))
                and bool(receiver.spans(ins.SPAN_STUCK))
            )

        receiver.wait_until(resumed, what="exports to resume")
        failures = receiver.metric(ins.MONITOR_EXPORT_FAILURES.name)
        assert failures.point(**{ins.SIGNAL: "metrics"}).value >= 1
        health = recorder.export_health()
        assert not any(info["failing"] for info in health["signals"].values()), health
        assert health["status"] == "ok"
        assert health["failures"]["metrics"] >= 1  # the count stays: it is a counter
    finally:
        recorder.shutdown()


def test_collector_answering_errors(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    try:
        receiver.fail_with(500)
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        recorder.attention_reported(attention_payload("stuck", state="idle"))
        recorder.force_flush()
        health = recorder.export_health()
        assert health["failures"]["metrics"] >= 1 and health["failures"]["logs"] >= 1
        assert receiver.metric(ins.QUEUE_LANE_ENQUEUE.name) is None
        receiver.fail_with(None)
        recorder.force_flush()
        receiver.wait_for_metric(ins.QUEUE_LANE_ENQUEUE.name)
        assert recorder.export_health()["signals"]["metrics"]["failing"] is False
    finally:
        recorder.shutdown()


def test_a_hanging_collector_never_blocks_the_caller(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    # A long exporter timeout, so the held export is certainly still in flight below; the
    # metric export loop exports every 50 ms on its own thread.
    recorder = make_recorder(
        OTEL_METRIC_EXPORT_INTERVAL="50",
        OTEL_EXPORTER_OTLP_TIMEOUT="60000",
        OTEL_BLRP_MAX_QUEUE_SIZE="512",
    )
    try:
        with receiver.hold() as entered:
            recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
            receiver.wait_until(entered.is_set, what="an export held by the receiver")
            before = recorder.export_health()
            # while that export hangs: ingest, the monitor's calls, /metrics, /readyz all return
            for _ in range(5000):
                recorder.event_applied(Event(type="queue.lane.dequeue", lane="main", queueSize=0, waitMs=2.0), GW)
                recorder.events_counted({(GW, "queue.lane.dequeue", "accepted"): 1})
            for _ in range(1500):  # three times the log queue: the oldest are dropped, never queued unbounded
                recorder.attention_reported(attention_payload("stuck", state="idle"))
            recorder.scan_finished(1.0, 0.0)
            body = recorder.render_metrics()[0].decode()
            assert "openclaw_queue_lane_dequeue_total" in body
            after = recorder.export_health()
            # proof the calls above did not wait for the exporter: the held export has not
            # returned (no export finished, none failed) and the receiver still holds it
            assert after["signals"]["metrics"]["exports"] == before["signals"]["metrics"]["exports"]
            assert after["failures"] == before["failures"]
            assert receiver.holding
        # released: the exports complete and the data arrives
        recorder.force_flush()
        receiver.wait_for_metric(
            ins.QUEUE_LANE_DEQUEUE.name, lambda m: m.point(**{ins.LANE: "main"}).value == 5000
        )
    finally:
        recorder.shutdown()


# --------------------------------------------------------------------------------------------
# What the exporters read themselves, seen at the receiver
# --------------------------------------------------------------------------------------------
def test_headers_and_compression_reach_the_collector(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(
        OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20abc, X-Tenant=blue",
        OTEL_EXPORTER_OTLP_METRICS_HEADERS="x-tenant=green",
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
    )
    try:
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        recorder.attention_reported(attention_payload("stuck", state="idle"))
        assert recorder.force_flush()
        logs, metrics = receiver.headers("logs"), receiver.headers("metrics")
        assert logs and metrics
        # percent-decoded values, lower-case keys (gRPC metadata requires them)
        assert all(h.get("authorization") == "Bearer abc" and h.get("x-tenant") == "blue" for h in logs)
        # a per-signal variable replaces the common one (the OTel spec's rule, and the exporters')
        assert all(h.get("x-tenant") == "green" and "authorization" not in h for h in metrics)
        if receiver.protocol == "http":
            assert all(h.get("content-encoding") == "gzip" for h in logs + metrics)
        assert "abc" not in repr(recorder.export_health())  # headers are never shown
    finally:
        recorder.shutdown()


def test_exports_go_where_readyz_says(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    if receiver.protocol == "http":
        # the exporters append v1/<signal> to the base endpoint; the receiver 404s any other path
        recorder = make_recorder(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint + "/")
        shown = f"{receiver.endpoint}/v1/metrics"
    else:
        # no scheme: plaintext only because OTEL_EXPORTER_OTLP_INSECURE says so (else TLS, and
        # the plaintext receiver would never see a request)
        shown = f"127.0.0.1:{receiver.port}"
        recorder = make_recorder(OTEL_EXPORTER_OTLP_ENDPOINT=shown, OTEL_EXPORTER_OTLP_INSECURE="true")
    try:
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        assert recorder.force_flush()
        assert receiver.wait_for_metric(ins.QUEUE_LANE_ENQUEUE.name).point(**{ins.LANE: "main"}).value == 1
        health = recorder.export_health()
        assert health["signals"]["metrics"]["endpoint"] == shown and health["signals"]["metrics"]["exports"] >= 1
    finally:
        recorder.shutdown()


def test_the_export_timeout_is_in_milliseconds(receiver: OtlpReceiver, make_recorder: MakeRecorder) -> None:
    """OTEL_EXPORTER_OTLP_TIMEOUT=300 gives up after 300 ms (the spec's unit), not 300 s (what
    the Python exporters would make of it on their own): the forced export returns, failed,
    while the receiver still holds the request."""
    recorder = make_recorder(OTEL_EXPORTER_OTLP_TIMEOUT="300")
    try:
        recorder.event_applied(Event(type="queue.lane.enqueue", lane="main"), GW)
        with receiver.hold() as entered:
            flushed = threading.Event()
            threading.Thread(target=lambda: (recorder.force_flush(), flushed.set()), daemon=True).start()
            receiver.wait_until(entered.is_set, what="an export held by the receiver")
            receiver.wait_until(flushed.is_set, timeout=60, what="the held export to give up")
            assert receiver.holding
            health = recorder.export_health()
            assert health["signals"]["metrics"]["failing"] and health["failures"]["metrics"] >= 1
    finally:
        recorder.shutdown()
