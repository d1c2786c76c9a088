"""The webhook recovery executor against a real local HTTP server playing the gateway.

OPENCLAW_DIAG_RECOVERY_MODE=webhook, the URL template carries {gatewayId}. Each test makes its
own stuck session (the seed scenario: orphaned model call, idle, queued work), scripts the
gateway's answer for that sessionKey, and reads the outcome back over the API.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.service_process import (
    SKIPPED,
    FakeGatewayWebhook,
    Reply,
    ServiceProcess,
    keepalive,
    now_ms,
    post_events,
    recoveries,
    wait_until,
)

GW = "gw-hook"
HOOK_TOKEN = "hook-secret"
REQUEST_FIELDS = {"gatewayId", "sessionKey", "sessionId", "ageMs", "queueDepth", "expectedState",
                  "stateGeneration", "reason", "activeWorkKind", "allowActiveAbort", "requestedAt", "origin"}


@pytest.fixture(scope="module")
def gateway() -> FakeGatewayWebhook:
    fake = FakeGatewayWebhook(default=SKIPPED).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def svc(module_service_factory, gateway) -> ServiceProcess:
    return module_service_factory({
        "recovery_mode": "webhook",
        "recovery_webhook_url": gateway.url_template,
        "recovery_webhook_token": HOOK_TOKEN,
        "recovery_timeout_ms": 5000,
    }, name="webhook")


def make_stuck(svc: ServiceProcess, key: str, queue: int = 1, gateway: str = GW) -> None:
    """An idle session with `queue` queued messages behind an orphaned model call, 5 s old."""
    t = now_ms()
    post_events(svc.client, [
        keepalive(gateway),
        {"type": "session.state", "gatewayId": gateway, "sessionKey": key, "sessionId": f"id-{key}",
         "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "gatewayId": gateway, "sessionKey": key, "runId": f"run-{key}",
         "provider": "openai", "model": "gpt-5", "ts": t - 5000},
        {"type": "session.state", "gatewayId": gateway, "sessionKey": key, "state": "idle", "queueDepth": 0,
         "ts": t - 4000},
        {"type": "message.queued", "gatewayId": gateway, "sessionKey": key, "source": "telegram",
         "queueDepth": queue, "ts": t - 3000},
    ])


def completed(svc: ServiceProcess, key: str, gateway: str = GW, **match: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for a completed recovery of `key` (matching `match`); return (session, the first such entry)."""
    def done() -> tuple[dict[str, Any], dict[str, Any]] | None:
        session = svc.session(key, gateway)
        entries = recoveries(session, "completed", **match)
        return (session, entries[-1]) if entries else None
    return wait_until(done, timeout=15, what=f"a completed recovery {match or ''} for {key}")


def test_the_request_reaches_the_gateway_url_with_the_fields_of_the_contract(svc, gateway):
    key = "hook:request"
    make_stuck(svc, key)
    received = gateway.wait_for_request(key)

    assert received.path == f"/recover/{GW}", "{gatewayId} is replaced in the URL template"
    assert received.headers["authorization"] == f"Bearer {HOOK_TOKEN}"
    assert received.headers["content-type"].startswith("application/json")
    request = received.body
    assert set(request) == REQUEST_FIELDS
    assert request["gatewayId"] == GW
    assert request["sessionKey"] == key and request["sessionId"] == f"id-{key}"
    assert request["expectedState"] == "idle"
    assert request["queueDepth"] == 1
    assert request["reason"] == "queued_work_without_active_run"
    assert request["activeWorkKind"] is None and request["allowActiveAbort"] is False
    assert request["ageMs"] > 1000
    assert abs(request["requestedAt"] - received.at) < 5000, "requestedAt is (gateway) now"
    session, _ = completed(svc, key)
    assert request["stateGeneration"] == session["generation"]


