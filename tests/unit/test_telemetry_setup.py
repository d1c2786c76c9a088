"""The OTEL_* environment -> providers and exporters (telemetry/setup.py)."""

from __future__ import annotations

import pytest

from telemetry import instruments as ins
from telemetry.setup import (
    DEFAULT_METRIC_EXPORT_INTERVAL_MS,
    TelemetryConfigError,
    TelemetryPipeline,
    build_resource,
    config_from_env,
    exporter_class,
    make_exporter,
    parse_key_values,
)


def test_defaults_no_endpoint_no_exporter() -> None:
    config = config_from_env({})
    assert config.signals == {}
    assert config.service_name == "openclaw-diagnostics"
    assert config.metric_export_interval_ms == DEFAULT_METRIC_EXPORT_INTERVAL_MS == 5000
    pipeline = TelemetryPipeline(config)
    try:
        assert pipeline.metric_reader is None and pipeline.logger is None and pipeline.tracer is None
        assert pipeline.health() == {"otlp": "disabled", "status": "disabled", "failures": {}, "last_error": None, "signals": {}}
        body, _ = pipeline.render()  # /metrics works with no collector at all
        assert isinstance(body, bytes)
    finally:
        pipeline.shutdown()


def test_base_endpoint_http_appends_signal_paths() -> None:
    config = config_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert {s: c.endpoint for s, c in config.signals.items()} == {
        "metrics": "http://collector:4318/v1/metrics",
        "logs": "http://collector:4318/v1/logs",
        "traces": "http://collector:4318/v1/traces",
    }
    assert all(c.protocol == "http/protobuf" for c in config.signals.values())


def test_grpc_uses_the_endpoint_as_is_and_per_signal_overrides() -> None:
    config = config_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:4318/custom/logs",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        }
    )
    assert config.signals["metrics"].endpoint == "http://collector:4317"
    assert config.signals["metrics"].protocol == "grpc"
    assert config.signals["logs"].endpoint == "http://logs:4318/custom/logs"
    assert config.signals["logs"].protocol == "http/protobuf"


def test_per_signal_endpoint_only() -> None:
    config = config_from_env({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/v1/metrics"})
    assert set(config.signals) == {"metrics"}


def test_signal_exporter_none_turns_it_off() -> None:
    config = config_from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    )
    assert set(config.signals) == {"metrics"}


def test_sdk_disabled_means_no_otlp() -> None:
    config = config_from_env({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert config.disabled and config.signals == {}


def test_headers_timeout_compression() -> None:
    config = config_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, X-Tenant=blue",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-tenant=green",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    metrics = config.signals["metrics"]
    assert metrics.headers == {"authorization": "Bearer abc", "x-tenant": "green"}  # gRPC keys lower-case
    assert config.signals["logs"].headers == {"authorization": "Bearer abc", "x-tenant": "blue"}
    assert metrics.timeout_ms == 2500 and metrics.compression == "gzip"


def test_resource_attributes_and_service_name() -> None:
    config = config_from_env({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.namespace=oc%2Cx"})
    resource = build_resource(config)
    attrs = dict(resource.attributes)
    assert attrs["service.name"] == "openclaw-diagnostics"
    assert attrs["deployment.environment"] == "prod" and attrs["service.namespace"] == "oc,x"
    assert attrs["telemetry.sdk.language"] == "python"
    named = build_resource(config_from_env({"OTEL_SERVICE_NAME": "diag-eu", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"}))
    assert named.attributes["service.name"] == "diag-eu"
    from_attrs = build_resource(config_from_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"}))
    assert from_attrs.attributes["service.name"] == "from-attrs"


def test_metric_export_interval() -> None:
    assert config_from_env({"OTEL_METRIC_EXPORT_INTERVAL": "250"}).metric_export_interval_ms == 250


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "OTEL_METRIC_EXPORT_INTERVAL"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "0"}, "OTEL_METRIC_EXPORT_INTERVAL"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(TelemetryConfigError, match=variable):
        config_from_env(env)


def test_parse_key_values() -> None:
    assert parse_key_values("a=1, b = two ,c=x%3Dy", "V") == {"a": "1", "b": "two", "c": "x=y"}
    assert parse_key_values("", "V") == {}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("signal", ins.SIGNALS)
def test_exporter_class_follows_the_protocol(signal: str, protocol: str) -> None:
    cls = exporter_class(signal, protocol)
    assert (".grpc." in cls.__module__) == (protocol == "grpc")
    assert (".http." in cls.__module__) == (protocol == "http/protobuf")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    exporter = make_exporter(config_from_env(env).signals[signal])
    try:
        assert isinstance(exporter, cls)
    finally:
        exporter.shutdown()


def test_pipeline_with_endpoints_builds_readers_and_providers() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:secret@127.0.0.1:9", "OTEL_METRIC_EXPORT_INTERVAL": "60000"}
    pipeline = TelemetryPipeline(config_from_env(env))
    try:
        assert pipeline.metric_reader is not None
        assert pipeline.logger is not None and pipeline.tracer is not None
        health = pipeline.health()
        assert health["otlp"] == "enabled" and health["status"] == "ok"
        assert health["failures"] == {"metrics": 0, "logs": 0, "traces": 0}
        assert "secret" not in repr(health)  # no credentials in /readyz
        assert health["signals"]["metrics"]["endpoint"] == "http://127.0.0.1:9/v1/metrics"
    finally:
        pipeline.shutdown()
