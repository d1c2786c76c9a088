"""End to end with the REAL OpenClaw gateway (openclaw@2026.9.6 on Node 26) and the forwarder
plugin, against the real service. None of the events here are written by us.

Run alone: `python -m pytest tests/e2e/gateway`; leave out: `-m "not e2e"`.
Every wait polls with a deadline; every process is stopped by its pid (see conftest.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_model import REPLY
from tests.support.gateway_harness import SessionWatcher, http_post_json
from tests.support.gateway_stack import (
    ABORT_MS,
    INGEST_TOKEN,
    OPERATOR_TOKEN,
    QA_ABORT_MS,
    RECOVERY_TOKEN,
    SCAN_MS,
    STALLED_REPORT_MS,
    WARN_MS,
    Stack,
)
from tests.support.service_process import recoveries, wait_until

pytestmark = pytest.mark.e2e

POLL_S = 0.05
HUNG_TURN_START_S = 60.0  # CLI boot + run start + first model call, on a loaded 2-core machine


def unique_key(kind: str) -> str:
    return f"agent:main:e2e-{kind}-{uuid.uuid4().hex[:8]}"


def session_or_none(stack: Stack, key: str, gateway: str) -> dict[str, Any] | None:
    response = stack.service.client.get(f"/v1/sessions/{key}", params={"gatewayId": gateway})
    return response.json() if response.status_code == 200 else None


def event_types(session: dict[str, Any]) -> list[str]:
    return [event["type"] for event in session.get("recentEvents") or []]


def metric_samples(stack: Stack, name: str) -> list[tuple[dict[str, str], float]]:
    """Prometheus text from /metrics: every sample of `name` as (labels, value)."""
    text = stack.service.client.get("/metrics").text
    samples = []
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}}\s+(\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1)))
            samples.append((labels, float(match.group(2))))
    return samples


def metric_sum(stack: Stack, name: str, **labels: str) -> float:
    return sum(value for got, value in metric_samples(stack, name)
               if all(got.get(key) == want for key, want in labels.items()))


def wait_model_call_started(stack: Stack, gateway: str, key: str) -> dict[str, Any]:
    """Until the service shows the session's model call as active work."""
    def under_way() -> dict[str, Any] | None:
        session = session_or_none(stack, key, gateway)
        return session if session and session["activity"].get("activeWorkKind") == "model_call" else None

    return wait_until(under_way, timeout=HUNG_TURN_START_S, interval=0.1,
                      what=f"{key}: model call under way{stack.context()}")


# -- scenario 1 ------------------------------------------------------------------------------------


def test_normal_turn_is_seen_end_to_end(stack: Stack) -> None:
    key = unique_key("normal")
    processing_before = metric_sum(stack, "openclaw_session_state_total", openclaw_gateway="e2e-stock",
                                   openclaw_state="processing")
    # The service is briefly "down" for the first two batches of the turn: the plugin must
    # retry inside the real gateway and still deliver everything exactly once.
    stack.stock_tap.fail_next(2)
    result = stack.stock.turn(key)
    assert result.returncode == 0, f"turn failed: {result.stdout}\n{result.stderr}{stack.context()}"
    assert REPLY in result.stdout

    def completed() -> dict[str, Any] | None:
        session = session_or_none(stack, key, "e2e-stock")
        if session and session["state"] == "idle" and "run.completed" in event_types(session):
            return session
        return None

    session = wait_until(completed, timeout=30, interval=0.1, what=f"{key} processing -> idle{stack.context()}")
    seen = event_types(session)
    for wanted in ("session.state", "model.call.started", "model.call.completed", "run.started", "run.completed"):
        assert wanted in seen, f"{wanted} missing from {seen}"
    states = [e["state"] for e in reversed(session["recentEvents"]) if e["type"] == "session.state"]
    assert states == ["processing", "idle"], states
    assert session["attention"] is None
    assert session["gatewayVerdict"] is None
    assert session["activity"].get("activeWorkKind") is None, "no orphaned work markers after a normal turn"
    assert session["usage"]["total"] > 0, "model.usage reached the session"
    assert len(stack.stock_tap.failed) == 2, "the tap refused two batches"
    wait_until(
        lambda: metric_sum(stack, "openclaw_session_state_total", openclaw_gateway="e2e-stock",
                           openclaw_state="processing") > processing_before,
        timeout=10, what="openclaw_session_state_total{state=processing} to move",
    )
    assert metric_sum(stack, "openclaw_session_state_total", openclaw_gateway="e2e-stock", openclaw_state="idle") >= 1


