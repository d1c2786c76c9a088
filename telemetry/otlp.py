"""OTLP export: the exporter class per protocol, the metric export loop, the log and span
providers (docs/telemetry.md, "Export behaviour").

The exporters read their own settings from the environment (endpoint, headers, ``insecure``,
certificates); they are given only what telemetry/config.py reads itself (the timeout in the
spec's milliseconds, the compression) and the gRPC channel options below.

Metrics do not go through a ``MetricReader``: a reader gets its data from a ``MeterProvider``
(whose synchronous instruments cost too much per measurement, telemetry/store.py) or through
the SDK reader's internal collect hook, which the SDK documents as internal. ``MetricExportLoop``
does what ``PeriodicExportingMetricReader`` would: every interval it collects the store's
``MetricsData`` and hands it to the exporter's public ``MetricExporter.export``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource

from telemetry.config import PROTOCOL_GRPC, SignalConfig, TelemetryConfigError
from telemetry.health import (
    ExportHealth,
    counting_log_exporter,
    counting_span_exporter,
    run_export,
)

_log = logging.getLogger(__name__)

# The exporter opens a fresh channel after UNAVAILABLE; with gRPC's global subchannel pool that
# channel would inherit the old connection's reconnect backoff (up to 120 s), so exports could
# keep failing long after the collector is back. A channel-local pool and a short backoff cap
# make exports resume at the next interval.
_GRPC_CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 5000),
)
# Spans are rare (one per stuck report) and should reach the collector soon: 1 s, where the
# SDK's BatchSpanProcessor default is 5 s (OTEL_BSP_SCHEDULE_DELAY still wins; the log
# processor's own default is already 1 s).
SPAN_SCHEDULE_DELAY_MS = 1000


# --------------------------------------------------------------------------------------------
# Exporters
# --------------------------------------------------------------------------------------------
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
    """The signal's OTLP exporter; it reads its endpoint, headers and TLS settings itself."""
    kwargs: dict[str, Any] = {"timeout": config.timeout_ms / 1000}  # the exporters take seconds
    gzip = config.compression == "gzip"
    if config.protocol == PROTOCOL_GRPC:
        from grpc import Compression

        kwargs["compression"] = Compression.Gzip if gzip else Compression.NoCompression
        kwargs["channel_options"] = _GRPC_CHANNEL_OPTIONS
    else:
        from opentelemetry.exporter.otlp.proto.http import (
            Compression as HTTPCompression,
        )

        kwargs["compression"] = HTTPCompression.Gzip if gzip else HTTPCompression.NoCompression
    return exporter_class(config.signal, config.protocol)(**kwargs)


# --------------------------------------------------------------------------------------------
# Metrics: the store's data to the exporter, every interval
# --------------------------------------------------------------------------------------------
class MetricExportLoop:
    """Exports `collect()` every `interval_ms` on a thread of its own, on `export()` (force
    flush) and once more at `shutdown()`. Never blocks the callers of the recorder: they only
    update the store; a slow or hanging collector holds this thread, bounded by the exporter's
    timeout. Each export is a snapshot of cumulative state, so nothing queues up meanwhile.
    """

    def __init__(
        self,
        collect: Callable[[], MetricsData],
        exporter: Any,
        health: ExportHealth,
        interval_ms: int,
        timeout_ms: int,
    ) -> None:
        self._collect = collect
        self._exporter = exporter
        self._health = health
        self._interval_s = interval_ms / 1000
        self._timeout_ms = timeout_ms
        # MetricExporter.export must not be called concurrently (OTel metrics SDK spec)
        self._export_lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openclaw-metric-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.export()
            except Exception:  # the loop must outlive any one failure
                _log.exception("telemetry: the metric export loop failed")

    def export(self) -> bool:
        """Collect and export now. True when it succeeded, or there was nothing to send."""
        with self._export_lock:
            if self._closed:
                return True
            return self._export_locked()

    def _export_locked(self) -> bool:
        data = self._collect()
        if not any(scope.metrics for rm in data.resource_metrics for scope in rm.scope_metrics):
            return True  # nothing measured yet: nothing to send
        result = run_export(
            self._health,
            "metrics",
            lambda: self._exporter.export(data, timeout_millis=self._timeout_ms),
            MetricExportResult.SUCCESS,
        )
        return bool(result == MetricExportResult.SUCCESS)

    def shutdown(self) -> None:
        """Stop the thread, export one last time, shut the exporter down."""
        self._stop.set()
        self._thread.join()  # an export in flight ends within the exporter's timeout
        with self._export_lock:
            if self._closed:
                return
            try:
                self._export_locked()
            finally:
                self._closed = True
                self._exporter.shutdown(timeout_millis=self._timeout_ms)


# --------------------------------------------------------------------------------------------
# Logs and spans: the SDK's providers and batch processors
# --------------------------------------------------------------------------------------------
def log_provider(exporter: Any, health: ExportHealth, resource: Resource) -> Any:
    """A LoggerProvider exporting through a BatchLogRecordProcessor; the processor reads
    OTEL_BLRP_* itself (its defaults are the documented ones: 2048 queued, 1 s)."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    try:
        processor = BatchLogRecordProcessor(counting_log_exporter(exporter, health))
    except ValueError as exc:  # e.g. a queue smaller than one export batch
        raise TelemetryConfigError(f"OTEL_BLRP_*: {exc}") from None
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    return provider


def span_provider(exporter: Any, health: ExportHealth, resource: Resource) -> Any:
    """A TracerProvider exporting through a BatchSpanProcessor; the processor reads OTEL_BSP_*
    itself, only the schedule delay's default is ours."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else SPAN_SCHEDULE_DELAY_MS
    try:
        processor = BatchSpanProcessor(counting_span_exporter(exporter, health), schedule_delay_millis=delay)
    except ValueError as exc:
        raise TelemetryConfigError(f"OTEL_BSP_*: {exc}") from None
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider

