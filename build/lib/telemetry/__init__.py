"""Telemetry: the openclaw.* OpenTelemetry contract over OTLP and /metrics (docs/telemetry.md).

- telemetry.instruments: every instrument name, unit, attribute key and bucket boundary;
- telemetry.record: the Recorder interface the core calls, and the real OtelRecorder;
- telemetry.store: the metric state and its hand-over to the OpenTelemetry readers;
- telemetry.setup: providers and exporters from the OTEL_* environment, build_recorder().
"""

from __future__ import annotations
