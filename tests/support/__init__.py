"""Harnesses the tests share: a service as a real process, real receivers (OTLP, Prometheus),
the real OpenClaw gateway and its fake model, fault injection and telemetry scenarios."""
