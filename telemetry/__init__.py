"""Telemetry: the openclaw.* OpenTelemetry contract over OTLP and /metrics (docs/telemetry.md).

- telemetry.instruments: every instrument name, unit, attribute key and bucket boundary;
- telemetry.record: the Recorder interface the core calls, and the real OtelRecorder;
- telemetry.event_table: which instruments each gateway event feeds (one table);
- telemetry.log_events: the OTLP log records and the stuck span;
- telemetry.store: the metric state, aggregated in place, and its export data (MetricsData);
- telemetry.prometheus: /metrics, a prometheus_client collector over the store;
- telemetry.otlp: the OTLP exporters, the metric export loop, the log and span providers;
- telemetry.health: export failures per signal (/readyz, openclaw.monitor.export.failures);
- telemetry.config: the few OTEL_* settings the service reads itself;
- telemetry.setup: the pipeline put together, build_recorder().
"""

from __future__ import annotations