def test_wire_format_from_the_real_plugin(stack: Stack) -> None:
    """What the plugin put on the wire, as recorded by the tap in front of the service."""
    wait_until(lambda: any(e["type"] == "run.completed" for e in stack.stock_tap.events()), timeout=30,
               what="a run.completed through the tap")
    events = stack.stock_tap.events()
    assert events, "nothing went through the tap"
    assert all(e.get("gatewayId") == "e2e-stock" for e in events)
    ids = [e["eventId"] for e in events]
    assert len(ids) == len(set(ids)), "every eventId is unique (retried batches were refused, not delivered)"
    assert all(re.fullmatch(r"e2e-stock:\d+:(\d+|k\d+)", i) for i in ids), ids[:5]
    assert not any(e["type"] == "log.record" for e in events), "log.record never leaves the gateway"
    assert not any("message" in e or "error" in e for e in events), "free-text fields are stripped"
    for batch in stack.stock_tap.batches:
        seqs = [e["seq"] for e in batch if e["type"] != "forwarder.keepalive"]
        assert seqs == sorted(seqs), f"batch not sorted by seq: {seqs}"
    keepalives = [e for e in events if e["type"] == "forwarder.keepalive"]
    assert keepalives and all({"queued", "dropped", "ts"} <= set(k) for k in keepalives)
    # the plugin reads the gateway's version (api.runtime.version); the service keeps it per gateway
    assert {k.get("gatewayVersion") for k in keepalives} == {"2026.9.6"}, keepalives[:2]
    gateways = {g["gatewayId"]: g for g in stack.service.client.get("/v1/gateways").json()["items"]}
    assert gateways["e2e-stock"]["gatewayVersion"] == "2026.9.6"
    assert gateways["e2e-stock"]["profile"] == "seed"  # pinned for these scenarios (conftest.py)
    statuses = {status for status, _ in stack.stock_tap.responses}
    assert statuses == {202}, f"the service answered {statuses}"
    assert sum(body.get("duplicates", 0) for _, body in stack.stock_tap.responses if isinstance(body, dict)) == 0
    assert sum(len(body.get("rejected", [])) for _, body in stack.stock_tap.responses if isinstance(body, dict)) == 0


# -- scenarios 2 and 4: a hung model call, flagged, then aborted through the plugin's webhook ------------


@pytest.fixture(scope="module")
def hung_stock_session(stack: Stack) -> dict[str, Any]:
    """A turn on the stock gateway whose model call never answers."""
    key = unique_key("hang")
    stack.stock_model.hang.set()
    turn = stack.stock.start_turn(key)
    session = wait_model_call_started(stack, "e2e-stock", key)
    stack.stock_model.hang.clear()  # later turns (none in this module) would answer again
    return {"key": key, "turn": turn, "started": session}


def test_hung_model_call_is_flagged_stalled(stack: Stack, hung_stock_session: dict[str, Any]) -> None:
    key = hung_stock_session["key"]
    # The model call started at most a poll ago; the verdict must come within warn + two scans
    # of it (ages are in the gateway's clock, so the forwarding delay does not count against us).
    budget_ms = WARN_MS + 2 * SCAN_MS
    progress_age_ms = hung_stock_session["started"]["activity"]["lastProgressAgeMs"]
    deadline_s = (budget_ms - progress_age_ms) / 1000 + 1.0  # + slack for the test's own polling

    def stalled() -> dict[str, Any] | None:
        session = session_or_none(stack, key, "e2e-stock")
        attention = session and session["attention"]
        return session if attention and attention["eventType"] == "session.stalled" else None

    session = wait_until(stalled, timeout=deadline_s, interval=POLL_S,
                         what=f"{key} flagged stalled within warn + 2 scans{stack.context()}")
    attention = session["attention"]
    assert attention["reason"] == "active_work_without_progress"
    assert attention["classification"] == "stalled_agent_run"
    assert attention["activeWorkKind"] == "model_call"
    assert session["state"] == "processing"
    assert session["activity"]["activeWorkKind"] == "model_call"
    assert session["activity"]["hasActiveEmbeddedRun"] is True, "run.started made the run an owner"
    assert session["activity"]["lastProgressAgeMs"] <= budget_ms + 1000
    assert session["gatewayVerdict"] is None, "the stock gateway's own monitor is silent for 120 s"
    assert metric_sum(stack, "openclaw_monitor_sessions", openclaw_gateway="e2e-stock", openclaw_attention="stalled",
                      openclaw_reason="active_work_without_progress") >= 1


