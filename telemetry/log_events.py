"""The OTLP log records and the stuck span the recorder emits (docs/telemetry.md, "Log events").

Records carry `event.name`, the severity, body = the event name and every non-null payload field
as `openclaw.<field>`; the span `openclaw.session.stuck` is an instant span with status ERROR.
Neither ever raises into the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from telemetry import instruments as ins

_log = logging.getLogger(__name__)

# What a record or span carries for a session id: the id, a hash of it, or nothing (None). The
# service passes its OPENCLAW_DIAG_EXPORT_SESSION_IDS policy (app/session_ids.py).
SessionIdPolicy = Callable[[str], "str | None"]
SESSION_ID_FIELDS = frozenset({"sessionKey", "sessionId", "activeToolCallId"})


def as_is(value: str) -> str:
    return value


def log_value(value: Any) -> Any:
    """A payload value as an OTLP attribute value (ints beyond 64 bits as text)."""
    if isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    return str(value)


def _severity(text: str) -> Any:
    from opentelemetry._logs import SeverityNumber

    return SeverityNumber.WARN if text == "WARN" else SeverityNumber.INFO


def emit(logger: Any, name: str, severity: str, payload: Mapping[str, Any], fields: tuple[str, ...],
         session_ids: SessionIdPolicy = as_is) -> None:
    """One log record on `logger` (None: logs are not exported)."""
    if logger is None:
        return
    prefix = ins.LOG_ATTRIBUTE_PREFIX
    attributes: dict[str, Any] = {ins.EVENT_NAME_ATTRIBUTE: name}
    for key, value in payload.items():
        if value is not None and key in SESSION_ID_FIELDS:
            value = session_ids(str(value))
        if value is not None and key != "eventType":
            attributes[prefix + key] = log_value(value)
    if "state" not in payload and payload.get("expectedState") is not None and "state" in fields:
        attributes[ins.STATE] = log_value(payload["expectedState"])
    now = time.time_ns()
    try:
        logger.emit(
            timestamp=now,
            observed_timestamp=now,
            severity_number=_severity(severity),
            severity_text=severity,
            body=name,
            attributes=attributes,
            event_name=name,
        )
    except Exception:  # telemetry never breaks the caller
        _log.exception("telemetry: emitting %s failed", name)


def stuck_span(tracer: Any, payload: Mapping[str, Any], session_ids: SessionIdPolicy = as_is) -> None:
    """The instant span of a stuck report on `tracer` (None: spans are not exported)."""
    if tracer is None:
        return
    from opentelemetry.context import Context
    from opentelemetry.trace import Status, StatusCode

    attributes: dict[str, Any] = {}
    for key, field_name in (
        (ins.STATE, "state"),
        ("openclaw.ageMs", "ageMs"),
        ("openclaw.queueDepth", "queueDepth"),
        ("openclaw.sessionKey", "sessionKey"),
        ("openclaw.sessionId", "sessionId"),
        ("openclaw.gatewayId", "gatewayId"),
    ):
        value = payload.get(field_name)
        if value is not None and field_name in SESSION_ID_FIELDS:
            value = session_ids(str(value))
        if value is not None:
            attributes[key] = log_value(value)
    now = time.time_ns()
    try:
        span = tracer.start_span(ins.SPAN_STUCK, context=Context(), attributes=attributes, start_time=now)
        span.set_status(Status(StatusCode.ERROR, "session stuck"))
        span.end(end_time=now)
    except Exception:
        _log.exception("telemetry: the stuck span failed")
