"""The few OTEL_* settings the service reads itself (docs/telemetry.md, "Settings").

Everything else is read where the SDK reads it: the OTLP exporters take their endpoint, headers,
``insecure`` and certificates from the environment, the batch processors their
``OTEL_BLRP_*``/``OTEL_BSP_*`` settings, the SDK's resource detector ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``. What is read here, and why:

- ``OTEL_SDK_DISABLED`` and ``OTEL_{METRICS,LOGS,TRACES}_EXPORTER=none``: which signals are
  exported at all (nothing here builds the SDK from the environment, so nothing else would);
- an ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_ENDPOINT`` being set: no endpoint means no exporter (the
  exporters would otherwise default to localhost); its value only for ``/readyz``, resolved the
  way the exporters resolve it (``ExportHealth``, credentials hidden);
- ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_PROTOCOL``: it chooses the exporter class;
- ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT``: milliseconds, as the OTel spec says; the Python
  exporters read it as seconds (opentelemetry-python issue #4044), so it is passed to them;
- ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_COMPRESSION``: ``gzip`` or ``none``; the gRPC exporters refuse
  ``none`` and the HTTP ones silently ignore a value they do not know, so it is passed to them
  and anything else is a start-up error;
- ``OTEL_METRIC_EXPORT_INTERVAL``: the metric export loop is ours (telemetry/otlp.py), and its
  default is 5 s, not the SDK's 60 s;
- ``OTEL_RESOURCE_ATTRIBUTES`` is only checked: the SDK skips a malformed item with a warning,
  here it is a start-up error naming the variable;
- the resource defaults (``service.name``, ``service.version``) where the environment sets none.

Every error is a ``TelemetryConfigError`` naming the variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.version import __version__ as sdk_version

from telemetry import instruments as ins

_log = logging.getLogger(__name__)

try:
    from importlib.metadata import version as _dist_version

    VERSION = _dist_version("openclaw-diagnostics")
except Exception:  # pragma: no cover - not installed as a distribution
    VERSION = "0.1.0"

PROTOCOL_HTTP = "http/protobuf"
PROTOCOL_GRPC = "grpc"
DEFAULT_METRIC_EXPORT_INTERVAL_MS = 5000
DEFAULT_EXPORT_TIMEOUT_MS = 10_000
_EXPORTER_VARS = {"metrics": "OTEL_METRICS_EXPORTER", "logs": "OTEL_LOGS_EXPORTER", "traces": "OTEL_TRACES_EXPORTER"}


class TelemetryConfigError(ValueError):
    """A telemetry environment variable is wrong; the message names it."""


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """One exported signal: what chooses and bounds its exporter, and where it goes."""

    signal: str  # metrics | logs | traces
    protocol: str  # http/protobuf | grpc
    endpoint: str  # for /readyz; the exporter resolves the same from the environment itself
    timeout_ms: int = DEFAULT_EXPORT_TIMEOUT_MS
    compression: str | None = None  # gzip | none | None (unset)

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
    signals: dict[str, SignalConfig]
    metric_export_interval_ms: int = DEFAULT_METRIC_EXPORT_INTERVAL_MS
    # True when read from os.environ, the environment the exporters read: only then may a
    # pipeline build exporters from it (telemetry/setup.py)
    process_env: bool = True


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str | None]:
    """The first of `names` that is set, and its value (else the last name and None)."""
    for name in names:
        value = _get(env, name)
        if value is not None:
            return name, value
    return names[-1], None


def _bool(env: Mapping[str, str], name: str) -> bool:
    value = _get(env, name)
    if value is None:
        return False
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise TelemetryConfigError(f"{name}: expected true or false, got {value!r}")


def _millis(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(float(value))
    except ValueError:
        raise TelemetryConfigError(f"{name}: expected a number of milliseconds, got {value!r}") from None
    if number < 1:
        raise TelemetryConfigError(f"{name}: must be >= 1, got {value!r}")
    return number


def _signal_config(env: Mapping[str, str], signal: str) -> SignalConfig | None:
    upper = signal.upper()
    exporter = (_get(env, _EXPORTER_VARS[signal]) or "otlp").lower()
    if exporter == "none":
        return None
    if exporter != "otlp":
        _log.warning("telemetry: %s=%s is not supported here; using otlp", _EXPORTER_VARS[signal], exporter)
    var, protocol = _first(env, f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol or PROTOCOL_HTTP
    if protocol not in (PROTOCOL_HTTP, PROTOCOL_GRPC):
        raise TelemetryConfigError(f"{var}: expected http/protobuf or grpc, got {protocol!r}")
    endpoint = _get(env, f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    if endpoint is None:
        base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if base is None:
            return None
        # the OTel spec's rule, and the exporters': HTTP appends the signal's path, gRPC does not
        endpoint = base if protocol == PROTOCOL_GRPC else f"{base.removesuffix('/')}/v1/{signal}"
    var, timeout = _first(env, f"OTEL_EXPORTER_OTLP_{upper}_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    timeout_ms = _millis(var, timeout, DEFAULT_EXPORT_TIMEOUT_MS)
    var, compression = _first(env, f"OTEL_EXPORTER_OTLP_{upper}_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
    if compression is not None:
        compression = compression.lower()
        if compression not in ("gzip", "none"):
            raise TelemetryConfigError(f"{var}: expected gzip or none, got {compression!r}")
    return SignalConfig(signal, protocol, endpoint, timeout_ms, compression)


def _check_resource_attributes(env: Mapping[str, str]) -> None:
    text = _get(env, "OTEL_RESOURCE_ATTRIBUTES") or ""
    for item in text.split(","):
        key, sep, _ = item.strip().partition("=")
        if item.strip() and (not sep or not key.strip()):
            raise TelemetryConfigError(f"OTEL_RESOURCE_ATTRIBUTES: expected key=value pairs, got {item.strip()!r}")


def config_from_env(env: Mapping[str, str] | None = None) -> TelemetryConfig:
    """What to export, from `env` (default: os.environ, which the exporters read too)."""
    source = os.environ if env is None else env
    disabled = _bool(source, "OTEL_SDK_DISABLED")
    _check_resource_attributes(source)
    interval = _millis(
        "OTEL_METRIC_EXPORT_INTERVAL", _get(source, "OTEL_METRIC_EXPORT_INTERVAL"), DEFAULT_METRIC_EXPORT_INTERVAL_MS
    )
    signals: dict[str, SignalConfig] = {}
    if not disabled:
        for signal in ins.SIGNALS:
            config = _signal_config(source, signal)
            if config is not None:
                signals[signal] = config
    return TelemetryConfig(disabled, signals, interval, process_env=source is os.environ)


def build_resource() -> Resource:
    """The resource: the SDK's telemetry.sdk.* attributes and our defaults, under what the
    environment says.

    The SDK's ``OTELResourceDetector`` reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (the
    latter wins), as ``Resource.create`` would. ``Resource.create`` itself is not used: since
    SDK 1.45 it also adds a random ``service.instance.id`` to every resource, a new label on
    /metrics' target_info at each start, and /metrics is to stay what it was
    (tests/unit/test_telemetry_exposition.py). Set it in OTEL_RESOURCE_ATTRIBUTES to have one.
    """
    defaults = Resource(
        {
            TELEMETRY_SDK_LANGUAGE: "python",
            TELEMETRY_SDK_NAME: "opentelemetry",
            TELEMETRY_SDK_VERSION: sdk_version,
            SERVICE_NAME: ins.DEFAULT_SERVICE_NAME,
            SERVICE_VERSION: VERSION,
        }
    )
    return defaults.merge(OTELResourceDetector().detect())