def test_stalled_run_is_aborted_through_the_plugin_webhook(stack: Stack, hung_stock_session: dict[str, Any]) -> None:
    """Past the abort threshold the service asks the gateway, and the plugin aborts the run."""
    key = hung_stock_session["key"]

    def completed_recovery() -> dict[str, Any] | None:
        session = session_or_none(stack, key, "e2e-stock")
        done = session and recoveries(session, "completed")
        return session if done else None

    # The first stalled report at or past the abort threshold requests the recovery.
    deadline_s = (ABORT_MS + STALLED_REPORT_MS + 4 * SCAN_MS) / 1000 + 15
    session = wait_until(completed_recovery, timeout=deadline_s, interval=0.2,
                         what=f"{key}: recovery completed{stack.context()}")
    completed = recoveries(session, "completed")[0]
    assert completed["status"] == "aborted", completed
    assert completed["action"] == "abort_embedded_run", completed
    assert completed["allowActiveAbort"] is True
    assert completed["activeWorkKind"] == "model_call"

    # The gateway ends the aborted run; its own events bring the session back to idle.
    def idle_after_abort() -> dict[str, Any] | None:
        s = session_or_none(stack, key, "e2e-stock")
        return s if s and s["state"] == "idle" and "run.completed" in event_types(s) else None

    session = wait_until(idle_after_abort, timeout=20, interval=0.2,
                         what=f"{key} idle after the abort{stack.context()}")
    assert session["attention"] is None
    run_completed = next(e for e in session["recentEvents"] if e["type"] == "run.completed")
    assert run_completed["outcome"] in {"aborted", "error"}, run_completed
    model_error = [e for e in session["recentEvents"] if e["type"] == "model.call.error"]
    assert model_error and model_error[0].get("failureKind") == "aborted", model_error
    turn = hung_stock_session["turn"]
    wait_until(lambda: turn.poll() is not None, timeout=30, what="the hung CLI turn to end")
    assert turn.returncode != 0


