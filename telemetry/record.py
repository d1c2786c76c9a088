"""What the service tells telemetry: the one interface the core calls (docs/telemetry.md).

The core (ingest, store, monitor, recovery) calls these methods and nothing else of
telemetry; this module maps each call to instruments (telemetry/instruments.py) and OTLP log
records. Payload dicts use the camelCase field names of the log events in docs/telemetry.md. The gateway
events' instruments are one table in telemetry/event_table.py; the log records and the stuck span
are built in telemetry/log_events.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.events import KNOWN_TYPES as _KNOWN_TYPES
from telemetry import event_table, log_events
from telemetry import instruments as ins
from telemetry.store import MetricStore

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
    oldest_age_ms: int | None = None  # the longest attention age among them (attention rows)
    needs_human: bool = False  # on the needs-human list (app/monitor.py)
    maintenance: bool = False  # its gateway is in an operator's maintenance window


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    gateway: str
    silent: bool
    clock_skew_ms: int
    forwarder_queued: int | None
    maintenance: bool = False


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

    def journal_refused(self, reason: str) -> None:
        """An ingest request answered 503: journal_unavailable or journal_full."""

    def bounded_evicted(self, structure: str, count: int) -> None:
        """A bound dropped `count` entries of a structure (gateway, run, tombstone)."""

    def forwarder_dropped(self, gateway: str, count: int) -> None: ...

    def notify_failed(self, reason: str) -> None:
        """A notification delivery failed, was given up, or fell out of a full queue (app/notify.py)."""

    def recovery_verified(self, payload: Mapping[str, Any]) -> None:
        """An applied recovery was verified or found ineffective (result, origin in the payload)."""

    def gateway_moved(self, gateway: str) -> None:
        """The gateway is another instance's now: its series stop here."""

    def export_health(self) -> dict[str, Any]:
        """For /readyz: exporter configured, failures per signal."""
        return {"otlp": "disabled", "failures": {}}

    def render_metrics(self) -> tuple[bytes, str]:
        """Prometheus text exposition for /metrics, and its content type."""
        return b"", "text/plain; version=0.0.4; charset=utf-8"

    def force_flush(self) -> bool:
        """Export everything now (tests; before a planned stop). True when nothing failed."""
        return True

    def shutdown(self) -> None:
        """Flush and stop exporters."""


# ============================================================================================
# The real recorder
# ============================================================================================
# Everything below maps the core's calls to the instruments of telemetry/instruments.py (the
# one module that spells names) and to OTLP log records / the stuck span. The metric state is
# telemetry.store.MetricStore; export (OTLP, /metrics) is telemetry.setup's TelemetryPipeline.

_log = logging.getLogger(__name__)

G = ins.GATEWAY

_ATTENTION_EVENTS = {
    "long_running": (ins.EVENT_LONG_RUNNING, "INFO"),
    "stalled": (ins.EVENT_STALLED, "WARN"),
    "stuck": (ins.EVENT_STUCK, "WARN"),
}


class Pipeline(Protocol):
    """What the recorder needs from telemetry.setup: export, /metrics, health, shutdown."""

    store: MetricStore
    logger: Any
    tracer: Any

    def health(self) -> dict[str, Any]: ...

    def failure_rows(self) -> list[tuple[dict[str, str], int]]: ...

    def render(self) -> tuple[bytes, str]: ...

    def force_flush(self) -> bool: ...

    def shutdown(self) -> None: ...




