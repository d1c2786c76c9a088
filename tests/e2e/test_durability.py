"""Durability: `kill -9` the real process after a 202 and start it again on the same data dir.

Nothing acknowledged is lost: sessions (state, queue, generation, clocks, activity, aliases),
the dedupe window, recovery history; a recovery in flight at the kill ends as
failed / service_restarted; the sessions are classified again. One process per data dir.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.support.service_process import (
    SKIPPED,
    Reply,
    ServiceProcess,
    keepalive,
    now_ms,
    post_events,
    recoveries,
    wait_until,
)

GW = "gw-dur"
WARN_MS = 1000
# What must survive, per session (ages move with the clock; the clocks themselves must not).
KEPT = ("gatewayId", "sessionKey", "sessionId", "state", "queueDepth", "generation", "lastActivityAt", "usage")
KEPT_ACTIVITY = ("activeWorkKind", "hasActiveEmbeddedRun", "activeToolName", "activeToolCallId", "lastProgressReason")


def durable_view(session: dict[str, Any]) -> dict[str, Any]:
    view = {name: session[name] for name in KEPT}
    view["activity"] = {name: session["activity"].get(name) for name in KEPT_ACTIVITY}
    age = session["activity"].get("lastProgressAgeMs")
    view["progressAt"] = None if age is None else now_ms() - age
    return view


def same_view(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert {k: v for k, v in after.items() if k != "progressAt"} == {k: v for k, v in before.items() if k != "progressAt"}
    # the progress clock is absolute: its age grew by about the time that passed, not reset
    if before["progressAt"] is None:
        assert after["progressAt"] is None
    else:
        assert abs(after["progressAt"] - before["progressAt"]) < 1000


def first_batch(t: int) -> list[dict[str, Any]]:
    """Sessions of every kind; each event carries an idempotency key (eventId, or seq and ts)."""
    return [
        {**keepalive(GW, t), "eventId": "dur-keepalive"},
        # stuck: orphaned model call, idle, queued work; known by key and by id
        {"type": "session.state", "gatewayId": GW, "sessionKey": "dur:stuck", "sessionId": "sid-stuck",
         "state": "processing", "ts": t - 5000, "eventId": "dur-1"},
        {"type": "model.call.started", "gatewayId": GW, "sessionKey": "dur:stuck", "runId": "run-stuck",
         "provider": "openai", "model": "gpt-5", "ts": t - 5000, "eventId": "dur-2"},
        {"type": "session.state", "gatewayId": GW, "sessionKey": "dur:stuck", "state": "idle", "queueDepth": 0,
         "ts": t - 4000, "eventId": "dur-3"},
        {"type": "message.queued", "gatewayId": GW, "sessionKey": "dur:stuck", "source": "telegram",
         "ts": t - 3000, "eventId": "dur-4"},
        # processing behind a tool call inside a stock run
        {"type": "run.started", "gatewayId": GW, "sessionKey": "dur:tool", "sessionId": "sid-tool",
         "runId": "run-tool", "ts": t - 5000, "seq": 10},
        {"type": "session.state", "gatewayId": GW, "sessionKey": "dur:tool", "state": "processing",
         "ts": t - 5000, "seq": 11},
        {"type": "tool.execution.started", "gatewayId": GW, "runId": "run-tool", "toolName": "bash",
         "toolCallId": "call-1", "ts": t - 4800, "seq": 12},
        {"type": "model.usage", "gatewayId": GW, "sessionKey": "dur:tool", "usage": {"input": 120, "output": 30,
         "total": 150}, "costUsd": 0.25, "ts": t - 4700, "seq": 13},
        # known by id first, then linked to its key: the records fold into one
        {"type": "session.state", "gatewayId": GW, "sessionId": "sid-merge", "state": "processing",
         "ts": t - 2000, "seq": 14},
        {"type": "session.progress", "gatewayId": GW, "sessionKey": "dur:merged", "sessionId": "sid-merge",
         "reason": "reply", "ts": t - 1500, "seq": 15},
        # a finished turn
        {"type": "session.state", "gatewayId": GW, "sessionKey": "dur:done", "state": "processing",
         "ts": t - 3000, "seq": 16},
        {"type": "session.state", "gatewayId": GW, "sessionKey": "dur:done", "state": "idle", "queueDepth": 0,
         "ts": t - 2500, "seq": 17},
    ]


def last_batch(t: int) -> list[dict[str, Any]]:
    """Sent right before the kill: its 202 is the last thing the service acknowledged."""
    return [
        {"type": "message.queued", "gatewayId": GW, "sessionKey": "dur:tool", "source": "slack",
         "ts": t - 100, "eventId": "dur-last-1"},
        {"type": "session.state", "gatewayId": GW, "sessionKey": "dur:late", "state": "waiting",
         "ts": t - 50, "eventId": "dur-last-2"},
    ]


KEYS = ("dur:stuck", "dur:tool", "dur:merged", "dur:done")


@pytest.mark.parametrize(("checkpoint_ms", "graceful"), [(30_000, False), (100, False), (30_000, True)],
                         ids=["kill-9-journal-tail-only", "kill-9-checkpoint-and-tail", "graceful-stop"])
def test_sessions_survive_a_restart_and_are_classified_again(service_factory, checkpoint_ms, graceful):
    svc = service_factory({"checkpoint_interval_ms": checkpoint_ms}, name="durable")
    t = now_ms()
    first = first_batch(t)
    assert post_events(svc.client, first)["accepted"] == len(first)
    wait_until(lambda: svc.session("dur:stuck", GW)["attention"], what="dur:stuck classified before the kill")
    before = {key: durable_view(svc.session(key, GW)) for key in KEYS}
    history_before = svc.session("dur:stuck", GW)["recoveries"]
    assert before["dur:merged"]["sessionId"] == "sid-merge" and before["dur:merged"]["state"] == "processing"
    last = last_batch(now_ms())
    assert post_events(svc.client, last)["accepted"] == len(last)
    if graceful:
        # uvicorn re-raises the SIGTERM it handled once the lifespan shutdown is done
        assert svc.stop() in (0, -signal.SIGTERM), svc.log_tail()
        assert "Application shutdown complete" in svc.log_text(last_only=True), svc.log_tail()
    else:
        svc.kill()

    svc.start()
    for key in KEYS:
        after = durable_view(svc.session(key, GW))
        expected = dict(before[key])
        if key == "dur:tool":  # the last acknowledged batch queued one more message
            expected.update(queueDepth=before[key]["queueDepth"] + 1, generation=before[key]["generation"] + 1,
                            lastActivityAt=last[0]["ts"])
        same_view(expected, after)
    assert svc.session("dur:late", GW)["state"] == "waiting"
    # aliases: a session is found by its sessionId too
    assert svc.session("sid-stuck", GW)["sessionKey"] == "dur:stuck"
    assert svc.session("sid-merge", GW)["sessionKey"] == "dur:merged"
    assert svc.session("sid-tool", GW)["sessionKey"] == "dur:tool"
    # the recovery history is back (newest first, so the old entries are the tail)
    history_after = svc.session("dur:stuck", GW)["recoveries"]
    assert history_after[len(history_after) - len(history_before):] == history_before

    # the dedupe window survived: the same events again are duplicates, nothing is applied twice
    replayed = post_events(svc.client, first + last)
    assert (replayed["accepted"], replayed["duplicates"]) == (0, len(first) + len(last))
    assert svc.session("dur:tool", GW)["queueDepth"] == before["dur:tool"]["queueDepth"] + 1

    # and the monitor judges the restored sessions again
    stuck = wait_until(lambda: (s := svc.session("dur:stuck", GW))["attention"] and s, what="dur:stuck re-classified")
    assert stuck["attention"]["eventType"] == "session.stuck"
    tool = wait_until(lambda: (s := svc.session("dur:tool", GW))["attention"] and s, what="dur:tool re-classified")
    assert (tool["attention"]["eventType"], tool["attention"]["reason"]) == ("session.stalled", "blocked_tool_call")
    gateways = {g["gatewayId"]: g for g in svc.client.get("/v1/gateways").json()["items"]}
    assert gateways[GW]["silent"] is False


def test_recovery_in_flight_at_the_kill_completes_as_failed_service_restarted(service_factory, fake_gateway):
    svc = service_factory({"recovery_mode": "webhook", "recovery_webhook_url": fake_gateway.url_template,
                           "recovery_timeout_ms": 30_000}, name="inflight")
    key = "dur:inflight"
    fake_gateway.script[key] = [Reply(never=True), SKIPPED]
    t = now_ms()
    post_events(svc.client, [
        keepalive(GW, t),
        {"type": "session.state", "gatewayId": GW, "sessionKey": key, "state": "processing", "ts": t - 5000},
        {"type": "model.call.started", "gatewayId": GW, "sessionKey": key, "runId": "run-if",
         "provider": "openai", "model": "gpt-5", "ts": t - 5000},
        {"type": "session.state", "gatewayId": GW, "sessionKey": key, "state": "idle", "queueDepth": 0, "ts": t - 4000},
        {"type": "message.queued", "gatewayId": GW, "sessionKey": key, "source": "telegram", "ts": t - 3000},
    ])
    first = fake_gateway.wait_for_request(key).body
    assert svc.session(key, GW)["recoveryInFlight"] is True
    # any 202 after the request commits everything journaled before it, the request included
    post_events(svc.client, [keepalive(GW)])
    svc.kill()

    restarted_at = now_ms()
    svc.start()
    session = svc.session(key, GW)
    assert session["recoveryInFlight"] is False
    entry = recoveries(session, "completed", requestedAt=first["requestedAt"])
    assert entry, f"no completion for the interrupted request: {session['recoveries']}"
    assert (entry[0]["status"], entry[0]["action"], entry[0]["outcomeReason"]) == (
        "failed", "none", "service_restarted")
    assert entry[0]["stateGeneration"] == first["stateGeneration"]
    assert session["generation"] == first["stateGeneration"] and session["queueDepth"] == 1

    # the monitor asks again — after the warm-up, and with its backoff memory intact
    again = fake_gateway.wait_for_request(key, count=2, timeout=20).body
    assert again["requestedAt"] >= restarted_at + WARN_MS - 500, "no recovery during the warm-up after a restore"
    assert again["ageMs"] >= 2 * first["ageMs"], "the stuck backoff memory was lost in the restart"
    completed = wait_until(lambda: recoveries(svc.session(key, GW), "completed", status="skipped"),
                           what="the second recovery completed")
    assert completed[0]["outcomeReason"] == "active_reply_work"


def test_second_process_on_the_same_data_dir_refuses_to_start(service_factory):
    first = service_factory(name="owner")
    second = service_factory(name="intruder", data_dir=first.data_dir, start=False)

    code = second.run_until_exit()
    assert code != 0
    log = second.log_text()
    assert str(first.data_dir) in log, f"the refusal does not name the data dir:\n{log}"
    assert "OPENCLAW_DIAG_DATA_DIR" in log
    assert first.healthy(), "the owner keeps running"

    first.kill()
    second.start()  # the kernel released the lock with the killed owner
    assert second.healthy()


def restart_after_checkpoint(svc: ServiceProcess) -> None:
    """kill -9 once a checkpoint covers everything so far: the restart reads snapshot + tail."""
    svc.wait_for_checkpoint()
    svc.kill()
    svc.start()


def test_session_folded_into_its_key_does_not_come_back_after_a_checkpoint_and_restart(service_factory):
    svc = service_factory({"checkpoint_interval_ms": 100}, name="fold")
    post_events(svc.client, [
        {"type": "model.call.started", "sessionKey": "fold:key", "runId": "run-a", "provider": "p", "model": "m"},
        {"type": "run.started", "sessionId": "fold-id", "runId": "run-b"},  # a record known only by its id
        {"type": "session.progress", "sessionKey": "fold:key", "sessionId": "fold-id"},  # ...folded into the key's
    ])
    assert [s["sessionKey"] for s in svc.sessions()] == ["fold:key"]
    restart_after_checkpoint(svc)
    assert [(s["sessionKey"], s["sessionId"]) for s in svc.sessions()] == [("fold:key", "fold-id")]
    assert svc.session("fold-id")["sessionKey"] == "fold:key"


def test_huge_verdict_age_loses_no_session_across_a_checkpoint_and_restart(service_factory):
    svc = service_factory({"checkpoint_interval_ms": 100}, name="overflow")
    post_events(svc.client, [
        {"type": "session.state", "sessionKey": "loss:bystander", "state": "processing", "queueDepth": 3},
        {"type": "session.stalled", "sessionKey": "loss:verdict", "reason": "x", "ageMs": 1e38},  # finite, >= 0: valid
    ])
    restart_after_checkpoint(svc)
    bystander = svc.client.get("/v1/sessions/loss:bystander")
    assert bystander.status_code == 200, "an acknowledged session was lost"
    assert (bystander.json()["state"], bystander.json()["queueDepth"]) == ("processing", 3)
    assert svc.client.get("/v1/sessions/loss:verdict").status_code == 200


@pytest.mark.parametrize("restart", [False, True], ids=["live", "restarted"])
def test_an_earlier_session_id_of_a_key_keeps_resolving_to_it(service_factory, restart):
    svc = service_factory({"checkpoint_interval_ms": 100}, name="alias")
    post_events(svc.client, [
        {"type": "session.progress", "sessionKey": "reset:key", "sessionId": "id-before-reset"},
        {"type": "session.progress", "sessionKey": "reset:key", "sessionId": "id-after-reset"},  # /new: a new id
    ])
    if restart:
        restart_after_checkpoint(svc)
    assert svc.session("id-after-reset")["sessionKey"] == "reset:key"
    response = svc.client.get("/v1/sessions/id-before-reset")
    assert response.status_code == 200 and response.json()["sessionKey"] == "reset:key"
    # a late event of the earlier id lands on the same record
    post_events(svc.client, [{"type": "message.queued", "sessionId": "id-before-reset", "source": "telegram"}])
    assert [(s["sessionKey"], s["queueDepth"]) for s in svc.sessions()] == [("reset:key", 1)]


@pytest.mark.parametrize("restart", [False, True], ids=["live", "restarted"])
def test_a_run_id_resolves_to_the_session_that_last_claimed_it(service_factory, restart):
    svc = service_factory({"checkpoint_interval_ms": 100}, name="runmap")
    post_events(svc.client, [
        {"type": "run.started", "sessionKey": "runmap:b-before", "runId": "run-x"},
        {"type": "model.call.started", "sessionKey": "runmap:a-now", "sessionId": "sid-a", "runId": "run-y",
         "provider": "p", "model": "m0"},
        {"type": "run.completed", "sessionId": "sid-a", "runId": "run-x"},  # run-x now maps to runmap:a-now
    ])
    if restart:
        restart_after_checkpoint(svc)
    post_events(svc.client, [{"type": "model.call.started", "runId": "run-x", "provider": "p", "model": "m"}])
    assert svc.session("runmap:a-now")["activity"].get("activeWorkKind") == "model_call"
    assert svc.session("runmap:b-before")["activity"].get("activeWorkKind") == "embedded_run"
