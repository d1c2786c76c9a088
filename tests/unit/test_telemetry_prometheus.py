"""/metrics: the Prometheus names and labels of deploy.md / telemetry.md, pinned.

The exposition is produced by telemetry/prometheus.py's collector (in a private prometheus_client
registry); tests/unit/test_telemetry_exposition.py holds it to opentelemetry-exporter-prometheus'
text. These tests pin what it emits for our instruments, and that it matches
instruments.prometheus_name().
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.events import Event
from telemetry import instruments as ins
from telemetry.setup import build_recorder
from tests.support.telemetry_scenario import GW, attention_payload, drive_all


class FailingSpanExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


@pytest.fixture
def exposition() -> str:
    recorder = build_recorder(True, 16, env={}, span_exporter=FailingSpanExporter())
    try:
        drive_all(recorder)
        for i in range(20):  # past the limit of 16: the overflow counter appears
            recorder.event_applied(Event(type="queue.lane.enqueue", lane=f"lane-{i}"), GW)
        recorder.force_flush()  # the failing span export is counted
        body, content_type = recorder.render_metrics()
        assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
        yield body.decode()
    finally:
        recorder.shutdown()


@functools.lru_cache(maxsize=8)
def series(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> label sets, parsed by prometheus_client's own parser."""
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def has(text: str, name: str, **labels: str) -> bool:
    return any(all(found.get(k) == v for k, v in labels.items()) for found in series(text).get(name, []))


def test_the_names_the_spec_pins(exposition: str) -> None:
    assert has(exposition, "openclaw_session_stuck_total", openclaw_state="idle", openclaw_gateway=GW)
    assert has(exposition, "openclaw_session_stuck_age_ms_milliseconds_bucket", openclaw_state="idle", le="300000")
    assert has(exposition, "openclaw_session_stuck_age_ms_milliseconds_count")
    assert has(exposition, "openclaw_session_stuck_age_ms_milliseconds_sum")
    assert has(exposition, "openclaw_session_recovery_requested_total", openclaw_action="recover")
    assert has(exposition, "openclaw_session_recovery_completed_total", openclaw_status="released")
    assert has(exposition, "openclaw_session_recovery_completed_total", openclaw_status="skipped")
    assert not any("openclaw_released" in labels for labels in series(exposition)["openclaw_session_recovery_completed_total"])
    assert has(exposition, "openclaw_monitor_recovery_released_items_total", openclaw_status="released",
               openclaw_action="release_lane", openclaw_gateway=GW)
    assert has(exposition, "openclaw_monitor_sessions", openclaw_attention="stuck", openclaw_reason="stale_session_state")
    assert has(exposition, "openclaw_monitor_gateways", openclaw_status="silent")
    assert has(exposition, "openclaw_session_state_total", openclaw_state="idle", openclaw_reason="stuck_recovery:released")
    assert has(exposition, "openclaw_queue_lane_enqueue_total", openclaw_lane="session")
    assert has(exposition, "openclaw_queue_depth_bucket", openclaw_channel="heartbeat")
    assert has(exposition, "openclaw_monitor_export_failures_total", openclaw_signal="traces")
    assert has(exposition, "openclaw_monitor_telemetry_overflow_total", openclaw_instrument="openclaw.queue.lane.enqueue")
    assert has(exposition, "openclaw_queue_lane_enqueue_total", openclaw_overflow="true")
    # unit handling: `{session}` adds nothing, `1` adds nothing (no _ratio), `ms` adds _milliseconds
    assert "openclaw_monitor_sessions_session" not in exposition
    assert "_ratio" not in exposition
    assert "openclaw_model_call_request_bytes_bucket" in series(exposition)
    assert "openclaw_model_call_request_bytes_bytes" not in exposition


def test_every_instrument_has_its_documented_prometheus_name(exposition: str) -> None:
    found = series(exposition)
    for spec in ins.INSTRUMENTS:
        for name in ins.prometheus_series(spec):
            assert name in found, (spec.name, name)
    # and nothing else of ours is exported under another name
    ours = {n for n in found if n.startswith("openclaw_")}
    documented = {n for spec in ins.INSTRUMENTS for n in ins.prometheus_series(spec)}
    assert ours <= documented, ours - documented


