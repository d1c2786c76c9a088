"""/metrics: the metric store's data as Prometheus text, through prometheus_client's public
custom-collector API (docs/telemetry.md, "Prometheus names").

Why not opentelemetry-exporter-prometheus' ``PrometheusMetricReader``: a reader gets data only
from a ``MeterProvider``, or through the SDK reader's internal collect hook, which the SDK
documents as internal. The store (telemetry/store.py) already builds the SDK's export model
(``MetricsData``), so ``StoreCollector`` turns that into prometheus_client metric families itself,
by the rules that exporter follows (the OpenTelemetry "Prometheus and OpenMetrics
compatibility" spec), and the text stays what that exporter produced:
tests/unit/test_telemetry_exposition.py compares the two on the same measurements.

The rules:

- metric name: each run of characters outside ``[a-zA-Z0-9:]`` becomes ``_``
  (``openclaw.queue.wait_ms`` -> ``openclaw_queue_wait_ms``);
- unit: ``{annotations}`` dropped, then ``ms`` -> ``milliseconds``, ``By`` -> ``bytes``, ``s``
  -> ``seconds``, ``1`` -> nothing; prometheus_client appends it unless the name already ends
  with it (``_ms_milliseconds``, but ``request_bytes``);
- a monotonic cumulative Sum is a counter (prometheus_client adds ``_total``), any other Sum
  and a Gauge a gauge, a Histogram a histogram with cumulative ``le`` buckets and
  ``_count``/``_sum``; the ``le`` text is Go's shortest float (``1000``, ``1.8e+06``, ``+Inf``),
  as the OTel Collector writes it, where the Python exporter writes ``1000.0`` and ``1800000.0``:
  the one place the text differs from that exporter's;
- labels: each run of characters outside ``[a-zA-Z0-9]`` in an attribute key becomes ``_``,
  plus ``otel_scope_name``/``otel_scope_version``/``otel_scope_schema_url``; every sample of a
  family carries every label of the family (``""`` where a point lacks the attribute);
- ``target_info`` carries the resource attributes.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.core import Metric as Family

try:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
except ImportError:  # pragma: no cover - older prometheus_client
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE

_NAME_REJECTS = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_REJECTS = re.compile(r"[^a-zA-Z0-9]+")
_UNIT_ANNOTATION = re.compile(r"{.*}")
# The units the instruments use (telemetry/instruments.py; tests/e2e/test_telemetry_instruments.py
# keeps them to these) and their Prometheus words, per the compatibility spec's table.
UNIT_WORDS = {"1": "", "ms": "milliseconds", "s": "seconds", "By": "bytes"}


def metric_name(name: str) -> str:
    """An OTel metric name as a Prometheus family name (before unit and `_total` suffixes)."""
    if name[:1].isdigit():
        name = "_" + name[1:]
    return _NAME_REJECTS.sub("_", name)


def unit_word(unit: str) -> str:
    """The Prometheus suffix of an OTel unit ("" for none)."""
    unit = _UNIT_ANNOTATION.sub("", unit)
    if unit in UNIT_WORDS:
        return UNIT_WORDS[unit]
    return _NAME_REJECTS.sub("_", unit).strip("_")  # a unit outside the table: as written


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name."""
    if key[:1].isdigit():
        key = "_" + key[1:]
    return _LABEL_REJECTS.sub("_", key)


def full_name(name: str, unit: str, counter: bool) -> str:
    """The exposed name of a family: `openclaw_session_stuck_total`, `..._ms_milliseconds`."""
    base, word = metric_name(name), unit_word(unit)
    if word and not base.endswith("_" + word):  # what prometheus_client's Metric does
        base = f"{base}_{word}"
    return base + "_total" if counter else base


def _label_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


