"""The telemetry pipeline, put together from the environment (docs/telemetry.md).

    recorder = build_recorder(settings.gateway_attribute, settings.metric_cardinality_limit)
    recorder.bind(LiveSources(...))      # once the store exists
    ...
    recorder.shutdown()                  # flushes: last metric export, queued logs and spans

- the metric store (telemetry/store.py), which every instrument updates in place;
- /metrics: a prometheus_client collector over the store (telemetry/prometheus.py), always on;
- OTLP, per signal, when the environment configures it (telemetry/config.py says what the
  service reads itself; the exporters and the SDK read the rest): metrics through our own
  export loop, logs and spans through the SDK's providers (telemetry/otlp.py);
- export health: failures counted per signal, for /readyz and
  ``openclaw.monitor.export.failures`` (telemetry/health.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from telemetry import instruments as ins
from telemetry.config import (
    DEFAULT_EXPORT_TIMEOUT_MS,
    VERSION,
    TelemetryConfig,
    TelemetryConfigError,
    build_resource,
    config_from_env,
)
from telemetry.health import ExportHealth
from telemetry.otlp import MetricExportLoop, log_provider, make_exporter, span_provider
from telemetry.prometheus import MetricsEndpoint
from telemetry.record import OtelRecorder, Recorder
from telemetry.store import MetricStore

_log = logging.getLogger(__name__)


class TelemetryPipeline:
    """Owns the metric store, /metrics, the OTLP exporters and their health."""

    def __init__(
        self,
        config: TelemetryConfig,
        cardinality_limit: int = 2048,
        *,
        metric_exporter: Any = None,
        log_exporter: Any = None,
        span_exporter: Any = None,
        name_prefix: str | None = None,
    ) -> None:
        if config.signals and not config.process_env:
            # the exporters would read os.environ, not the mapping this config came from
            raise TelemetryConfigError(
                "OTEL_EXPORTER_OTLP_*: OTLP export is configured in the process environment only "
                "(the exporters read it themselves); build_recorder(env=...) can only turn it off"
            )
        self.config = config
        self.resource = build_resource()
        self.store = MetricStore(self.resource, cardinality_limit, VERSION, name_prefix)
        injected = [
            name
            for name, exporter in (("metrics", metric_exporter), ("logs", log_exporter), ("traces", span_exporter))
            if exporter is not None
        ]
        self.health_state = ExportHealth(config.signals, injected)
        self._lock = threading.Lock()
        self._shut = False
        self.metrics_endpoint = MetricsEndpoint(self.store.collect)

        signals = config.signals
        self.metric_export: MetricExportLoop | None = None
        if metric_exporter is None and "metrics" in signals:
            metric_exporter = make_exporter(signals["metrics"])
        if metric_exporter is not None:
            timeout = signals["metrics"].timeout_ms if "metrics" in signals else DEFAULT_EXPORT_TIMEOUT_MS
            self.metric_export = MetricExportLoop(
                self.store.collect, metric_exporter, self.health_state, config.metric_export_interval_ms, timeout
            )

        self.logger_provider: Any = None
        self.logger: Any = None
        if log_exporter is None and "logs" in signals:
            log_exporter = make_exporter(signals["logs"])
        if log_exporter is not None:
            self.logger_provider = log_provider(log_exporter, self.health_state, self.resource)
            self.logger = self.logger_provider.get_logger(ins.SCOPE_NAME, VERSION)

        self.tracer_provider: Any = None
        self.tracer: Any = None
        if span_exporter is None and "traces" in signals:
            span_exporter = make_exporter(signals["traces"])
        if span_exporter is not None:
            self.tracer_provider = span_provider(span_exporter, self.health_state, self.resource)
            self.tracer = self.tracer_provider.get_tracer(ins.SCOPE_NAME, VERSION)

    # -- what the recorder uses -----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.health_state.snapshot()

    def failure_rows(self) -> list[tuple[dict[str, str], int]]:
        return self.health_state.failure_rows()

    def render(self) -> tuple[bytes, str]:
        return self.metrics_endpoint.render()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = True
        if self.metric_export is not None:
            ok = self.metric_export.export() and ok
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
            ("metrics", lambda: self.metric_export and self.metric_export.shutdown()),
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
    session_ids: Callable[[str], str | None] | None = None,
    metric_name_prefix: str | None = None,
) -> Recorder:
    """The service's recorder, configured from the process environment.

    `gateway_attribute` / `cardinality_limit` come from OPENCLAW_DIAG_GATEWAY_ATTRIBUTE /
    OPENCLAW_DIAG_METRIC_CARDINALITY_LIMIT (app.settings). `env` replaces os.environ for the
    settings the service reads itself (telemetry/config.py); as the exporters read os.environ,
    it can only leave OTLP off: tests and the bench pass `{}`. The exporter arguments replace
    the OTLP exporter of a signal (tests: in-memory exporters). Raises TelemetryConfigError
    naming the variable when the OTEL_* environment is wrong.
    """
    pipeline = TelemetryPipeline(
        config_from_env(env),
        cardinality_limit,
        metric_exporter=metric_exporter,
        log_exporter=log_exporter,
        span_exporter=span_exporter,
        name_prefix=metric_name_prefix,
    )
    return OtelRecorder(pipeline, gateway_attribute=gateway_attribute, session_ids=session_ids)