def test_labels_are_the_translated_attribute_keys(exposition: str) -> None:
    allowed_by_family: dict[str, set[str]] = {}
    for spec in ins.INSTRUMENTS:
        labels = {ins.prometheus_label(key) for key in spec.attribute_keys}
        labels |= {"openclaw_overflow", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}
        if spec.kind == "histogram":
            labels.add("le")
        for name in ins.prometheus_series(spec):
            allowed_by_family[name] = labels
    for name, label_sets in series(exposition).items():
        if not name.startswith("openclaw_"):
            continue
        for labels in label_sets:
            present = {key for key, value in labels.items() if value != ""}
            assert present <= allowed_by_family[name], (name, present - allowed_by_family[name])


def test_no_id_in_any_label(exposition: str) -> None:
    assert "ID-" not in exposition


def test_histogram_buckets_on_metrics(exposition: str) -> None:
    found = series(exposition)
    les = [labels["le"] for labels in found["openclaw_session_stuck_age_ms_milliseconds_bucket"]]
    assert [float(le) for le in les] == [float(b) for b in ins.AGE_BUCKETS_MS] + [float("inf")]
    assert les[-1] == "+Inf" and "1.8e+06" in les  # the collector's spelling (test_telemetry_exposition.py)
    les = [labels["le"] for labels in found["openclaw_monitor_scan_duration_ms_milliseconds_bucket"]]
    assert [float(le) for le in les] == [float(b) for b in ins.SCAN_BUCKETS_MS] + [float("inf")]


def test_two_recorders_in_one_process_are_independent() -> None:
    before = generate_latest(REGISTRY)
    first = build_recorder(True, 2048, env={})
    second = build_recorder(True, 2048, env={})
    try:
        first.attention_reported(attention_payload("stuck", state="idle"))
        one = first.render_metrics()[0].decode()
        two = second.render_metrics()[0].decode()
        assert "openclaw_session_stuck_total" in one
        assert "openclaw_session_stuck_total" not in two
        # the process-global registry is never touched
        assert b"openclaw_" not in generate_latest(REGISTRY)
        assert re.sub(rb"[\d.e+]+\n", b"", before) == re.sub(rb"[\d.e+]+\n", b"", generate_latest(REGISTRY))
    finally:
        first.shutdown()
        second.shutdown()


def test_render_after_shutdown_is_harmless() -> None:
    recorder = build_recorder(True, 2048, env={})
    recorder.shutdown()
    body, _ = recorder.render_metrics()
    assert b"openclaw_" not in body


def test_concurrent_scrapes_never_mix_samples() -> None:
    import threading

    recorder = build_recorder(True, 2048, env={})
    try:
        drive_all(recorder)
        bodies: list[str] = []
        errors: list[BaseException] = []

        def scrape() -> None:
            try:
                for _ in range(20):
                    bodies.append(recorder.render_metrics()[0].decode())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=scrape) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len(bodies) == 80
        for body in bodies:
            lines = [line for line in body.splitlines() if line.startswith("openclaw_session_stuck_total{")]
            assert len(lines) == 1, lines
    finally:
        recorder.shutdown()


@pytest.mark.parametrize(("prefix", "tokens", "events"), [
    ("acme.", "acme_tokens_total", "acme_monitor_events_total"),
    ("acme.openclaw.", "acme_openclaw_tokens_total", "acme_openclaw_monitor_events_total"),
    ("", "tokens_total", "monitor_events_total"),
])
def test_the_metric_name_prefix_replaces_openclaw(prefix: str, tokens: str, events: str) -> None:
    """OPENCLAW_DIAG_METRIC_NAME_PREFIX, as upstream's metricNamePrefix: it replaces `openclaw.`
    on every name that has it; unset keeps every name."""
    recorder = build_recorder(True, 2048, env={}, metric_name_prefix=prefix)
    try:
        drive_all(recorder)
        text = recorder.render_metrics()[0].decode()
        names = set(series(text))
        assert tokens in names and events in names
        assert not any(name.startswith("openclaw_") for name in names)
    finally:
        recorder.shutdown()