def test_plugin_webhook_contract_on_the_real_gateway(stack: Stack) -> None:
    """The plugin's route, called the way the service calls it."""
    url = stack.stock.recovery_url()
    auth = {"Authorization": f"Bearer {RECOVERY_TOKEN}"}
    status, body = http_post_json(url, {"gatewayId": "e2e-stock", "sessionKey": unique_key("none")}, auth)
    assert (status, body) == (200, {"status": "noop", "action": "none", "outcomeReason": "no_active_work"})
    status, _ = http_post_json(url, {"sessionKey": "x"}, {"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = http_post_json(url, {"gatewayId": "someone-else", "sessionKey": "x"}, auth)
    assert status == 409, body


def test_an_operator_aborts_a_real_hung_run_through_the_plugin(stack: Stack) -> None:
    """POST /v1/sessions/{key}/recover with action abort: the service asks the stock gateway's
    plugin, which aborts the real embedded run; the gateway's own events then verify it."""
    key = unique_key("operator")
    stack.stock_model.hang.set()
    turn = stack.stock.start_turn(key)
    try:
        wait_model_call_started(stack, "e2e-stock", key)
    finally:
        stack.stock_model.hang.clear()
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    answer = stack.service.client.post(f"/v1/sessions/{key}/recover", headers=operator,
                                       json={"reason": "hung model call, user waiting", "action": "abort",
                                             "gatewayId": "e2e-stock"})
    assert answer.status_code == 202, answer.text

    def aborted() -> dict[str, Any] | None:
        session = session_or_none(stack, key, "e2e-stock")
        done = session and [r for r in recoveries(session, "completed") if r.get("origin") == "operator"]
        return session if done else None

    session = wait_until(aborted, timeout=30, interval=0.2, what=f"{key}: the operator's recovery{stack.context()}")
    completed = next(r for r in recoveries(session, "completed") if r.get("origin") == "operator")
    assert (completed["status"], completed["action"], completed["allowActiveAbort"]) == (
        "aborted", "abort_embedded_run", True), completed
    # the gateway ends the run; its own events show the session moved: verified
    verified = wait_until(lambda: next((r for r in (session_or_none(stack, key, "e2e-stock") or {}).get("recoveries", [])
                                        if r.get("kind") == "verified"), None),
                          timeout=30, interval=0.2, what=f"{key}: the verification{stack.context()}")
    assert (verified["result"], verified["origin"]) == ("verified", "operator")
    audit = stack.service.client.get("/v1/audit").json()["items"]
    assert (audit[0]["actor"], audit[0]["sessionKey"]) == ("e2e-operator", key)
    wait_until(lambda: turn.poll() is not None, timeout=30, what="the aborted CLI turn to end")


# -- scenario 3: the gateway's own verdict beside ours --------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def qa_hung_session(stack: Stack) -> Iterator[dict[str, Any]]:
    """Started before every other scenario: the QA gateway's own monitor needs 30-60 s to speak,
    and that wait overlaps the stock gateway's scenarios instead of adding to them."""
    key = unique_key("qa-hang")
    stack.qa_model.hang.set()
    stack.qa.start_turn(key)
    watcher = SessionWatcher(stack.service.url, INGEST_TOKEN, key, "e2e-qa").start()
    try:
        yield {"key": key, "watcher": watcher}
    finally:
        watcher.stop()


def test_gateway_verdict_is_stored_beside_ours(stack: Stack, qa_hung_session: dict[str, Any]) -> None:
    key = qa_hung_session["key"]
    watcher: SessionWatcher = qa_hung_session["watcher"]

    def side_by_side() -> dict[str, Any] | None:
        return next((p for p in watcher.pictures() if p["ours"] and p["theirs"]), None)

    # Our verdict comes ~10 s into the hang; theirs on the gateway's first 30 s tick past its warn.
    picture = wait_until(side_by_side, timeout=QA_ABORT_MS / 1000 + 45, interval=0.25,
                         what=f"{key}: our verdict and the gateway's, side by side{stack.context()}")
    assert picture["state"] == "processing"
    # OpenClaw 2026.9.6 calls an owned model call that has gone silent long_running until its
    # abort threshold; we follow the seed semantics and call it stalled from warn on.
    assert (picture["theirs"], picture["theirsClassification"], picture["theirsReason"]) == (
        "session.long_running", "long_running", "active_model_call_without_progress"), picture
    assert (picture["ours"], picture["oursClassification"], picture["oursReason"]) == (
        "session.stalled", "stalled_agent_run", "active_work_without_progress"), picture
    assert picture["theirsWorkKind"] == picture["oursWorkKind"] == "model_call"
    # Ours never followed theirs: once the model call had been silent past warn we said stalled
    # and kept saying it. (Before that, with the session processing past warn but the model
    # call younger than warn, ours was long_running / active_work — classifier row 5.)
    pictures = watcher.pictures()
    first_stalled = next(i for i, p in enumerate(pictures) if p["ours"] == "session.stalled")
    assert {p["ours"] for p in pictures[first_stalled:]} == {"session.stalled"}, pictures
    assert {(p["ours"], p["oursReason"]) for p in pictures[:first_stalled] if p["ours"]} <= {
        ("session.long_running", "active_work")}, pictures
    # The gateway's verdict travelled the normal way: emitted in the gateway, forwarded by the plugin.
    forwarded = [e for e in stack.qa_tap.events() if e["type"] == "session.long_running" and e.get("sessionKey") == key]
    assert forwarded and forwarded[0]["gatewayId"] == "e2e-qa"
    # The service's recovery request for this gateway reached the stock gateway's route, which
    # refused it as meant for another gateway: recorded as failed, nothing aborted.
    session = session_or_none(stack, key, "e2e-qa")
    for entry in recoveries(session, "completed"):
        assert entry["status"] == "failed" and "409" in entry.get("error", ""), entry


# -- shutdown -------------------------------------------------------------------------------------------


def test_gateway_shutdown_flushes_the_queue(stack: Stack, qa_hung_session: dict[str, Any]) -> None:
    """SIGTERM to the gateway: the plugin's service stop() sends what is queued, keepalive last.
    (Runs last: it stops the QA gateway, which the fixture's teardown then finds stopped.)"""
    stack.qa_model.release_hung()
    # The released call fails, the gateway retries it and the turn gets its answer. SIGTERM only
    # after that: a CLI turn aborted mid-retry can leave the gateway a task that never ends
    # (2026.9.6 logs "Queued task event identity was replaced before admission"), and its drain
    # then waits 315 s for it.
    turn = stack.qa.turns[0]
    wait_until(lambda: turn.poll() is not None, timeout=120, interval=0.25,
               what=f"the released turn to finish{stack.context()}")
    batches_before = len(stack.qa_tap.batches)
    stack.qa.stop()
    assert stack.qa.proc is not None and stack.qa.proc.returncode == 0, stack.qa.log_tail()
    after = [event for batch in stack.qa_tap.batches[batches_before:] for event in batch]
    assert after, "nothing was sent during the shutdown"
    assert after[-1]["type"] == "forwarder.keepalive", after[-1]
    assert after[-1]["queued"] == 0
    # The run that was hung ended, and its end reached the service.
    key = qa_hung_session["key"]
    assert any(e["type"] == "run.completed" and e.get("sessionKey") == key for e in stack.qa_tap.events())
