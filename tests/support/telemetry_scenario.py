"""Test support: drive every telemetry instrument through the Recorder interface.

Used by the telemetry tests (in-memory, /metrics and real OTLP). Every id in here starts with
``ID-`` so a test can prove no id ever became a metric attribute.
"""

from __future__ import annotations

from typing import Any

from app.events import ContextSize, Event, ParamsSummary, Usage
from telemetry.record import GatewayStatus, LiveSources, Recorder, SessionCount

GW = "gw-1"
SESSION_KEY = "ID-agent:main:hang2"
SESSION_ID = "ID-e57ae6fe-fae1-4c65"
RUN_ID = "ID-run-46333219"
CALL_ID = "ID-call-1"
TOOL_CALL_ID = "ID-toolcall-7"
IDS = (SESSION_KEY, SESSION_ID, RUN_ID, CALL_ID, TOOL_CALL_ID)

_ids = {"sessionKey": SESSION_KEY, "sessionId": SESSION_ID, "runId": RUN_ID}


def gateway_events() -> list[Event]:
    """One event of each type that feeds an instrument, all fields that matter set."""
    return [
        Event(type="message.queued", source="telegram", channel="telegram", queueDepth=2, **_ids),
        Event(type="session.turn.created", agentId="main", channel="telegram", trigger="user", **_ids),
        Event(type="queue.lane.enqueue", lane=f"session:{SESSION_KEY}", queueSize=3),
        Event(type="queue.lane.dequeue", lane=f"session:{SESSION_KEY}", queueSize=2, waitMs=1250.0),
        Event(type="queue.lane.enqueue", lane="cron", queueSize=1),
        Event(type="diagnostic.heartbeat", queued=4),
        Event(type="run.attempt", attempt=2, **_ids),
        Event(type="run.completed", outcome="error", durationMs=110_000, provider="openai", model="gpt-5",
              channel="telegram", **_ids),
        Event(
            type="model.call.completed", provider="openai", model="gpt-5", api="openai-completions",
            transport="sse", observationUnit="request", callId=CALL_ID, durationMs=2100.5, requestPayloadBytes=50_000,
            responseStreamBytes=3_000, timeToFirstByteMs=640.0, **_ids,
        ),
        Event(
            type="model.call.error", provider="openai", model="gpt-5", api="openai-completions",
            transport="sse", callId=CALL_ID, errorCategory="Error", failureKind="timeout",
            durationMs=110_000, **_ids,
        ),
        Event(type="model.failover", fromProvider="openai", fromModel="gpt-5", toProvider="anthropic",
              toModel="claude-sonnet", reason="rate_limit", suspended=False, lane="main", **_ids),
        Event(
            type="model.usage", channel="telegram", agentId="main", provider="openai", model="gpt-5",
            usage=Usage(input=1000, output=200, cacheRead=50, cacheWrite=10, promptTokens=1000, total=1260),
            context=ContextSize(limit=128_000, used=9_000), costUsd=0.25, durationMs=2_500, **_ids,
        ),
        Event(type="tool.execution.completed", toolName="exec", toolSource="core", toolOwner="core",
              paramsSummary=ParamsSummary(kind="object"), toolCallId=TOOL_CALL_ID, durationMs=42.0, **_ids),
        Event(type="tool.execution.error", toolName="exec", toolSource="core", toolOwner="core",
              paramsSummary=ParamsSummary(kind="object"), toolCallId=TOOL_CALL_ID, errorCategory="EACCES",
              durationMs=5.0, **_ids),
        Event(type="tool.execution.blocked", toolName="exec", toolSource="core", toolOwner="core",
              paramsSummary=ParamsSummary(kind="string", length=12), deniedReason="policy", reason="not allowed",
              toolCallId=TOOL_CALL_ID, **_ids),
        Event(type="tool.loop", toolName="exec", level="warning", action="warn", detector="generic_repeat", count=5,
              **_ids),
        Event(type="webhook.received", channel="telegram", updateType="message"),
        Event(type="webhook.processed", channel="telegram", updateType="message", durationMs=30.0),
        Event(type="webhook.error", channel="telegram", updateType="message"),
        Event(type="message.received", channel="telegram", source="telegram", **_ids),
        Event(type="message.processed", channel="telegram", outcome="completed", durationMs=4000.0, **_ids),
        Event(type="message.dispatch.started", channel="telegram", source="reply", **_ids),
        Event(type="message.dispatch.completed", channel="telegram", source="reply", outcome="completed",
              reason="sent", durationMs=120.0, **_ids),
        Event(type="message.delivery.started", channel="telegram", deliveryKind="text", **_ids),
        Event(type="message.delivery.completed", channel="telegram", deliveryKind="text", durationMs=80.0, **_ids),
        Event(type="message.delivery.error", channel="telegram", deliveryKind="text", errorCategory="HttpError",
              durationMs=15.0, **_ids),
    ]


