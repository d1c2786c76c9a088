"""The metric state behind every instrument, and its export data (``MetricStore.collect``).

Why not the SDK's synchronous instruments: measured here (SDK 1.45, one reader) a
``Counter.add`` costs ~6 µs and a ``Histogram.record`` ~6.5 µs, ~9-10 µs with a second
reader (the OTLP one beside /metrics): the SDK cleans and hashes the attribute dict and takes
locks on every measurement. The ingest hot path feeds several instruments per event at tens of
thousands of events/s, so the store below aggregates in place instead — a cached series
object per attribute set, an int/float add, a ``bisect`` for histograms (~0.2 µs) — and hands
the SDK's own export data model (``MetricsData`` with cumulative ``Sum``/``Histogram``/
``Gauge`` points, explicit bucket boundaries from instruments.py) to public APIs only: the
OTLP exporter's ``MetricExporter.export`` (telemetry/otlp.py's export loop) and a
prometheus_client collector for /metrics (telemetry/prometheus.py).

Concurrency: series are created under a lock; updating an existing series is lock-free and
meant for one writer thread (the service's event loop). Collection runs on any thread (the
export thread, the /metrics handler) and only takes GIL-atomic copies; a histogram's count is
derived from its bucket copy, so a point is always self-consistent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry import instruments as ins
from telemetry.instruments import InstrumentSpec

_log = logging.getLogger(__name__)

_CUMULATIVE = AggregationTemporality.CUMULATIVE
_RAW_CACHE_MAX = 8192  # raw attribute tuples remembered per instrument before the cache resets

Attrs = dict[str, str]
Pairs = tuple[tuple[str, Any], ...]
GaugeRows = Iterable[tuple[Mapping[str, str | None], float]]


class CounterSeries:
    __slots__ = ("attrs", "value")

    def __init__(self, attrs: Attrs) -> None:
        self.attrs = attrs
        self.value: float = 0


class HistogramSeries:
    __slots__ = ("attrs", "bounds", "counts", "sum", "min", "max")

    def __init__(self, attrs: Attrs, bounds: tuple[float, ...]) -> None:
        self.attrs = attrs
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, value: float) -> None:
        # OTel explicit buckets are upper-inclusive: bucket i holds (bounds[i-1], bounds[i]].
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


# --------------------------------------------------------------------------------------------
# Attribute normalisation (memoised: the hot path sees the same few values over and over)
# --------------------------------------------------------------------------------------------
_VALUE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")
_NORM_CACHE: dict[str, str] = {}
_NORM_CACHE_MAX = 65536


def normalise_value(raw: Any) -> str | int | float | None:
    """An attribute value as docs/telemetry.md allows it: `[A-Za-z0-9_.:-]{1,120}`, else `unknown`.

    None and the empty string mean "absent" (omitted, unless the event table gives the
    attribute upstream's default: telemetry/event_table.py). Booleans become `true`/`false`;
    numbers stay numbers.
    """
    if raw.__class__ is not str:
        return _normalise(raw)  # rare: numbers (attempt), booleans; True == 1 must not share a memo
    cached = _NORM_CACHE.get(raw)
    if cached is not None:
        return cached
    result = _normalise(raw)
    if result is not None:
        if len(_NORM_CACHE) >= _NORM_CACHE_MAX:
            _NORM_CACHE.clear()
        _NORM_CACHE[raw] = result
    return result


def _normalise(raw: Any) -> str | int | float | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return ins.TRUE if raw else ins.FALSE
    if isinstance(raw, (int, float)):
        # a number stays a number (upstream's openclaw.attempt, openclaw.loop.count): an int
        # attribute on OTLP, its decimal text on /metrics
        return int(raw) if isinstance(raw, float) and raw.is_integer() else raw
    if isinstance(raw, str):
        text = raw.strip()
    else:
        return ins.UNKNOWN_VALUE
    if text == "":
        return None
    if len(text) > 120 or not _VALUE_CHARS.issuperset(text) or _names_an_agent(text):
        return ins.UNKNOWN_VALUE
    return text


def _names_an_agent(text: str) -> bool:
    """Upstream's `normalizeDiagnosticValue`: a value naming an agent session (`agent:main:…`,
    `cron:agent:…`) is an id, so it falls back."""
    lowered = text.lower()
    return lowered.startswith("agent:") or ":agent:" in lowered


def normalise_lane(raw: Any) -> str | None:
    """Upstream's `normalizeDiagnosticLane`: a lane keeps only the text before its first `:`
    (`session:<key>` -> `session`, `workboard:<board>:<card>` -> `workboard`); a lane naming an
    agent falls back."""
    if not isinstance(raw, str):
        return normalise_value(raw)
    text = raw.strip()
    if text.lower().startswith("agent:"):
        return ins.UNKNOWN_VALUE
    return normalise_value(text.split(":", 1)[0])


_NORMALISERS: dict[str, Callable[[Any], str | None]] = {ins.LANE: normalise_lane}


def attributes_from(pairs: Iterable[tuple[str, Any]]) -> Attrs:
    attrs: Attrs = {}
    for key, raw in pairs:
        if raw is None:
            continue
        value = _NORMALISERS.get(key, normalise_value)(raw)
        if value is not None:
            attrs[key] = value
    return attrs


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------
class _Instrument:
    """Series of one synchronous instrument, behind the cardinality guard."""

    __slots__ = ("spec", "store", "series", "cache", "overflow", "_make")

    def __init__(self, spec: InstrumentSpec, store: MetricStore) -> None:
        self.spec = spec
        self.store = store
        self.series: dict[tuple[tuple[str, str], ...], Any] = {}
        self.cache: dict[Any, Any] = {}  # raw call-site tuple -> series (admitted ones only)
        self.overflow: Any = None
        if spec.kind == "histogram":
            bounds = tuple(float(b) for b in spec.buckets or ())
            self._make: Callable[[Attrs], Any] = lambda attrs: HistogramSeries(attrs, bounds)
        else:
            self._make = CounterSeries

    def get(self, pairs: Pairs) -> Any:
        """The series for a raw attribute tuple; the hot path calls `cache.get` itself first."""
        series = self.cache.get(pairs)
        if series is not None:
            return series
        return self.resolve(pairs)

    def resolve(self, pairs: Pairs, cache_key: Any = None) -> Any:
        """The series for `pairs`, remembered under `cache_key` (default: `pairs` itself; the
        compiled event handlers of telemetry/event_table.py use a cheaper key of raw values)."""
        attrs = attributes_from(pairs)
        key = tuple(sorted(attrs.items()))
        with self.store.lock:
            series = self.series.get(key)
            if series is None:
                if len(self.series) >= self.store.cardinality_limit:
                    return self._overflowed()
                series = self._make(attrs)
                self.series[key] = series
            if len(self.cache) >= _RAW_CACHE_MAX:
                self.cache.clear()
            self.cache[pairs if cache_key is None else cache_key] = series
            return series

    def _overflowed(self) -> Any:
        # Not cached: every measurement that lands here is counted as refused.
        if self.overflow is None:
            self.overflow = self._make(dict(ins.OVERFLOW_ATTRIBUTES))
        self.store.count_overflow(self.spec.name)
        return self.overflow

    def snapshot(self) -> list[Any]:
        points = list(self.series.values())
        if self.overflow is not None:
            points.append(self.overflow)
        return points


class _Observed:
    """An instrument whose points are read from a callback at collection time."""

    __slots__ = ("spec", "callback", "combine")

    def __init__(
        self,
        spec: InstrumentSpec,
        callback: Callable[[], GaugeRows],
        combine: Callable[[float, float], float],
    ) -> None:
        self.spec = spec
        self.callback = callback
        self.combine = combine


def _sum(a: float, b: float) -> float:
    return a + b


class MetricStore:
    """All metric series of one service instance, and their export as ``MetricsData``."""

    def __init__(
        self,
        resource: Resource,
        cardinality_limit: int = 2048,
        scope_version: str | None = None,
        name_prefix: str | None = None,
    ) -> None:
        if cardinality_limit < 1:
            raise ValueError("cardinality_limit must be >= 1")
        self.cardinality_limit = cardinality_limit
        self.resource = resource
        self.scope = InstrumentationScope(ins.SCOPE_NAME, scope_version)
        self.lock = threading.Lock()
        self.start_ns = time.time_ns()
        self._instruments: dict[str, _Instrument] = {}
        self._observed: dict[str, _Observed] = {}
        self.name_prefix = name_prefix
        for spec in ins.INSTRUMENTS:
            if spec.kind != "gauge" and spec is not ins.MONITOR_EXPORT_FAILURES:
                self._instruments[spec.name] = _Instrument(spec, self)
        self._overflow = self._instruments[ins.MONITOR_TELEMETRY_OVERFLOW.name]

    # -- writing --------------------------------------------------------------------------
    def exported_name(self, name: str) -> str:
        """Upstream's `metricNamePrefix` (OPENCLAW_DIAG_METRIC_NAME_PREFIX): it replaces the
        `openclaw.` of every name that has it; unset keeps the names, `gen_ai.*` never changes."""
        if self.name_prefix is None or not name.startswith(ins.NAME_PREFIX):
            return name
        return self.name_prefix + name[len(ins.NAME_PREFIX):]

    def instrument(self, spec: InstrumentSpec) -> _Instrument:
        return self._instruments[spec.name]

    def count_overflow(self, instrument_name: str) -> None:
        # called with self.lock held: resolve the overflow counter's series directly
        key = ((ins.INSTRUMENT, instrument_name),)
        series = self._overflow.series.get(key)
        if series is None:
            series = self._overflow.series[key] = CounterSeries({ins.INSTRUMENT: instrument_name})
        series.value += 1

    def observe(
        self,
        spec: InstrumentSpec,
        callback: Callable[[], GaugeRows],
        combine: Callable[[float, float], float] = _sum,
    ) -> None:
        """Register the callback of an observable instrument (gauge, or a counter read from
        elsewhere such as the export failure counts). Rows sharing an attribute set after
        normalisation are merged with `combine`; past the cardinality limit rows merge into
        the overflow row."""
        self._observed[spec.name] = _Observed(spec, callback, combine)

    def forget_gateway(self, gateway: str) -> int:
        """Drop every series of one gateway: it moved to another instance, whose series carry
        on from there, so its alerts follow it without a stale copy here (docs/scale-out.md)."""
        dropped = 0
        with self.lock:
            for instrument in self._instruments.values():
                gone = [key for key, series in instrument.series.items() if series.attrs.get(ins.GATEWAY) == gateway]
                for key in gone:
                    del instrument.series[key]
                if gone:
                    instrument.cache.clear()  # it may still point at a dropped series
                    dropped += len(gone)
        return dropped

    # -- reading --------------------------------------------------------------------------
    def collect(self) -> MetricsData:
        """Every instrument with points, as cumulative export data (any thread may call it)."""
        now = time.time_ns()
        metrics: list[Metric] = []
        for spec in ins.INSTRUMENTS:
            metric = None
            if spec.name in self._instruments:
                metric = self._metric(self._instruments[spec.name], now)
            elif spec.name in self._observed:
                metric = self._observed_metric(self._observed[spec.name], now)
            if metric is not None:
                metrics.append(metric)
        scope_metrics = ScopeMetrics(scope=self.scope, metrics=metrics, schema_url="")
        return MetricsData(
            resource_metrics=[ResourceMetrics(resource=self.resource, scope_metrics=[scope_metrics], schema_url="")]
        )

    def _metric(self, instrument: _Instrument, now: int) -> Metric | None:
        spec = instrument.spec
        series_list = instrument.snapshot()
        if not series_list:
            return None
        start = self.start_ns
        if spec.kind == "histogram":
            hist_points = []
            bounds = [float(b) for b in spec.buckets or ()]
            for series in series_list:
                counts = list(series.counts)
                count = sum(counts)
                if count == 0:
                    continue
                low, high = series.min, series.max
                hist_points.append(
                    HistogramDataPoint(
                        attributes=dict(series.attrs),
                        start_time_unix_nano=start,
                        time_unix_nano=now,
                        count=count,
                        sum=series.sum,
                        bucket_counts=counts,
                        explicit_bounds=bounds,
                        min=low if low != math.inf else 0.0,
                        max=high if high != -math.inf else 0.0,
                    )
                )
            if not hist_points:
                return None
            data: Any = Histogram(data_points=hist_points, aggregation_temporality=_CUMULATIVE)
        else:
            cast = int if spec.value_type == "int" else float
            number_points = [
                NumberDataPoint(
                    attributes=dict(series.attrs),
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    value=cast(series.value),
                )
                for series in series_list
            ]
            data = Sum(data_points=number_points, aggregation_temporality=_CUMULATIVE, is_monotonic=True)
        return Metric(name=self.exported_name(spec.name), description=spec.description, unit=spec.unit, data=data)

    def _observed_metric(self, observed: _Observed, now: int) -> Metric | None:
        spec = observed.spec
        try:
            rows = list(observed.callback())
        except Exception:  # a broken source must not break the whole collection
            _log.exception("telemetry: reading %s failed", spec.name)
            return None
        merged: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        overflow: list[Any] | None = None
        for raw_attrs, value in rows:
            if value is None:
                continue
            attrs = attributes_from(raw_attrs.items())
            key = tuple(sorted(attrs.items()))
            entry = merged.get(key)
            if entry is not None:
                entry[1] = observed.combine(entry[1], value)
            elif len(merged) < self.cardinality_limit:
                merged[key] = [attrs, value]
            elif overflow is None:
                overflow = [dict(ins.OVERFLOW_ATTRIBUTES), value]
            else:
                overflow[1] = observed.combine(overflow[1], value)
        entries = list(merged.values()) + ([overflow] if overflow is not None else [])
        if not entries:
            return None
        cast = int if spec.value_type == "int" else float
        points = [
            NumberDataPoint(
                attributes=attrs,
                start_time_unix_nano=self.start_ns,
                time_unix_nano=now,
                value=cast(value),
            )
            for attrs, value in entries
        ]
        if spec.kind == "gauge":
            data: Any = Gauge(data_points=points)
        else:
            data = Sum(data_points=points, aggregation_temporality=_CUMULATIVE, is_monotonic=True)
        return Metric(name=self.exported_name(spec.name), description=spec.description, unit=spec.unit, data=data)
