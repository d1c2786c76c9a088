"""The seed scenario of OpenClaw 286964c ("recover orphaned session activity"), end to end.

A real uvicorn process (warn 1 s, scan 100 ms, observe executor), real HTTP. Sessions are made
old with `ts` values in the past (after a keepalive stamped now, so the gateway's clock is known
to be right); every expectation is polled with a deadline.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.service_process import (
    ServiceProcess,
    keepalive,
    now_ms,
    post_events,
    recoveries,
    wait_until,
)

WARN_MS = 1000


@pytest.fixture(scope="module")
def svc(module_service_factory) -> ServiceProcess:
    return module_service_factory({"stuck_session_warn_ms": WARN_MS}, name="seed")


def flagged(svc: ServiceProcess, key: str, event_type: str | None = None) -> dict[str, Any] | None:
    """The session once it carries attention (of `event_type`, when given), else None."""
    session = svc.session(key)
    attention = session["attention"]
    if attention is None or (event_type is not None and attention["eventType"] != event_type):
        return None
    return session


def wait_ticks(svc: ServiceProcess, count: int) -> None:
    """Let the monitor run `count` more scans."""
    start = svc.client.get("/readyz").json()["monitor"]["ticks"]
    wait_until(lambda: svc.client.get("/readyz").json()["monitor"]["ticks"] >= start + count,
               timeout=10, what=f"{count} monitor ticks")


def listed(svc: ServiceProcess, key: str, **filters: Any) -> dict[str, Any] | None:
    return next((item for item in svc.sessions(**filters) if item["sessionKey"] == key), None)


def test_orphaned_model_call_left_by_idle_with_queued_work_is_stuck_and_recovery_is_requested(svc):
    key = "agent:main:seed"
    t = now_ms()
    post_events(svc.client, [
        keepalive(),
        {"type": "session.state", "sessionKey": key, "sessionId": "sid-seed", "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "sessionKey": key, "sessionId": "sid-seed", "runId": "run-seed",
         "provider": "openai", "model": "gpt-5", "ts": t - 5000},
        # the turn ends; the model call's end never arrives: an orphan
        {"type": "session.state", "sessionKey": key, "state": "idle", "queueDepth": 0, "ts": t - 4000},
        {"type": "message.queued", "sessionKey": key, "source": "telegram", "ts": t - 3000},
    ])

    session = wait_until(lambda: flagged(svc, key, "session.stuck"), what="the seed session stuck")
    assert session["state"] == "idle" and session["queueDepth"] == 1
    assert session["activity"]["activeWorkKind"] == "model_call"
    assert "hasActiveEmbeddedRun" not in session["activity"]
    attention = session["attention"]
    assert attention["reason"] == "queued_work_without_active_run"
    assert attention["classification"] == "stale_session_state"
    assert attention["activeWorkKind"] is None
    assert attention["recoveryEligible"] is True
    assert attention["attentionAgeMs"] > WARN_MS  # the progress clock's age: the call started 5 s ago
    assert attention["since"] <= now_ms()

    item = listed(svc, key, attention="stuck")
    assert item is not None, "the stuck session is missing from GET /v1/sessions?attention=stuck"
    assert item["attention"]["reason"] == "queued_work_without_active_run"
    assert listed(svc, key, attention="stalled") is None

    summary = svc.client.get("/v1/attention").json()
    assert summary["byEventType"].get("session.stuck", 0) >= 1
    assert any(s["sessionKey"] == key for s in summary["oldest"])

    session = wait_until(lambda: recoveries(s := svc.session(key), "completed") and s,
                         what="the seed recovery completed")
    requested = recoveries(session, "requested")[-1]  # the first request (newest first)
    assert requested["gatewayId"] == "default"
    assert requested["sessionKey"] == key and requested["sessionId"] == "sid-seed"
    assert requested["expectedState"] == "idle"
    assert requested["queueDepth"] == 1
    assert requested["reason"] == "queued_work_without_active_run"
    assert requested["activeWorkKind"] is None and requested["allowActiveAbort"] is False
    assert requested["stateGeneration"] == session["generation"]
    completed = recoveries(session, "completed")[-1]
    assert (completed["status"], completed["action"], completed["outcomeReason"]) == (
        "skipped", "observe_only", "no_recovery_target")
    assert "stale" not in completed
    # observe mode changes nothing
    assert session["state"] == "idle" and session["queueDepth"] == 1


def test_processing_session_with_a_silent_model_call_is_stalled_not_stuck(svc):
    key = "agent:main:processing"
    t = now_ms()
    post_events(svc.client, [
        keepalive(),
        {"type": "session.state", "sessionKey": key, "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "sessionKey": key, "runId": "run-proc", "provider": "openai",
         "model": "gpt-5", "ts": t - 5000},
    ])

    session = wait_until(lambda: flagged(svc, key), what="the processing session flagged")
    attention = session["attention"]
    assert (attention["eventType"], attention["reason"], attention["classification"]) == (
        "session.stalled", "active_work_without_progress", "stalled_agent_run")
    assert attention["activeWorkKind"] == "model_call"
    assert attention["recoveryEligible"] is False
    assert attention["attentionAgeMs"] > WARN_MS  # processing: the session clock's age
    wait_ticks(svc, 5)
    session = svc.session(key)
    assert session["attention"]["eventType"] == "session.stalled"
    assert session["recoveries"] == [], "a stalled run between warn and abort is observe-only"


def test_explicit_embedded_run_owner_survives_idle_so_the_session_is_not_stuck(svc):
    key = "agent:main:embedded"
    t = now_ms()
    post_events(svc.client, [
        keepalive(),
        {"type": "session.state", "sessionKey": key, "sessionId": "sid-emb", "state": "processing", "ts": t - 5000},
        {"type": "embedded_run.started", "sessionKey": key, "sessionId": "sid-emb", "workKey": "work-1", "ts": t - 5000},
        {"type": "model.call.started", "sessionKey": key, "runId": "run-emb", "provider": "openai",
         "model": "gpt-5", "ts": t - 5000},
        {"type": "session.state", "sessionKey": key, "state": "idle", "queueDepth": 0, "ts": t - 4000},
        {"type": "message.queued", "sessionKey": key, "source": "telegram", "ts": t - 3000},
    ])

    session = wait_until(lambda: flagged(svc, key), what="the embedded-run session flagged")
    assert session["state"] == "idle" and session["queueDepth"] == 1
    assert session["activity"]["hasActiveEmbeddedRun"] is True, "an explicit embedded run survives idle"
    attention = session["attention"]
    assert (attention["eventType"], attention["reason"], attention["classification"]) == (
        "session.stalled", "active_work_without_progress", "stalled_agent_run")
    assert attention["activeWorkKind"] == "model_call"
    wait_ticks(svc, 5)
    session = svc.session(key)
    assert session["attention"]["eventType"] == "session.stalled"
    assert session["recoveries"] == [], "work an embedded run owns is not recovered before the abort threshold"


def test_stock_gateway_run_owner_is_ended_by_idle_and_the_leftover_model_call_is_an_orphan(svc):
    key = "agent:main:stock"
    t = now_ms()
    post_events(svc.client, [
        keepalive(),
        {"type": "run.started", "sessionKey": key, "sessionId": "sid-stock", "runId": "run-stock", "ts": t - 5000},
        {"type": "session.state", "sessionKey": key, "sessionId": "sid-stock", "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "runId": "run-stock", "provider": "anthropic", "model": "claude",
         "ts": t - 5000},  # no session ids: resolved through the run
    ])
    running = svc.session(key)
    assert running["activity"]["hasActiveEmbeddedRun"] is True, "run.started makes a run:* owner"
    assert running["activity"]["activeWorkKind"] == "model_call"

    post_events(svc.client, [
        {"type": "session.state", "sessionKey": key, "state": "idle", "queueDepth": 0, "ts": t - 4000},
        {"type": "message.queued", "sessionKey": key, "source": "discord", "ts": t - 3000},
    ])
    session = wait_until(lambda: flagged(svc, key, "session.stuck"), what="the stock-gateway session stuck")
    assert "hasActiveEmbeddedRun" not in session["activity"], "idle ends run:* owners"
    assert session["activity"]["activeWorkKind"] == "model_call"
    assert session["attention"]["reason"] == "queued_work_without_active_run"
    session = wait_until(lambda: recoveries(s := svc.session(key), "completed") and s,
                         what="the stock-gateway recovery completed")
    assert recoveries(session, "requested", reason="queued_work_without_active_run")
    assert recoveries(session, "completed", status="skipped", outcomeReason="no_recovery_target")


def test_same_orphan_while_still_processing_is_stalled_not_stuck(svc):
    """Row 1 only fires for idle: the orphan of a processing session is stalled work."""
    key = "agent:main:orphan-processing"
    t = now_ms()
    post_events(svc.client, [
        keepalive(),
        {"type": "session.state", "sessionKey": key, "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "sessionKey": key, "runId": "run-op", "provider": "openai",
         "model": "gpt-5", "ts": t - 5000},
        {"type": "message.queued", "sessionKey": key, "source": "telegram", "ts": t - 3000},
    ])
    session = wait_until(lambda: flagged(svc, key), what="the session flagged")
    assert session["state"] == "processing" and session["queueDepth"] == 1
    assert session["attention"]["eventType"] == "session.stalled"
    assert session["attention"]["reason"] == "active_work_without_progress"


def test_finished_turn_is_never_flagged(svc):
    key = "agent:main:normal"
    t = now_ms()
    post_events(svc.client, [
        keepalive(),
        {"type": "run.started", "sessionKey": key, "runId": "run-ok", "ts": t - 5000},
        {"type": "session.state", "sessionKey": key, "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "sessionKey": key, "runId": "run-ok", "provider": "openai",
         "model": "gpt-5", "ts": t - 5000},
        {"type": "model.call.completed", "sessionKey": key, "runId": "run-ok", "provider": "openai",
         "model": "gpt-5", "ts": t - 4500},
        {"type": "run.completed", "sessionKey": key, "runId": "run-ok", "ts": t - 4400},
        {"type": "session.state", "sessionKey": key, "state": "idle", "queueDepth": 0, "ts": t - 4300},
    ])
    wait_ticks(svc, 3)
    session = svc.session(key)
    assert session["state"] == "idle" and session["queueDepth"] == 0
    assert session["attention"] is None and session["recoveries"] == []
    assert "activeWorkKind" not in session["activity"]
    assert listed(svc, key, attention="none") is not None