def attention_payload(kind: str, **extra: Any) -> dict[str, Any]:
    payload = {
        "eventType": f"session.{kind}",
        "sessionKey": SESSION_KEY,
        "sessionId": SESSION_ID,
        "gatewayId": GW,
        "state": "processing",
        "ageMs": 150_000,
        "queueDepth": 1,
        "reason": "active_work_without_progress" if kind != "stuck" else "stale_session_state",
        "classification": "stalled_agent_run" if kind != "stuck" else "stale_session_state",
        "activeWorkKind": "model_call" if kind != "stuck" else None,
        "lastProgressAgeMs": 149_000,
        "lastProgressReason": "model_call:started",
        "activeToolName": None,
        "activeToolCallId": None,
        "activeToolAgeMs": None,
        "terminalProgressStale": False,
        "gatewaySilent": False,
        "warmingUp": False,
    }
    payload.update(extra)
    return payload


def recovery_payload(**extra: Any) -> dict[str, Any]:
    payload = {
        "gatewayId": GW,
        "sessionKey": SESSION_KEY,
        "sessionId": SESSION_ID,
        "ageMs": 150_000,
        "queueDepth": 1,
        "expectedState": "processing",
        "stateGeneration": 7,
        "reason": "stale_session_state",
        "activeWorkKind": None,
        "allowActiveAbort": False,
        "requestedAt": 1_795_575_950_658,
    }
    payload.update(extra)
    return payload


def live_sources(gateway: str = GW) -> LiveSources:
    return LiveSources(
        sessions=lambda: [
            SessionCount(gateway, "processing", "stuck", "stale_session_state", 1, 150_000),
            SessionCount(gateway, "processing", "stalled", "active_work_without_progress", 2, 95_000),
            SessionCount(gateway, "idle", "none", None, 10),
            SessionCount("gw-2", "idle", "none", None, 4),
        ],
        gateways=lambda: [
            GatewayStatus(gateway, False, -250, 3),
            GatewayStatus("gw-2", True, 1200, None),
        ],
    )


def drive_all(recorder: Recorder) -> None:
    """Make every instrument of instruments.INSTRUMENTS produce at least one point."""
    recorder.bind(live_sources())
    recorder.events_counted(
        {(GW, "model.call.completed", "accepted"): 3, (GW, "brand.new.type", "ignored"): 1, (GW, "session.state", "rejected"): 2}
    )
    for event in gateway_events():
        recorder.event_applied(event, GW)
    recorder.session_state(GW, "processing", "run_started")
    recorder.session_state(GW, "idle", "stuck_recovery:released")
    recorder.attention_reported(attention_payload("long_running"))
    recorder.attention_reported(attention_payload("stalled"))
    recorder.attention_reported(attention_payload("stuck", state="idle"))
    recorder.recovery_requested(recovery_payload(expectedState="idle"))
    recorder.recovery_completed(
        recovery_payload(expectedState="idle", status="released", action="release_lane", released=2)
    )
    recorder.recovery_completed(
        recovery_payload(
            expectedState="processing", status="skipped", action="observe_only", outcomeReason="no_recovery_target"
        )
    )
    recorder.scan_finished(12.5, 3.0)
    recorder.sessions_evicted("ttl", 4)
    recorder.journal_refused("journal_full")
    recorder.notify_failed("http_status")
    recorder.recovery_verified({"gatewayId": GW, "sessionKey": SESSION_KEY, "result": "ineffective",
                                "origin": "automatic", "reason": "stale_session_state", "appliedAt": 1})
    recorder.bounded_evicted("tombstone", 3)
    recorder.clock_clamped(GW)
    recorder.forwarder_dropped(GW, 5)