def test_released_sets_the_session_idle_with_an_empty_queue_and_a_new_generation(svc, gateway):
    key = "hook:released"
    gateway.script[key] = Reply.outcome("released", "release_lane", released=1)
    make_stuck(svc, key, queue=2)
    request = gateway.wait_for_request(key).body

    session, entry = completed(svc, key)
    assert (entry["status"], entry["action"], entry["released"]) == ("released", "release_lane", 1)
    assert "stale" not in entry
    assert session["state"] == "idle"
    assert session["queueDepth"] == 0
    assert session["generation"] == request["stateGeneration"] + 1
    assert "activeWorkKind" not in session["activity"], "the orphaned markers are cleared"
    assert session["lastActivityAt"] >= request["requestedAt"]
    assert session["attention"] is None
    assert session["lastRecovery"]["status"] == "released"
    assert session["recoveryInFlight"] is False


def test_an_applied_recovery_is_recorded_as_a_session_state_transition_in_the_history(svc, gateway):
    key = "hook:released-history"
    gateway.script[key] = Reply.outcome("released", "release_lane", released=1)
    make_stuck(svc, key)
    session, _ = completed(svc, key, status="released")
    transitions = [e for e in session["recentEvents"]
                   if e["type"] == "session.state" and e.get("reason") == "stuck_recovery:released"]
    assert transitions and transitions[0]["state"] == "idle"


@pytest.mark.parametrize(("outcome", "queue", "queue_after"), [
    ({"aborted": True, "released": 1, "queuedCount": 0}, 2, 0),  # released and nothing left queued
    ({"aborted": True, "queuedCount": 3}, 2, 2),  # idle, work still queued: keep max(current, requested)
    ({"aborted": True}, 2, 1),  # otherwise one finished turn is dequeued
], ids=["released-nothing-queued", "queued-count", "plain"])
def test_aborted_releases_the_session_with_the_queue_rule_of_the_contract(svc, gateway, outcome, queue, queue_after):
    key = f"hook:aborted:{queue_after}"
    gateway.script[key] = Reply.outcome("aborted", "abort_embedded_run", **outcome)
    make_stuck(svc, key, queue=queue)
    request = gateway.wait_for_request(key).body

    session, entry = completed(svc, key)
    assert (entry["status"], entry["action"]) == ("aborted", "abort_embedded_run")
    assert session["state"] == "idle"
    assert session["queueDepth"] == queue_after
    assert session["generation"] == request["stateGeneration"] + 1
    assert "activeWorkKind" not in session["activity"]


def test_skipped_changes_nothing(svc, gateway):
    key = "hook:skipped"
    gateway.script[key] = Reply.outcome("skipped", "keep_lane", outcomeReason="active_lane_task")
    make_stuck(svc, key)
    request = gateway.wait_for_request(key).body

    session, entry = completed(svc, key)
    assert (entry["status"], entry["action"], entry["outcomeReason"]) == ("skipped", "keep_lane", "active_lane_task")
    assert session["generation"] == request["stateGeneration"]
    assert session["queueDepth"] == 1 and session["state"] == "idle"
    assert session["activity"]["activeWorkKind"] == "model_call"
    assert session["attention"]["eventType"] == "session.stuck"


@pytest.mark.parametrize(("reply", "error_part"), [
    (Reply(503, {"error": "gateway overloaded"}), "503"),
    (Reply(500, b"<html>oops</html>"), "500"),
    (Reply(200, b"not json at all"), "invalid webhook outcome"),
    (Reply(200, {"status": "released", "action": "abort_embedded_run"}), "invalid webhook outcome"),
    (Reply(200, {"status": "exploded", "action": "none"}), "invalid webhook outcome"),
], ids=["503", "500-html", "200-not-json", "200-action-mismatch", "200-unknown-status"])
def test_an_answer_that_is_not_a_valid_outcome_is_failed_and_changes_nothing(svc, gateway, reply, error_part,
                                                                            request):
    key = f"hook:bad:{request.node.callspec.id}"
    gateway.script[key] = reply
    make_stuck(svc, key)
    request = gateway.wait_for_request(key).body

    session, entry = completed(svc, key)
    assert (entry["status"], entry["action"], entry["outcomeReason"]) == ("failed", "none", "exception")
    assert error_part in entry["error"]
    assert session["generation"] == request["stateGeneration"]
    assert session["queueDepth"] == 1 and session["activity"]["activeWorkKind"] == "model_call"


