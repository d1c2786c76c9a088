"""/metrics text from telemetry/prometheus.py is what opentelemetry-exporter-prometheus produces.

The exporter's ``PrometheusMetricReader`` is the reference, fed through its public route: a
``MeterProvider`` and the SDK's own instruments, given the same measurements as the metric store
(every instrument; attribute sets full, partial and the overflow one; values on bucket bounds,
between them and past the last). Compared byte for byte: names, unit suffixes, `_total`, labels
and their order, `le` texts, values, target_info.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from telemetry import instruments as ins
from telemetry.instruments import InstrumentSpec
from telemetry.prometheus import UNIT_WORDS, MetricsEndpoint, go_float
from telemetry.store import MetricStore

VERSION = "9.8.7"
RESOURCE = Resource(
    {"service.name": "diag-under-test", "service.version": VERSION, "deployment.environment": "test", "host.arch": 64}
)

Row = tuple[dict[str, str], float]


def _values(spec: InstrumentSpec) -> list[float]:
    """Values that land on bucket bounds (upper-inclusive), between them, past the last, at 0."""
    if spec.kind == "histogram":
        bounds = list(spec.buckets or ())
        return [0, bounds[0], bounds[0] + 0.5, bounds[len(bounds) // 2], bounds[-1] * 3, 12.25]
    if spec.value_type == "float":
        return [0.25, 1.5, 1000.0]
    return [1, 3, 40]


def measurements(spec: InstrumentSpec) -> list[Row]:
    """Per instrument: the full attribute set, one with keys missing (labels backfilled with ""),
    and the overflow series; values of every shape the instrument takes."""
    keys = spec.attribute_keys
    full = {key: f"v-{i}" for i, key in enumerate(keys)}
    partial = {key: "other" for key in keys[::2]}
    rows: list[Row] = []
    for attrs in (full, partial, dict(ins.OVERFLOW_ATTRIBUTES)):
        for value in _values(spec):
            rows.append((attrs, value))
    return rows


def observed_rows(spec: InstrumentSpec) -> list[Row]:
    keys = spec.attribute_keys
    return [({key: "a" for key in keys}, -250), ({key: "b" for key in keys[:1]}, 7), ({}, 0)]


def _observed(spec: InstrumentSpec) -> bool:
    return spec.kind == "gauge" or spec is ins.MONITOR_EXPORT_FAILURES


def ours() -> str:
    store = MetricStore(RESOURCE, cardinality_limit=2048, scope_version=VERSION)
    for spec in ins.INSTRUMENTS:
        if _observed(spec):
            store.observe(spec, lambda spec=spec: observed_rows(spec))
            continue
        instrument = store.instrument(spec)
        for attrs, value in measurements(spec):
            series = instrument.get(tuple(attrs.items()))
            if spec.kind == "histogram":
                series.record(value)
            else:
                series.value += value
    endpoint = MetricsEndpoint(store.collect)
    try:
        return endpoint.render()[0].decode()
    finally:
        endpoint.close()


def sdk_provider() -> tuple[MeterProvider, CollectorRegistry, InMemoryMetricReader]:
    """The same measurements through the SDK's own instruments, read by the Prometheus exporter
    (into a registry of its own) and by an in-memory reader (the SDK's MetricsData)."""
    registry = CollectorRegistry(auto_describe=False)
    memory = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(registry=registry), memory], resource=RESOURCE, shutdown_on_exit=False
    )
    meter = provider.get_meter(ins.SCOPE_NAME, VERSION)
    for spec in ins.INSTRUMENTS:
        common: dict[str, Any] = {"unit": spec.unit, "description": spec.description}
        if _observed(spec):
            def callback(options: CallbackOptions, spec: InstrumentSpec = spec) -> Iterable[Observation]:
                return [Observation(value, attrs) for attrs, value in observed_rows(spec)]

            make = meter.create_observable_gauge if spec.kind == "gauge" else meter.create_observable_counter
            make(spec.name, callbacks=[callback], **common)
        elif spec.kind == "histogram":
            histogram = meter.create_histogram(
                spec.name, explicit_bucket_boundaries_advisory=[float(b) for b in spec.buckets or ()], **common
            )
            for attrs, value in measurements(spec):
                histogram.record(value, attrs)
        else:
            counter = meter.create_counter(spec.name, **common)
            for attrs, value in measurements(spec):
                counter.add(value, attrs)
    return provider, registry, memory


_LE = re.compile(r'le="([^"]+)"')


def collector_le(text: str) -> str:
    """The exporter's text with each `le` as the OTel Collector spells it: the one difference
    our /metrics keeps on purpose (telemetry/prometheus.py, go_float)."""
    return _LE.sub(lambda m: f'le="{go_float(float(m.group(1)))}"', text)


def families(text: str) -> dict[str, list[str]]:
    """Exposition text split into families (HELP line -> its lines)."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = out.setdefault(line, [])
        current.append(line)
    return out


def test_the_translation_is_the_exporters() -> None:
    """The same MetricsData (the SDK's own) rendered by the exporter and by our collector."""
    provider, registry, memory = sdk_provider()
    try:
        expected = collector_le(generate_latest(registry).decode())
        assert "openclaw_session_stuck_age_ms_milliseconds_bucket" in expected  # the reference works
        data = memory.get_metrics_data()
        assert data is not None
        endpoint = MetricsEndpoint(lambda: data)
        try:
            assert endpoint.render()[0].decode() == expected
        finally:
            endpoint.close()
    finally:
        provider.shutdown()


def test_the_store_renders_what_the_sdk_would() -> None:
    """The store's aggregation, rendered, equals the SDK's for the same measurements, family by
    family (the order differs: the store lists families as telemetry/instruments.py does, the
    SDK puts observable instruments last)."""
    provider, registry, _ = sdk_provider()
    try:
        expected = collector_le(generate_latest(registry).decode())
    finally:
        provider.shutdown()
    text = ours()
    assert families(text) == families(expected)
    assert [name for name in families(text) if "openclaw_" in name] == [
        f"# HELP {ins.prometheus_name(spec)} {spec.description}" for spec in ins.INSTRUMENTS
    ]


def test_every_unit_has_its_prometheus_word() -> None:
    """A new unit must be added to telemetry/prometheus.py's table, not fall through to its
    spelled-as-is fallback unnoticed."""
    for spec in ins.INSTRUMENTS:
        assert spec.unit.startswith("{") or spec.unit in UNIT_WORDS, spec.name


# strconv.FormatFloat(v, 'g', -1, 64), as Go 1.22 prints them
GO_SPELLINGS = {
    0.0: "0", 5.0: "5", 7500.0: "7500", 10000.0: "10000", 120000.0: "120000", 999999.0: "999999",
    1e6: "1e+06", 1800000.0: "1.8e+06", 21600000.0: "2.16e+07", 86400000.0: "8.64e+07",
    1234567.0: "1.234567e+06", 0.5: "0.5", 0.0001: "0.0001", 0.00001: "1e-05", float("inf"): "+Inf",
}


def test_bounds_are_spelled_as_the_collector_spells_them() -> None:
    assert {value: go_float(value) for value in GO_SPELLINGS} == GO_SPELLINGS
    text = ours()
    assert 'openclaw_session_stuck_age_ms_milliseconds_bucket{' in text
    bounds = set(_LE.findall(text))
    assert {"10000", "1.8e+06", "8.64e+07", "+Inf"} <= bounds  # 1e6 and above included
    assert not any(bound.endswith(".0") for bound in bounds)
