"""Providers and exporters from the standard OTEL_* environment (docs/telemetry.md).

    recorder = build_recorder(settings.gateway_attribute, settings.metric_cardinality_limit)
    recorder.bind(LiveSources(...))      # once the store exists
    ...
    recorder.shutdown()                  # flushes: last metric export, queued logs and spans

What is read (all optional; docs/telemetry.md has the full table):

- ``OTEL_SDK_DISABLED=true``: no OTLP export at all (the /metrics endpoint stays on).
- ``OTEL_SERVICE_NAME`` (default ``openclaw-diagnostics``), ``OTEL_RESOURCE_ATTRIBUTES``.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_EXPORTER_OTLP_{METRICS,LOGS,TRACES}_ENDPOINT``.
  No endpoint for a signal -> no exporter for it. With http/protobuf the base endpoint gets
  ``/v1/<signal>`` appended, a per-signal endpoint is used as is (OTel spec).
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (and per-signal ``..._<SIGNAL>_PROTOCOL``): ``http/protobuf``
  (default) or ``grpc`` — picks the exporter class.
- ``OTEL_EXPORTER_OTLP_HEADERS`` (and per-signal), ``OTEL_EXPORTER_OTLP_TIMEOUT`` (ms, default
  10 000), ``OTEL_EXPORTER_OTLP_COMPRESSION`` (``gzip``/``none``), ``OTEL_EXPORTER_OTLP_INSECURE``
  (gRPC endpoints without a scheme).
- ``OTEL_METRIC_EXPORT_INTERVAL`` (ms, default here 5 000).
- ``OTEL_METRICS_EXPORTER`` / ``OTEL_LOGS_EXPORTER`` / ``OTEL_TRACES_EXPORTER``: ``none`` turns
  a signal off even when an endpoint is set.
- ``OTEL_BLRP_MAX_QUEUE_SIZE`` / ``OTEL_BSP_MAX_QUEUE_SIZE`` (default 2 048),
  ``OTEL_BLRP_SCHEDULE_DELAY`` / ``OTEL_BSP_SCHEDULE_DELAY`` (ms, default 1 000).

Export never blocks the caller: metrics are collected and exported by the SDK's periodic
reader thread (a snapshot each interval, nothing queued), logs and spans go through the SDK's
batch processors (bounded queues that drop the oldest when full). Every exporter is wrapped so
a failed export is counted per signal (``openclaw.monitor.export.failures``) and reported by
``Recorder.export_health()`` with the last error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as _sdk_version

from telemetry import instruments as ins
from telemetry.prometheus import MetricsEndpoint
from telemetry.record import OtelRecorder, Recorder
from telemetry.store import MetricStore

_log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _dist_version

    SERVICE_VERSION = _dist_version("openclaw-diagnostics")
except Exception:  # pragma: no cover - not installed as a distribution
    SERVICE_VERSION = "0.1.0"

PROTOCOL_HTTP = "http/protobuf"
PROTOCOL_GRPC = "grpc"
_PROTOCOLS = (PROTOCOL_HTTP, PROTOCOL_GRPC)
DEFAULT_METRIC_EXPORT_INTERVAL_MS = 5000
DEFAULT_EXPORT_TIMEOUT_MS = 10_000
DEFAULT_QUEUE_SIZE = 2048
DEFAULT_SCHEDULE_DELAY_MS = 1000
DEFAULT_MAX_EXPORT_BATCH = 512
_SIGNAL_PATHS = {"metrics": "v1/metrics", "logs": "v1/logs", "traces": "v1/traces"}
_SIGNAL_EXPORTER_VARS = {"metrics": "OTEL_METRICS_EXPORTER", "logs": "OTEL_LOGS_EXPORTER", "traces": "OTEL_TRACES_EXPORTER"}
_BATCH_VARS = {"logs": "OTEL_BLRP", "traces": "OTEL_BSP"}


class TelemetryConfigError(ValueError):
    """A telemetry environment variable is wrong; the message names it."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignalConfig:
    signal: str  # metrics | logs | traces
    endpoint: str
    protocol: str  # http/protobuf | grpc
    headers: dict[str, str] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_EXPORT_TIMEOUT_MS
    compression: str | None = None
    insecure: bool | None = None
    max_queue_size: int = DEFAULT_QUEUE_SIZE
    schedule_delay_ms: int = DEFAULT_SCHEDULE_DELAY_MS

    def public_endpoint(self) -> str:
        """The endpoint without any user:password part (for /readyz)."""
        parts = urlsplit(self.endpoint)
        if parts.username or parts.password:
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        return self.endpoint


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    disabled: bool
    service_name: str
    resource_attributes: dict[str, str]
    signals: dict[str, SignalConfig]
    metric_export_interval_ms: int = DEFAULT_METRIC_EXPORT_INTERVAL_MS


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = _get(env, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise TelemetryConfigError(f"{name}: expected true or false, got {value!r}")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    value = _get(env, name)
    if value is None:
        return default
    try:
        number = int(float(value))
    except ValueError:
        raise TelemetryConfigError(f"{name}: expected a number, got {value!r}") from None
    if number < minimum:
        raise TelemetryConfigError(f"{name}: must be >= {minimum}, got {value!r}")
    return number


def parse_key_values(text: str | None, name: str) -> dict[str, str]:
    """`k=v,k2=v2` with percent-encoded values (OTEL_RESOURCE_ATTRIBUTES, *_HEADERS)."""
    result: dict[str, str] = {}
    if not text:
        return result
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip()
        if not sep or not key:
            raise TelemetryConfigError(f"{name}: expected key=value pairs, got {item!r}")
        result[key] = unquote(value).strip()
    return result


def _signal_config(env: Mapping[str, str], signal: str) -> SignalConfig | None:
    upper = signal.upper()
    exporter = (_get(env, _SIGNAL_EXPORTER_VARS[signal]) or "otlp").lower()
    if exporter == "none":
        return None
    if exporter != "otlp":
        _log.warning("telemetry: %s=%s is not supported here; using otlp", _SIGNAL_EXPORTER_VARS[signal], exporter)
    protocol_var = f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"
    protocol = _get(env, protocol_var)
    if protocol is None:
        protocol_var = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = _get(env, protocol_var) or PROTOCOL_HTTP
    if protocol not in _PROTOCOLS:
        raise TelemetryConfigError(f"{protocol_var}: expected http/protobuf or grpc, got {protocol!r}")
    endpoint = _get(env, f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    if endpoint is None:
        base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if base is None:
            return None
        endpoint = base if protocol == PROTOCOL_GRPC else f"{base.rstrip('/')}/{_SIGNAL_PATHS[signal]}"
    headers = parse_key_values(_get(env, "OTEL_EXPORTER_OTLP_HEADERS"), "OTEL_EXPORTER_OTLP_HEADERS")
    headers.update(parse_key_values(_get(env, f"OTEL_EXPORTER_OTLP_{upper}_HEADERS"), f"OTEL_EXPORTER_OTLP_{upper}_HEADERS"))
    if protocol == PROTOCOL_GRPC:
        headers = {key.lower(): value for key, value in headers.items()}  # gRPC metadata keys
    timeout_var = f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT"
    if _get(env, timeout_var) is None:
        timeout_var = "OTEL_EXPORTER_OTLP_TIMEOUT"
    timeout_ms = _int(env, timeout_var, DEFAULT_EXPORT_TIMEOUT_MS)
    compression_var = f"OTEL_EXPORTER_OTLP_{upper}_COMPRESSION"
    compression = _get(env, compression_var)
    if compression is None:
        compression_var = "OTEL_EXPORTER_OTLP_COMPRESSION"
        compression = _get(env, compression_var)
    if compression is not None:
        compression = compression.lower()
        if compression not in ("gzip", "none"):
            raise TelemetryConfigError(f"{compression_var}: expected gzip or none, got {compression!r}")
    insecure_var = f"OTEL_EXPORTER_OTLP_{upper}_INSECURE"
    if _get(env, insecure_var) is None:
        insecure_var = "OTEL_EXPORTER_OTLP_INSECURE"
    insecure = _bool(env, insecure_var) if _get(env, insecure_var) is not None else None
    queue, delay = DEFAULT_QUEUE_SIZE, DEFAULT_SCHEDULE_DELAY_MS
    prefix = _BATCH_VARS.get(signal)
    if prefix:
        queue = _int(env, f"{prefix}_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE)
        delay = _int(env, f"{prefix}_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_MS)
    return SignalConfig(
        signal=signal,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        timeout_ms=timeout_ms,
        compression=compression,
        insecure=insecure,
        max_queue_size=queue,
        schedule_delay_ms=delay,
    )


def config_from_env(env: Mapping[str, str] | None = None) -> TelemetryConfig:
    env = os.environ if env is None else env
    disabled = _bool(env, "OTEL_SDK_DISABLED")
    resource_attributes = parse_key_values(_get(env, "OTEL_RESOURCE_ATTRIBUTES"), "OTEL_RESOURCE_ATTRIBUTES")
    service_name = _get(env, "OTEL_SERVICE_NAME") or resource_attributes.get("service.name") or ins.DEFAULT_SERVICE_NAME
    interval = _int(env, "OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_METRIC_EXPORT_INTERVAL_MS)
    signals: dict[str, SignalConfig] = {}
    if not disabled:
        for signal in ins.SIGNALS:
            config = _signal_config(env, signal)
            if config is not None:
                signals[signal] = config
    return TelemetryConfig(
        disabled=disabled,
        service_name=service_name,
        resource_attributes=resource_attributes,
        signals=signals,
        metric_export_interval_ms=interval,
    )


def build_resource(config: TelemetryConfig) -> Resource:
    """The resource from our config only (not from os.environ, so tests can pass their own env)."""
    attributes: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": _sdk_version,
        "service.version": SERVICE_VERSION,
    }
    attributes.update(config.resource_attributes)
    attributes["service.name"] = config.service_name
    return Resource(attributes)


# --------------------------------------------------------------------------------------------
# Export health: failures counted per signal, last error kept
# --------------------------------------------------------------------------------------------
class _ErrorCapture(logging.Handler):
    """Keeps the last warning/error the OTLP exporters log on the exporting thread.

    The SDK exporters report why an export failed only through their loggers; the counting
    wrappers below register the current thread while they export and read this afterwards.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._by_thread: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        sink = self._by_thread.get(record.thread or 0)
        if sink is not None:
            try:
                sink.append(record.getMessage()[:500])
            except Exception:  # pragma: no cover - a broken log call must not matter
                pass

    def start(self) -> list[str]:
        sink: list[str] = []
        self._by_thread[threading.get_ident()] = sink
        return sink

    def stop(self) -> None:
        self._by_thread.pop(threading.get_ident(), None)


_CAPTURE = _ErrorCapture()
logging.getLogger("opentelemetry.exporter").addHandler(_CAPTURE)


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}Z"


@dataclass
class _SignalHealth:
    exports: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_success_ns: int | None = None
    last_failure_ns: int | None = None
    last_error: str | None = None


class ExportHealth:
    def __init__(self, signals: Mapping[str, SignalConfig], extra_signals: Sequence[str] = ()) -> None:
        self._configs = dict(signals)
        self._lock = threading.Lock()
        self._signals = {name: _SignalHealth() for name in list(signals) + [s for s in extra_signals if s not in signals]}

    def record(self, signal: str, ok: bool, error: str | None = None) -> None:
        now = time.time_ns()
        with self._lock:
            health = self._signals.setdefault(signal, _SignalHealth())
            if ok:
                health.exports += 1
                health.consecutive_failures = 0
                health.last_success_ns = now
            else:
                health.failures += 1
                health.consecutive_failures += 1
                health.last_failure_ns = now
                health.last_error = error or f"{signal} export failed"

    def failure_rows(self) -> list[tuple[dict[str, str], int]]:
        with self._lock:
            return [({ins.SIGNAL: name}, health.failures) for name, health in self._signals.items()]

    def failures(self) -> dict[str, int]:
        with self._lock:
            return {name: health.failures for name, health in self._signals.items()}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            signals: dict[str, Any] = {}
            last: tuple[int, str, str] | None = None
            for name, health in self._signals.items():
                config = self._configs.get(name)
                signals[name] = {
                    "endpoint": config.public_endpoint() if config else None,
                    "protocol": config.protocol if config else None,
                    "exports": health.exports,
                    "failures": health.failures,
                    "failing": health.consecutive_failures > 0,
                    "last_success": _iso(health.last_success_ns),
                    "last_failure": _iso(health.last_failure_ns),
                    "last_error": health.last_error,
                }
                if health.last_failure_ns is not None and (last is None or health.last_failure_ns > last[0]):
                    last = (health.last_failure_ns, name, health.last_error or "")
            failing = any(h.consecutive_failures for h in self._signals.values())
        return {
            "otlp": "enabled" if signals else "disabled",
            "status": ("degraded" if failing else "ok") if signals else "disabled",
            "failures": {name: info["failures"] for name, info in signals.items()},
            "last_error": None if last is None else {"signal": last[1], "error": last[2], "at": _iso(last[0])},
            "signals": signals,
        }


def _run_export(health: ExportHealth, signal: str, call: Callable[[], Any], success: Any) -> Any:
    sink = _CAPTURE.start()
    try:
        try:
            result = call()
        except Exception as exc:  # an exporter that raises is a failed export, nothing more
            sink.append(f"{type(exc).__name__}: {exc}"[:500])
            result = None
    finally:
        _CAPTURE.stop()
    ok = result == success
    error = None
    if sink:
        # the final message ("... due to timeout, max retries ...") is often generic; keep
        # the distinct reasons before it too (e.g. "Transient error ... Connection refused")
        distinct = list(dict.fromkeys(sink))
        error = " | ".join(distinct[-3:])[:1000]
    health.record(signal, ok, error)
    return result


class CountingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, health: ExportHealth) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner = inner
        self._health = health

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if not metrics_data.resource_metrics or not any(
            scope.metrics for rm in metrics_data.resource_metrics for scope in rm.scope_metrics
        ):
            return MetricExportResult.SUCCESS  # nothing measured yet: nothing to send
        result = _run_export(
            self._health,
            "metrics",
            lambda: self._inner.export(metrics_data, timeout_millis=timeout_millis),
            MetricExportResult.SUCCESS,
        )
        return result if result is not None else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis)


def _counting_log_exporter(inner: Any, health: ExportHealth) -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class CountingLogExporter(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> Any:
            result = _run_export(health, "logs", lambda: inner.export(batch), LogRecordExportResult.SUCCESS)
            return result if result is not None else LogRecordExportResult.FAILURE

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return CountingLogExporter()


def _counting_span_exporter(inner: Any, health: ExportHealth) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingSpanExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> Any:
            result = _run_export(health, "traces", lambda: inner.export(spans), SpanExportResult.SUCCESS)
            return result if result is not None else SpanExportResult.FAILURE

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return CountingSpanExporter()


# --------------------------------------------------------------------------------------------
# OTLP exporters (class chosen from the protocol)
# --------------------------------------------------------------------------------------------
def _grpc_kwargs(config: SignalConfig) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

    endpoint = config.endpoint
    scheme = urlsplit(endpoint).scheme if "://" in endpoint else ""
    insecure = config.insecure
    if scheme == "http":
        insecure = True
    elif scheme == "https":
        insecure = False
    return {
        "endpoint": endpoint,
        "insecure": bool(insecure),
        "headers": dict(config.headers),
        "timeout": config.timeout_ms / 1000,
        "compression": Compression.Gzip if config.compression == "gzip" else Compression.NoCompression,
        "channel_options": _GRPC_CHANNEL_OPTIONS,
    }


# The exporter opens a fresh channel after UNAVAILABLE; with gRPC's global subchannel pool that
# channel would inherit the old connection's reconnect backoff (up to 120 s), so exports could
# keep failing long after the collector is back. A channel-local pool and a short backoff cap
# make exports resume at the next interval.
_GRPC_CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


def _http_kwargs(config: SignalConfig) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http import Compression

    return {
        "endpoint": config.endpoint,
        "headers": dict(config.headers),
        "timeout": config.timeout_ms / 1000,
        "compression": Compression.Gzip if config.compression == "gzip" else Compression.NoCompression,
    }


def exporter_class(signal: str, protocol: str) -> type:
    """The OTLP exporter class for a signal and protocol."""
    if protocol == PROTOCOL_GRPC:
        if signal == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter,
            )

            return OTLPMetricExporter
        if signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter,
            )

            return OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )

        return OTLPSpanExporter
    if signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HTTPMetricExporter,
        )

        return HTTPMetricExporter
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter as HTTPLogExporter,
        )

        return HTTPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter


def make_exporter(config: SignalConfig) -> Any:
    cls = exporter_class(config.signal, config.protocol)
    kwargs = _grpc_kwargs(config) if config.protocol == PROTOCOL_GRPC else _http_kwargs(config)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# The pipeline: store + readers + providers
# --------------------------------------------------------------------------------------------
class TelemetryPipeline:
    """Owns the metric store, the /metrics reader, the OTLP readers/providers and their health."""

    def __init__(
        self,
        config: TelemetryConfig,
        cardinality_limit: int = 2048,
        *,
        metric_exporter: Any = None,
        log_exporter: Any = None,
        span_exporter: Any = None,
    ) -> None:
        self.config = config
        self.resource = build_resource(config)
        self.store = MetricStore(self.resource, cardinality_limit, SERVICE_VERSION)
        injected = [
            name
            for name, exporter in (("metrics", metric_exporter), ("logs", log_exporter), ("traces", span_exporter))
            if exporter is not None
        ]
        self.health_state = ExportHealth(config.signals, injected)
        self._lock = threading.Lock()
        self._shut = False

        # /metrics: a prometheus_client collector over the store (telemetry/prometheus.py)
        self.metrics_endpoint = MetricsEndpoint(self.store.collect)

        self.metric_reader: PeriodicExportingMetricReader | None = None
        metrics = config.signals.get("metrics")
        if metric_exporter is None and metrics is not None:
            metric_exporter = make_exporter(metrics)
        if metric_exporter is not None:
            timeout = metrics.timeout_ms if metrics else DEFAULT_EXPORT_TIMEOUT_MS
            self.metric_reader = PeriodicExportingMetricReader(
                CountingMetricExporter(metric_exporter, self.health_state),
                export_interval_millis=config.metric_export_interval_ms,
                export_timeout_millis=timeout,
            )
            self.store.attach(self.metric_reader)

        self.logger_provider: Any = None
        self.logger: Any = None
        logs = config.signals.get("logs")
        if log_exporter is None and logs is not None:
            log_exporter = make_exporter(logs)
        if log_exporter is not None:
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

            self.logger_provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
            self.logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    _counting_log_exporter(log_exporter, self.health_state),
                    schedule_delay_millis=logs.schedule_delay_ms if logs else DEFAULT_SCHEDULE_DELAY_MS,
                    max_export_batch_size=DEFAULT_MAX_EXPORT_BATCH,
                    export_timeout_millis=logs.timeout_ms if logs else DEFAULT_EXPORT_TIMEOUT_MS,
                    max_queue_size=max(DEFAULT_MAX_EXPORT_BATCH, logs.max_queue_size if logs else DEFAULT_QUEUE_SIZE),
                )
            )
            self.logger = self.logger_provider.get_logger(ins.SCOPE_NAME, SERVICE_VERSION)

        self.tracer_provider: Any = None
        self.tracer: Any = None
        traces = config.signals.get("traces")
        if span_exporter is None and traces is not None:
            span_exporter = make_exporter(traces)
        if span_exporter is not None:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            self.tracer_provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    _counting_span_exporter(span_exporter, self.health_state),
                    max_queue_size=max(DEFAULT_MAX_EXPORT_BATCH, traces.max_queue_size if traces else DEFAULT_QUEUE_SIZE),
                    schedule_delay_millis=traces.schedule_delay_ms if traces else DEFAULT_SCHEDULE_DELAY_MS,
                    max_export_batch_size=DEFAULT_MAX_EXPORT_BATCH,
                    export_timeout_millis=traces.timeout_ms if traces else DEFAULT_EXPORT_TIMEOUT_MS,
                )
            )
            self.tracer = self.tracer_provider.get_tracer(ins.SCOPE_NAME, SERVICE_VERSION)

    # -- what the recorder uses -----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.health_state.snapshot()

    def failure_rows(self) -> list[tuple[dict[str, str], int]]:
        return self.health_state.failure_rows()

    def render(self) -> tuple[bytes, str]:
        return self.metrics_endpoint.render()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = True
        if self.metric_reader is not None:
            ok = self.metric_reader.force_flush(timeout_millis=timeout_millis) and ok
        if self.logger_provider is not None:
            ok = bool(self.logger_provider.force_flush(timeout_millis)) and ok
        if self.tracer_provider is not None:
            ok = bool(self.tracer_provider.force_flush(timeout_millis)) and ok
        return ok

    def shutdown(self) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
        # Each step is bounded by the exporter timeout; a dead collector delays the stop by
        # at most that, it never hangs it.
        for name, step in (
            ("metrics", lambda: self.metric_reader and self.metric_reader.shutdown()),
            ("logs", lambda: self.logger_provider and self.logger_provider.shutdown()),
            ("traces", lambda: self.tracer_provider and self.tracer_provider.shutdown()),
            ("prometheus", self.metrics_endpoint.close),
        ):
            try:
                step()
            except Exception:
                _log.exception("telemetry: shutting down %s failed", name)


def build_pipeline(
    cardinality_limit: int = 2048,
    env: Mapping[str, str] | None = None,
    **exporters: Any,
) -> TelemetryPipeline:
    return TelemetryPipeline(config_from_env(env), cardinality_limit, **exporters)


def build_recorder(
    gateway_attribute: bool = True,
    cardinality_limit: int = 2048,
    env: Mapping[str, str] | None = None,
    *,
    metric_exporter: Any = None,
    log_exporter: Any = None,
    span_exporter: Any = None,
) -> Recorder:
    """The service's recorder, configured from `env` (default: os.environ).

    `gateway_attribute` / `cardinality_limit` come from OPENCLAW_DIAG_GATEWAY_ATTRIBUTE /
    OPENCLAW_DIAG_METRIC_CARDINALITY_LIMIT (app.settings). The exporter arguments replace the
    OTLP exporter of a signal (tests: in-memory exporters). Raises TelemetryConfigError naming
    the variable when the OTEL_* environment is wrong.
    """
    pipeline = TelemetryPipeline(
        config_from_env(env),
        cardinality_limit,
        metric_exporter=metric_exporter,
        log_exporter=log_exporter,
        span_exporter=span_exporter,
    )
    return OtelRecorder(pipeline, gateway_attribute=gateway_attribute)