def test_gateway_that_never_answers_times_out_as_failed(service_factory, fake_gateway):
    svc = service_factory({"recovery_mode": "webhook", "recovery_webhook_url": fake_gateway.url_template,
                           "recovery_timeout_ms": 300}, name="webhook-timeout")
    key = "hook:timeout"
    fake_gateway.script[key] = Reply(never=True)
    make_stuck(svc, key)
    fake_gateway.wait_for_request(key)

    session, entry = completed(svc, key)
    assert (entry["status"], entry["action"], entry["outcomeReason"]) == ("failed", "none", "exception")
    assert "timeout" in entry["error"].lower()
    assert session["queueDepth"] == 1 and session["state"] == "idle"
    assert session["recoveryInFlight"] is False
    assert svc.healthy()


def test_session_changed_while_the_gateway_answers_makes_the_outcome_stale(svc, gateway):
    key = "hook:guard-generation"
    held = Reply.held(Reply.outcome("released", "release_lane", released=1))
    gateway.script[key] = [held, SKIPPED]
    make_stuck(svc, key)
    request = gateway.wait_for_request(key).body
    # while the gateway holds its answer, another message is queued
    post_events(svc.client, [{"type": "message.queued", "gatewayId": GW, "sessionKey": key,
                              "source": "telegram", "ts": now_ms()}])
    changed = svc.session(key, GW)
    assert changed["generation"] == request["stateGeneration"] + 1
    held.hold.set()

    session, entry = completed(svc, key, status="released")
    assert entry["stale"] is True
    assert entry["stateGeneration"] == request["stateGeneration"]
    # nothing changed by the stale outcome
    assert session["generation"] == changed["generation"]
    assert session["queueDepth"] == 2 and session["state"] == "idle"
    assert session["activity"]["activeWorkKind"] == "model_call"


def test_run_started_after_the_request_makes_the_outcome_stale(svc, gateway):
    """The newer-owner check: same generation and state, but a run started after requestedAt."""
    key = "hook:guard-owner"
    held = Reply.held(Reply.outcome("released", "release_lane", released=1))
    gateway.script[key] = [held, SKIPPED]
    make_stuck(svc, key)
    request = gateway.wait_for_request(key).body
    post_events(svc.client, [{"type": "run.started", "gatewayId": GW, "sessionKey": key,
                              "runId": "run-newer", "ts": now_ms()}])
    assert svc.session(key, GW)["generation"] == request["stateGeneration"], "activity does not bump the generation"
    held.hold.set()

    session, entry = completed(svc, key, status="released")
    assert entry["stale"] is True
    assert session["generation"] == request["stateGeneration"]
    assert session["queueDepth"] == 1
    assert session["activity"]["hasActiveEmbeddedRun"] is True, "the newer run is still there"
    assert session["activity"]["activeWorkKind"] == "model_call"


def test_an_unsafe_gateway_id_is_never_put_into_the_url(svc, gateway):
    """A gateway id comes from the events: one that could leave its path segment (or its DNS
    label) addresses nobody; the release before escaped it into the path instead."""
    odd = "gw/../a b"
    key = "hook:unsafe"
    make_stuck(svc, key, gateway=odd)

    def completed() -> list[dict]:
        response = svc.client.get(f"/v1/sessions/{key}", params={"gatewayId": odd})
        return recoveries(response.json(), "completed") if response.status_code == 200 else []

    done = wait_until(completed, timeout=10)
    assert done[0]["status"] == "failed" and done[0]["outcomeReason"] == "unsafe_gateway_id"
    assert gateway.requests_for(key) == []