"""What the service tells telemetry: the one interface the core calls (spec: telemetry.md).

The core (ingest, store, monitor, recovery) calls these methods and nothing else of
telemetry; this module maps each call to instruments (telemetry/instruments.py) and OTLP log
records. Payload dicts use the camelCase field names of telemetry.md's log events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.events import Event


@dataclass(frozen=True, slots=True)
class SessionCount:
    """One row of the live picture for the openclaw.monitor.sessions gauge."""

    gateway: str
    state: str
    attention: str  # none | long_running | stalled | stuck
    reason: str | None
    count: int


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    gateway: str
    silent: bool
    clock_skew_ms: int
    forwarder_queued: int | None


@dataclass(frozen=True, slots=True)
class LiveSources:
    """Callbacks the observable gauges read at collection time."""

    sessions: Callable[[], Iterable[SessionCount]]
    gateways: Callable[[], Iterable[GatewayStatus]]


class Recorder:
    """No-op base: the contract. telemetry.setup builds the real one."""

    def bind(self, sources: LiveSources) -> None:
        """Register the observable gauges' sources (called once the store exists)."""

    def events_counted(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        """Per request: (gatewayId, event type, outcome) -> number of events."""

    def event_applied(self, event: Event, gateway: str) -> None:
        """An accepted event: feed the instruments derived from it (not session.state)."""

    def session_state(self, gateway: str, state: str, reason: str | None) -> None:
        """A session.state event was recorded, or a recovery set a session idle."""

    def attention_reported(self, payload: Mapping[str, Any]) -> None:
        """A monitor report that was not suppressed (eventType in the payload)."""

    def recovery_requested(self, payload: Mapping[str, Any]) -> None: ...

    def recovery_completed(self, payload: Mapping[str, Any]) -> None: ...

    def scan_finished(self, duration_ms: float, lag_ms: float) -> None: ...

    def sessions_evicted(self, reason: str, count: int) -> None: ...

    def clock_clamped(self, gateway: str) -> None: ...

    def forwarder_dropped(self, gateway: str, count: int) -> None: ...

    def export_health(self) -> dict[str, Any]:
        """For /readyz: exporter configured, failures per signal."""
        return {"otlp": "disabled", "failures": {}}

    def render_metrics(self) -> tuple[bytes, str]:
        """Prometheus text exposition for /metrics, and its content type."""
        return b"", "text/plain; version=0.0.4; charset=utf-8"

    def shutdown(self) -> None:
        """Flush and stop exporters."""
