"""The OTEL_* settings the service reads itself (telemetry/config.py) and the pipeline built from
them (telemetry/setup.py, telemetry/otlp.py).

What the exporters read themselves (endpoint, headers, insecure) is checked where it matters, at
a real receiver: tests/e2e/test_telemetry_otlp.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from telemetry import instruments as ins
from telemetry.config import (
    DEFAULT_METRIC_EXPORT_INTERVAL_MS,
    TelemetryConfigError,
    build_resource,
    config_from_env,
)
from telemetry.otlp import exporter_class, make_exporter
from telemetry.setup import TelemetryPipeline, build_recorder

SetEnv = Callable[[dict[str, str]], None]


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[SetEnv]:
    """The process environment with no OTEL_* variable but those the test sets."""
    for key in [key for key in os.environ if key.startswith("OTEL_")]:
        monkeypatch.delenv(key)

    def set_env(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    yield set_env


def test_defaults_no_endpoint_no_exporter(otel_env: SetEnv) -> None:
    config = config_from_env()
    assert config.signals == {}
    assert config.metric_export_interval_ms == DEFAULT_METRIC_EXPORT_INTERVAL_MS == 5000
    pipeline = TelemetryPipeline(config)
    try:
        assert pipeline.metric_export is None and pipeline.logger is None and pipeline.tracer is None
        assert pipeline.health() == {"otlp": "disabled", "status": "disabled", "failures": {}, "last_error": None, "signals": {}}
        body, _ = pipeline.render()  # /metrics works with no collector at all
        assert isinstance(body, bytes)
    finally:
        pipeline.shutdown()


def test_base_endpoint_http_appends_signal_paths() -> None:
    # the endpoint /readyz shows; tests/e2e/test_telemetry_otlp.py shows the exporters send there
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


def test_timeout_in_milliseconds_and_compression_per_signal() -> None:
    config = config_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "700",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none",
        }
    )
    metrics, logs, traces = (config.signals[s] for s in ("metrics", "logs", "traces"))
    assert (metrics.timeout_ms, logs.timeout_ms, traces.timeout_ms) == (2500, 700, 2500)
    assert (metrics.compression, logs.compression, traces.compression) == ("gzip", "gzip", "none")
    assert config_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}).signals["metrics"].timeout_ms == 10_000


def test_resource_from_the_sdk_with_our_defaults(otel_env: SetEnv) -> None:
    attrs = dict(build_resource().attributes)
    assert attrs["service.name"] == "openclaw-diagnostics"
    assert attrs["service.version"] and attrs["telemetry.sdk.language"] == "python"
    # exactly these: /metrics' target_info carries them (no random service.instance.id)
    assert set(attrs) == {"service.name", "service.version", "telemetry.sdk.language", "telemetry.sdk.name",
                          "telemetry.sdk.version"}
    otel_env({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.namespace=oc%2Cx,service.version=9"})
    attrs = dict(build_resource().attributes)
    assert attrs["deployment.environment"] == "prod" and attrs["service.namespace"] == "oc,x"
    assert attrs["service.name"] == "openclaw-diagnostics" and attrs["service.version"] == "9"
    otel_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"})
    assert build_resource().attributes["service.name"] == "from-attrs"
    otel_env({"OTEL_SERVICE_NAME": "diag-eu"})  # wins over service.name in the attributes
    assert build_resource().attributes["service.name"] == "diag-eu"


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
        ({"OTEL_RESOURCE_ATTRIBUTES": "a=1,=2"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "-1"}, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(TelemetryConfigError, match=variable):
        config_from_env(env)


def test_bad_batch_settings_name_the_variables(otel_env: SetEnv) -> None:
    # read by the SDK's batch processor, which refuses a queue smaller than one export batch
    otel_env({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:9/v1/logs", "OTEL_BLRP_MAX_QUEUE_SIZE": "100"})
    with pytest.raises(TelemetryConfigError, match="OTEL_BLRP_"):
        build_recorder()


def test_a_mapping_can_only_turn_otlp_off() -> None:
    """The exporters read os.environ: OTLP configured in another mapping would be half-read."""
    build_recorder(env={}).shutdown()
    with pytest.raises(TelemetryConfigError, match="OTEL_EXPORTER_OTLP_"):
        build_recorder(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("signal", ins.SIGNALS)
def test_exporter_class_follows_the_protocol(signal: str, protocol: str, otel_env: SetEnv) -> None:
    cls = exporter_class(signal, protocol)
    assert (".grpc." in cls.__module__) == (protocol == "grpc")
    assert (".http." in cls.__module__) == (protocol == "http/protobuf")
    otel_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
              "OTEL_EXPORTER_OTLP_COMPRESSION": "none"})  # `none`: the gRPC exporters alone would refuse it
    exporter = make_exporter(config_from_env().signals[signal])
    try:
        assert isinstance(exporter, cls)
    finally:
        exporter.shutdown()


def test_pipeline_with_endpoints_builds_exporters_and_providers(otel_env: SetEnv) -> None:
    otel_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:secret@127.0.0.1:9", "OTEL_METRIC_EXPORT_INTERVAL": "60000"})
    pipeline = TelemetryPipeline(config_from_env())
    try:
        assert pipeline.metric_export is not None
        assert pipeline.logger is not None and pipeline.tracer is not None
        health = pipeline.health()
        assert health["otlp"] == "enabled" and health["status"] == "ok"
        assert health["failures"] == {"metrics": 0, "logs": 0, "traces": 0}
        assert "secret" not in repr(health)  # no credentials in /readyz
        assert health["signals"]["metrics"]["endpoint"] == "http://127.0.0.1:9/v1/metrics"
    finally:
        pipeline.shutdown()


@pytest.mark.parametrize(
    ("env", "exported"),
    [
        ({"OTEL_METRICS_EXPORTER": "none"}, {"logs", "traces"}),
        ({"OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"}, {"metrics"}),
        ({"OTEL_SDK_DISABLED": "true"}, set()),
    ],
)
def test_switched_off_signals_get_no_exporter(env: dict[str, str], exported: set[str], otel_env: SetEnv) -> None:
    otel_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **env})
    pipeline = TelemetryPipeline(config_from_env())
    try:
        built = {
            name
            for name, part in (("metrics", pipeline.metric_export), ("logs", pipeline.logger), ("traces", pipeline.tracer))
            if part is not None
        }
        assert built == exported
        assert set(pipeline.health()["signals"]) == exported
        assert b"target_info" in pipeline.render()[0]  # /metrics stays on whatever OTLP does
    finally:
        pipeline.shutdown()