class OtelRecorder(Recorder):
    """The real recorder: instruments, OTLP log events and the stuck span.

    The methods are meant to be called from one thread (the service's event loop): updating
    an existing series is lock-free. The observable gauges call the bound LiveSources from the
    export thread and from whichever thread renders /metrics, so those callbacks must be safe
    to call from another thread (return a snapshot).
    """

    def __init__(self, pipeline: Pipeline, gateway_attribute: bool = True,
                 session_ids: log_events.SessionIdPolicy | None = None) -> None:
        self._session_ids = session_ids or log_events.as_is
        self._pipeline = pipeline
        self._gw = bool(gateway_attribute)
        self._sources: LiveSources | None = None
        self._shut = False
        store = pipeline.store
        self.store = store
        i = store.instrument
        self._events = i(ins.MONITOR_EVENTS)
        self._journal_refused = i(ins.MONITOR_JOURNAL_REFUSED)
        self._notify_failures = i(ins.MONITOR_NOTIFY_FAILURES)
        self._verifications = i(ins.MONITOR_RECOVERY_VERIFICATIONS)
        self._bounded_evicted = i(ins.MONITOR_BOUNDED_EVICTED)
        self._state = i(ins.SESSION_STATE)
        self._stuck = i(ins.SESSION_STUCK)
        self._stuck_age = i(ins.SESSION_STUCK_AGE)
        self._rec_req = i(ins.RECOVERY_REQUESTED)
        self._rec_done = i(ins.RECOVERY_COMPLETED)
        self._released_items = i(ins.MONITOR_RECOVERY_RELEASED_ITEMS)
        self._rec_age = i(ins.RECOVERY_AGE)
        self._scan_duration = i(ins.MONITOR_SCAN_DURATION)
        self._scan_lag = i(ins.MONITOR_SCAN_LAG)
        self._evicted = i(ins.MONITOR_SESSIONS_EVICTED)
        self._clamped = i(ins.MONITOR_CLOCK_CLAMPED)
        self._dropped = i(ins.MONITOR_FORWARDER_DROPPED)
        self._handlers = event_table.handlers(store)  # the gateway events (telemetry/event_table.py)
        store.observe(ins.MONITOR_SESSIONS, self._session_rows)
        store.observe(ins.MONITOR_ATTENTION_AGE, self._attention_age_rows)
        store.observe(ins.MONITOR_GATEWAYS, self._gateway_rows)
        store.observe(ins.MONITOR_CLOCK_SKEW, self._skew_rows, _largest_magnitude)
        store.observe(ins.MONITOR_FORWARDER_QUEUED, self._forwarder_rows)
        store.observe(ins.MONITOR_EXPORT_FAILURES, pipeline.failure_rows)

    # -- small helpers (hot path: a dict lookup and an add when the series is cached) --------
    _add = staticmethod(event_table.add)
    _record = staticmethod(event_table.record)

    def _gateway(self, gateway: Any) -> Any:
        return gateway if self._gw else None

    # -- the Recorder contract ------------------------------------------------------------
    def bind(self, sources: LiveSources) -> None:
        self._sources = sources

    def events_counted(self, counts: Mapping[tuple[str, str, str], int]) -> None:
        inst = self._events
        gw_on = self._gw
        known = _KNOWN_TYPES
        add = self._add
        for (gateway, event_type, outcome), n in counts.items():
            if n:
                add(
                    inst,
                    (
                        (G, gateway if gw_on else None),
                        (ins.EVENT_TYPE, event_type if event_type in known else ins.OTHER_EVENT_TYPE),
                        (ins.OUTCOME, outcome),
                    ),
                    n,
                )

    def event_applied(self, event: Event, gateway: str) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(event, gateway if self._gw else None)

    def session_state(self, gateway: str, state: str, reason: str | None) -> None:
        self._add(self._state, ((G, self._gateway(gateway)), (ins.STATE, state), (ins.REASON, reason)), 1)

    def attention_reported(self, payload: Mapping[str, Any]) -> None:
        event_type = str(payload.get("eventType") or "")
        kind = event_type.removeprefix("openclaw.").removeprefix("session.")
        known = _ATTENTION_EVENTS.get(kind)
        if known is None:
            _log.warning("telemetry: unknown attention eventType %r", event_type)
            return
        name, severity = known
        if kind == "stuck":
            pairs = ((G, self._gateway(payload.get("gatewayId"))), (ins.STATE, payload.get("state")))
            self._add(self._stuck, pairs, 1)
            age = payload.get("ageMs")
            if isinstance(age, (int, float)):
                self._record(self._stuck_age, pairs, age)
            self._stuck_span(payload)
        self._emit(name, severity, payload, ins.ATTENTION_FIELDS)

    def recovery_requested(self, payload: Mapping[str, Any]) -> None:
        action = ins.ACTION_ABORT if payload.get("allowActiveAbort") else ins.ACTION_RECOVER
        pairs = (
            (G, self._gateway(payload.get("gatewayId"))),
            (ins.STATE, payload.get("expectedState")),
            (ins.ACTION, action),
            (ins.ACTIVE_WORK_KIND, payload.get("activeWorkKind")),
            (ins.REASON, payload.get("reason")),
        )
        self._add(self._rec_req, pairs, 1)
        age = payload.get("ageMs")
        if isinstance(age, (int, float)):
            self._record(self._rec_age, pairs, age)
        self._emit(ins.EVENT_RECOVERY_REQUESTED, "INFO", payload, ins.RECOVERY_REQUESTED_FIELDS)

    def recovery_completed(self, payload: Mapping[str, Any]) -> None:
        pairs = (
            (G, self._gateway(payload.get("gatewayId"))),
            (ins.STATE, payload.get("expectedState")),
            (ins.ACTION, payload.get("action")),
            (ins.STATUS, payload.get("status")),
            (ins.ACTIVE_WORK_KIND, payload.get("activeWorkKind")),
            (ins.REASON, payload.get("outcomeReason") or payload.get("reason")),
        )
        self._add(self._rec_done, pairs, 1)
        released = payload.get("released")
        if isinstance(released, int) and not isinstance(released, bool) and released > 0:
            self._add(self._released_items, (pairs[0], pairs[2], pairs[3]), released)
        age = payload.get("ageMs")
        if isinstance(age, (int, float)):
            self._record(self._rec_age, pairs, age)
        severity = "WARN" if payload.get("status") == "failed" else "INFO"
        self._emit(ins.EVENT_RECOVERY_COMPLETED, severity, payload, ins.RECOVERY_COMPLETED_FIELDS)

    def scan_finished(self, duration_ms: float, lag_ms: float) -> None:
        self._record(self._scan_duration, (), max(0.0, float(duration_ms)))
        self._record(self._scan_lag, (), max(0.0, float(lag_ms)))

    def sessions_evicted(self, reason: str, count: int) -> None:
        if count > 0:
            self._add(self._evicted, ((ins.REASON, reason),), count)

    def journal_refused(self, reason: str) -> None:
        self._add(self._journal_refused, ((ins.REASON, reason),), 1)

    def notify_failed(self, reason: str) -> None:
        self._add(self._notify_failures, ((ins.REASON, reason),), 1)

    def recovery_verified(self, payload: Mapping[str, Any]) -> None:
        result = payload.get("result")
        self._add(self._verifications, ((G, self._gateway(payload.get("gatewayId"))), (ins.RESULT, result),
                                        (ins.ORIGIN, payload.get("origin"))), 1)
        severity = "WARN" if result == "ineffective" else "INFO"
        self._emit(ins.EVENT_RECOVERY_VERIFIED, severity, payload, ins.RECOVERY_VERIFIED_FIELDS)

    def bounded_evicted(self, structure: str, count: int) -> None:
        if count > 0:
            self._add(self._bounded_evicted, ((ins.STRUCTURE, structure),), count)

    def clock_clamped(self, gateway: str) -> None:
        self._add(self._clamped, ((G, self._gateway(gateway)),), 1)

    def forwarder_dropped(self, gateway: str, count: int) -> None:
        if count > 0:
            self._add(self._dropped, ((G, self._gateway(gateway)),), count)

    def gateway_moved(self, gateway: str) -> None:
        self.store.forget_gateway(gateway)

    def export_health(self) -> dict[str, Any]:
        return self._pipeline.health()

    def render_metrics(self) -> tuple[bytes, str]:
        return self._pipeline.render()

    def force_flush(self) -> bool:
        """Export everything now (tests, and before a planned stop)."""
        return self._pipeline.force_flush()

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        self._pipeline.shutdown()

    # -- OTLP log events and the stuck span (telemetry/log_events.py) ---------------------
    def _emit(self, name: str, severity: str, payload: Mapping[str, Any], fields: tuple[str, ...]) -> None:
        log_events.emit(self._pipeline.logger, name, severity, payload, fields, self._session_ids)

    def _stuck_span(self, payload: Mapping[str, Any]) -> None:
        log_events.stuck_span(self._pipeline.tracer, payload, self._session_ids)

    # -- observable gauges (read at collection time, on the collecting thread) ------------
    def _session_rows(self) -> list[tuple[dict[str, Any], int]]:
        sources = self._sources
        if sources is None:
            return []
        gw_on = self._gw
        rows = []
        for row in sources.sessions():
            attrs: dict[str, Any] = {
                ins.STATE: row.state,
                ins.ATTENTION: row.attention,
                ins.REASON: row.reason if row.attention != ins.ATTENTION_NONE else None,
                ins.NEEDS_HUMAN: ins.TRUE if row.needs_human else ins.FALSE,
                ins.MAINTENANCE: ins.TRUE if row.maintenance else ins.FALSE,
            }
            if gw_on:
                attrs[G] = row.gateway
            rows.append((attrs, row.count))
        return rows

    def _attention_age_rows(self) -> list[tuple[dict[str, Any], int]]:
        """Since when: the oldest attention age per gateway, attention and reason."""
        sources = self._sources
        if sources is None:
            return []
        gw_on = self._gw
        oldest: dict[tuple[Any, str, str | None], int] = {}
        for row in sources.sessions():
            if row.oldest_age_ms is None:
                continue
            key = (row.gateway if gw_on else None, row.attention, row.reason)
            oldest[key] = max(oldest.get(key, 0), row.oldest_age_ms)
        rows = []
        for (gateway, attention, reason), age in oldest.items():
            attrs: dict[str, Any] = {ins.ATTENTION: attention, ins.REASON: reason}
            if gw_on:
                attrs[G] = gateway
            rows.append((attrs, age))
        return rows

    def _gateway_rows(self) -> list[tuple[dict[str, Any], int]]:
        sources = self._sources
        if sources is None:
            return []
        if self._gw:
            rows = []
            for gw in sources.gateways():
                quiet = ins.TRUE if gw.maintenance else ins.FALSE
                rows.append(({G: gw.gateway, ins.STATUS: ins.GATEWAY_LIVE, ins.MAINTENANCE: quiet}, 0 if gw.silent else 1))
                rows.append(({G: gw.gateway, ins.STATUS: ins.GATEWAY_SILENT, ins.MAINTENANCE: quiet},
                             1 if gw.silent else 0))
            return rows
        live = silent = 0
        for gw in sources.gateways():
            if gw.silent:
                silent += 1
            else:
                live += 1
        return [({ins.STATUS: ins.GATEWAY_LIVE}, live), ({ins.STATUS: ins.GATEWAY_SILENT}, silent)]

    def _skew_rows(self) -> list[tuple[dict[str, Any], int]]:
        sources = self._sources
        if sources is None:
            return []
        gw_on = self._gw
        return [({G: gw.gateway} if gw_on else {}, gw.clock_skew_ms) for gw in sources.gateways()]

    def _forwarder_rows(self) -> list[tuple[dict[str, Any], int]]:
        sources = self._sources
        if sources is None:
            return []
        gw_on = self._gw
        return [
            ({G: gw.gateway} if gw_on else {}, gw.forwarder_queued)
            for gw in sources.gateways()
            if gw.forwarder_queued is not None
        ]


def _largest_magnitude(a: float, b: float) -> float:
    """Clock skew without the gateway attribute: the gateway furthest off, either way."""
    return a if abs(a) >= abs(b) else b
