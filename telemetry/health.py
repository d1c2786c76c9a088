"""Export health: failed exports counted per signal, the last error kept (/readyz "exporter",
``openclaw.monitor.export.failures``; docs/telemetry.md, "Export behaviour").

Every export goes through ``run_export``: the metric export loop (telemetry/otlp.py) calls it
directly, the SDK's batch processors through the counting log and span exporters below.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.formatting import iso_ms
from telemetry import instruments as ins
from telemetry.config import SignalConfig


class _ErrorCapture(logging.Handler):
    """Keeps the last warning/error the OTLP exporters log on the exporting thread.

    The SDK exporters report why an export failed only through their loggers; ``run_export``
    registers the current thread while it exports and reads this afterwards.
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
    return None if ns is None else iso_ms(ns // 1_000_000)


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


def run_export(health: ExportHealth, signal: str, call: Callable[[], Any], success: Any) -> Any:
    """`call()` (one export), counted as a success when it returns `success`. Never raises."""
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


def counting_log_exporter(inner: Any, health: ExportHealth) -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    class CountingLogExporter(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> Any:
            result = run_export(health, "logs", lambda: inner.export(batch), LogRecordExportResult.SUCCESS)
            return result if result is not None else LogRecordExportResult.FAILURE

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return CountingLogExporter()


def counting_span_exporter(inner: Any, health: ExportHealth) -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingSpanExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> Any:
            result = run_export(health, "traces", lambda: inner.export(spans), SpanExportResult.SUCCESS)
            return result if result is not None else SpanExportResult.FAILURE

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(inner.force_flush(timeout_millis))

    return CountingSpanExporter()