# --------------------------------------------------------------------------------------------
# The collector
# --------------------------------------------------------------------------------------------
class StoreCollector:
    """A prometheus_client custom collector over a `MetricsData` source (MetricStore.collect).

    Stateless: each scrape collects afresh, so concurrent scrapes never share data.
    """

    def __init__(self, source: Callable[[], MetricsData]) -> None:
        self._source = source

    def collect(self) -> Iterator[Family]:
        data = self._source()
        resource: dict[str, Any] = {}
        for rm in data.resource_metrics:
            resource.update(rm.resource.attributes)
        yield InfoMetricFamily(
            "target", "Target metadata", value={label_name(k): _label_value(v) for k, v in resource.items()}
        )
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                scope = {
                    "otel_scope_name": sm.scope.name or "",
                    "otel_scope_version": sm.scope.version or "",
                    "otel_scope_schema_url": sm.scope.schema_url or "",
                }
                for metric in sm.metrics:
                    family = _family(metric.name, metric.description or "", metric.unit or "", metric.data, scope)
                    if family is not None:
                        yield family


def _family(name: str, description: str, unit: str, data: Any, scope: Mapping[str, str]) -> Family | None:
    rows: list[dict[str, str]] = []
    for point in data.data_points:
        labels = dict(scope)
        labels.update((label_name(key), _label_value(value)) for key, value in point.attributes.items())
        rows.append(labels)
    keys = sorted({key for labels in rows for key in labels})
    values = [[labels.get(key, "") for key in keys] for labels in rows]
    base, word = metric_name(name), unit_word(unit)
    family: Any
    if isinstance(data, Histogram):
        family = HistogramMetricFamily(base, description, labels=keys, unit=word)
        for label_values, point in zip(values, data.data_points):
            family.add_metric(label_values, _buckets(point.bucket_counts, point.explicit_bounds), point.sum)
        return family
    if isinstance(data, Sum) and data.is_monotonic:
        family = CounterMetricFamily(base, description, labels=keys, unit=word)
    elif isinstance(data, (Sum, Gauge)):
        family = GaugeMetricFamily(base, description, labels=keys, unit=word)
    else:  # pragma: no cover - the store builds only the three kinds above
        return None
    for label_values, point in zip(values, data.data_points):
        family.add_metric(label_values, point.value)
    return family


def _buckets(counts: Any, bounds: Any) -> list[tuple[str, float]]:
    """Cumulative `le` buckets, each bound spelled as the OTel Collector spells it (`go_float`)."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip([*bounds, math.inf], counts):
        total += count
        out.append((go_float(float(bound)), total))
    return out


def go_float(value: float) -> str:
    """A float as Go's `strconv.FormatFloat(value, 'g', -1, 64)` writes it: the shortest digits
    that read back the same, in exponent form from 1e6 on (`1000`, `0.5`, `1.8e+06`), and
    `+Inf`. The OTel Collector's Prometheus exporter writes `le` so; the same spelling here means
    a selector on a bound (`le="10000"`) finds the series on both paths (docs/telemetry.md)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    count = len(mantissa)
    point = count + exponent - 1  # the decimal exponent of the first digit
    prefix = "-" if sign else ""
    if point < -4 or point >= 6:
        fraction = f".{mantissa[1:]}" if count > 1 else ""
        return f"{prefix}{mantissa[0]}{fraction}e{'+' if point >= 0 else '-'}{abs(point):02d}"
    if exponent >= 0:
        return prefix + mantissa + "0" * exponent
    whole = count + exponent  # digits before the decimal point
    if whole > 0:
        return f"{prefix}{mantissa[:whole]}.{mantissa[whole:]}"
    return f"{prefix}0.{'0' * -whole}{mantissa}"


# --------------------------------------------------------------------------------------------
# The endpoint
# --------------------------------------------------------------------------------------------
class MetricsEndpoint:
    """The /metrics body: a collector in a registry of our own (several app instances can live
    in one process, and prometheus_client's global registry is never touched)."""

    def __init__(self, source: Callable[[], MetricsData]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = StoreCollector(source)
        self.registry.register(self._collector)
        self._lock = threading.Lock()
        self._closed = False

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE

    def close(self) -> None:
        """After this, /metrics answers an empty body (the service is stopping)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.registry.unregister(self._collector)
