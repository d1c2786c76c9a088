"""Activity markers: the key under which a start and its end find each other."""

from __future__ import annotations

from app.events import INT64_MAX, Event


def tool_marker(event: Event) -> str:
    owner = event.runId or event.sessionId or event.sessionKey or "unknown"
    return f"{owner}:{event.toolCallId or event.toolName}"


def model_marker(event: Event) -> str:
    return f"{event.runId or 'unknown'}:{event.provider}:{event.model}"


def embedded_marker(event: Event) -> str:
    return event.workKey or event.sessionId or event.sessionKey or "unknown"


def _marker(event: Event) -> str | None:
    kind = event.type
    if kind.startswith("tool.execution."):
        return tool_marker(event)
    if kind.startswith("model.call."):
        return model_marker(event)
    if kind in ("run.started", "run.completed"):
        return f"run:{event.runId}"
    if kind.startswith("embedded_run."):
        return embedded_marker(event)
    return None


def _int_or_none(value: float | None) -> int | None:
    """Ages the gateway reported, as integers within int64 (what the journal can store)."""
    return None if value is None else int(min(value, INT64_MAX))
