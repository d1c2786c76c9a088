"""Operators act, end to end: the service as a process, a real HTTP peer playing the gateway's
recovery webhook (tests/support/service_process.py, FakeGatewayWebhook).

An operator recovers a stuck session and the gateway receives the request; a read token gets
403; the audit shows who (the token's name), why and what; a recovery after which the gateway
sends nothing is ineffective, one after which it sends progress is verified; automatic
recoveries stop at the attempt budget and the session is on the needs-human list until an
operator dismisses it; all of it is still there after kill -9 and a restart."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.service_process import (
    REPO,
    Reply,
    now_ms,
    post_events,
    stuck_events,
    wait_until,
)

pytestmark = pytest.mark.e2e

INGEST = "ingest-token"
READ = "reader:read-token"
OPERATOR = "alice:op-token"
RELEASED = Reply.outcome("released", "release_lane", released=1)
FAILED = Reply(503, {"error": "lane busy"})


def settings(fake_gateway: Any, **extra: Any) -> dict[str, Any]:
    return {"ingest_tokens": INGEST, "read_tokens": READ, "operator_tokens": OPERATOR,
            "recovery_mode": "webhook", "recovery_webhook_url": fake_gateway.url_template,
            "recovery_verify_ms": 2_000, "gateway_silence_ms": 60_000, **extra}


def client(svc: Any, token: str) -> httpx.Client:
    return httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)


def session(svc: Any, key: str) -> dict[str, Any]:
    return svc.client.get(f"/v1/sessions/{key}", params={"gatewayId": "gw-1"}).json()


def test_an_operator_recovers_and_the_audit_says_who_and_why(service_factory, fake_gateway):
    key = "agent:main:telegram:direct:4711"
    fake_gateway.script[key] = RELEASED
    # warn 60 s: the monitor judges nothing in this test, only the operator asks
    svc = service_factory(settings(fake_gateway, recovery_max_attempts=1, stuck_session_warn_ms=60_000),
                          token="read-token")
    post_events(client(svc, INGEST), stuck_events("gw-1", key, 1_000))
    body = {"reason": "customer waiting since 10:02", "action": "release", "gatewayId": "gw-1"}
    assert client(svc, "read-token").post(f"/v1/sessions/{key}/recover", json=body).status_code == 403
    assert client(svc, INGEST).post(f"/v1/sessions/{key}/recover", json=body).status_code == 403
    assert httpx.post(f"{svc.url}/v1/sessions/{key}/recover", json=body).status_code == 401
    assert client(svc, "op-token").post(f"/v1/sessions/{key}/recover", json={"action": "release"}).status_code == 422

    answer = client(svc, "op-token").post(f"/v1/sessions/{key}/recover", json=body)
    assert answer.status_code == 202, answer.text
    received = fake_gateway.wait_for_request(key)
    assert (received.body["origin"], received.body["allowActiveAbort"]) == ("operator", False)
    # the gateway said nothing after the release: ineffective within the verify window
    done = wait_until(lambda: (lambda s: s if s["verifying"] is None and s["lastRecovery"]["kind"] == "verified"
                               else None)(session(svc, key)), timeout=15, what="the verification")
    assert (done["lastRecovery"]["result"], done["lastRecovery"]["origin"]) == ("ineffective", "operator")

    audit = svc.client.get("/v1/audit").json()["items"]
    assert [(a["actor"], a["action"], a["reason"], a["sessionKey"], a["mode"]) for a in audit] == [
        ("alice", "recover", "customer waiting since 10:02", key, "release")]
    assert audit[0]["id"] == answer.json()["requestId"]
    assert "op-token" not in svc.log_tail(200)  # the name, never the token

    svc.kill()  # kill -9: the audit and the verification are journaled
    svc.start()
    assert [a["reason"] for a in svc.client.get("/v1/audit").json()["items"]] == ["customer waiting since 10:02"]
    assert session(svc, key)["lastRecovery"]["result"] == "ineffective"


def test_progress_after_a_recovery_verifies_it(service_factory, fake_gateway):
    key = "agent:main:verified"
    fake_gateway.script[key] = RELEASED
    svc = service_factory(settings(fake_gateway), token="read-token")
    ingest = client(svc, INGEST)
    post_events(ingest, stuck_events("gw-1", key, 5_000))  # stuck: the monitor recovers it by itself
    fake_gateway.wait_for_request(key)
    wait_until(lambda: session(svc, key)["verifying"], timeout=10, what="the release applied")
    post_events(ingest, [{"type": "session.progress", "gatewayId": "gw-1", "sessionKey": key, "ts": now_ms()}])
    done = wait_until(lambda: (lambda s: s if s["verifying"] is None else None)(session(svc, key)), timeout=10,
                      what="the verification")
    assert (done["lastRecovery"]["result"], done["lastRecovery"]["origin"]) == ("verified", "automatic")
    metrics = svc.client.get("/metrics").text
    assert 'openclaw_monitor_recovery_verifications_total{openclaw_gateway="gw-1",openclaw_origin="automatic",' \
           'openclaw_result="verified"' in metrics


def test_the_budget_stops_automatic_recoveries_and_a_person_takes_over(service_factory, fake_gateway):
    key = "agent:main:hopeless"
    fake_gateway.script[key] = FAILED
    svc = service_factory(settings(fake_gateway, recovery_max_attempts=2, recovery_retry_interval_ms=300),
                          token="read-token")
    post_events(client(svc, INGEST), stuck_events("gw-1", key, 5_000))
    listed = wait_until(lambda: svc.client.get("/v1/sessions", params={"needsHuman": "true"}).json()["items"],
                        timeout=20, what="the needs-human list")
    assert [(s["sessionKey"], s["needsHuman"]["cause"]) for s in listed] == [(key, "budget_spent")]
    # first on the page, with its cause; in the attention summary for a person
    assert svc.client.get("/ui/state.json").json()["items"][0]["needsHuman"]["cause"] == "budget_spent"
    assert [s["sessionKey"] for s in svc.client.get("/v1/attention").json()["needsHuman"]] == [key]
    attempts = len(fake_gateway.requests_for(key))
    assert attempts == 2
    metrics = svc.client.get("/metrics").text
    assert 'openclaw_needs_human="true"' in metrics

    svc.kill()
    svc.start()  # the list survives a crash, and the budget still holds
    assert session(svc, key)["needsHuman"]["cause"] == "budget_spent"
    dismissed = client(svc, "op-token").post(f"/v1/sessions/{key}/dismiss",
                                             json={"reason": "gateway restarted by hand", "gatewayId": "gw-1"})
    assert dismissed.status_code == 200, dismissed.text
    assert len(fake_gateway.requests_for(key)) == attempts  # none while it was on the list
    assert svc.client.get("/v1/audit").json()["items"][0]["action"] == "dismiss"
    # off the list, with a fresh budget from here (the history marks where it starts)
    wait_until(lambda: session(svc, key)["needsHuman"] is None, timeout=5, what="off the list")
    history = svc.client.get(f"/v1/sessions/{key}", params={"gatewayId": "gw-1"}).json()["recoveries"]
    assert history[0]["kind"] == "dismissed"  # newest first


def test_maintenance_stops_recoveries_and_ends_by_itself(service_factory, fake_gateway):
    key = "agent:main:upgrading"
    fake_gateway.script[key] = RELEASED
    svc = service_factory(settings(fake_gateway), token="read-token")
    operator = client(svc, "op-token")
    post_events(client(svc, INGEST), [{"type": "forwarder.keepalive", "gatewayId": "gw-1", "ts": now_ms()}])
    too_long = operator.put("/v1/gateways/gw-1/maintenance", json={"until": now_ms() + 25 * 3_600_000, "reason": "x"})
    assert too_long.status_code == 422
    assert client(svc, "read-token").put("/v1/gateways/gw-1/maintenance",
                                         json={"until": now_ms() + 5_000, "reason": "x"}).status_code == 403
    until = now_ms() + 4_000
    began = operator.put("/v1/gateways/gw-1/maintenance", json={"until": until, "reason": "gateway upgrade"})
    assert began.status_code == 200, began.text
    post_events(client(svc, INGEST), stuck_events("gw-1", key, 5_000))
    gateway = next(g for g in svc.client.get("/v1/gateways").json()["items"] if g["gatewayId"] == "gw-1")
    assert (gateway["maintenance"]["reason"], gateway["maintenance"]["actor"]) == ("gateway upgrade", "alice")
    wait_until(lambda: (session(svc, key)["attention"] or {}).get("eventType") == "session.stuck", timeout=10,
               what="the verdict, shown in maintenance")
    assert 'openclaw_maintenance="true"' in svc.client.get("/metrics").text
    assert fake_gateway.requests_for(key) == []  # nobody asked while it lasts
    # it ends by itself at the deadline, and then the stuck session is recovered
    fake_gateway.wait_for_request(key, timeout=15)
    assert now_ms() >= until
    ended = [a["action"] for a in svc.client.get("/v1/audit").json()["items"]]
    assert ended == ["maintenance"]  # the operator's action; the end at the deadline is the service's
    assert "monitor tick failed" not in svc.log_tail(500)
    svc.kill()
    svc.start()  # the window's end was journaled: still none after a restart
    gateway = next(g for g in svc.client.get("/v1/gateways").json()["items"] if g["gatewayId"] == "gw-1")
    assert gateway["maintenance"] is None


def test_the_cli_acts_with_an_operator_token(service_factory, fake_gateway):
    import subprocess
    import sys

    key = "agent:main:from-the-cli"
    fake_gateway.script[key] = RELEASED
    svc = service_factory(settings(fake_gateway, stuck_session_warn_ms=60_000), token="read-token")
    post_events(client(svc, INGEST), stuck_events("gw-1", key, 1_000))

    def cli(*args: str, token: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "OPENCLAW_DIAG_TOKEN": token, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
        return subprocess.run([sys.executable, "-m", "app.cli", *args, "--url", svc.url], capture_output=True,
                              text=True, timeout=60, env=env, cwd=REPO)

    refused = cli("recover", key, "--reason", "try", token="read-token")
    assert refused.returncode == 1 and "operator token" in refused.stderr
    done = cli("recover", key, "--reason", "stuck since the deploy", "--action", "release", token="op-token")
    assert done.returncode == 0, done.stderr
    assert "requested (release)" in done.stdout and "by alice" in done.stdout
    assert fake_gateway.wait_for_request(key).body["origin"] == "operator"
    began = cli("maintenance", "gw-1", "--reason", "upgrade", "--minutes", "30", token="op-token")
    assert began.returncode == 0 and "in maintenance until" in began.stdout, began.stderr
    ended = cli("maintenance", "gw-1", "--reason", "done", "--end", token="op-token")
    assert ended.returncode == 0, ended.stderr
    assert [a["action"] for a in svc.client.get("/v1/audit").json()["items"]] == [
        "end_maintenance", "maintenance", "recover"]


def test_a_filtered_set_is_recovered_after_a_dry_run_and_paced_per_gateway(service_factory, fake_gateway):
    keys = [f"agent:main:bulk-{n}" for n in range(4)]
    for key in keys:
        fake_gateway.script[key] = [FAILED, RELEASED]  # the automatic round fails, the operator's works
    svc = service_factory(settings(fake_gateway, bulk_recovery_per_s=2, recovery_max_attempts=1,
                                   stuck_session_warn_ms=1_000, recovery_retry_interval_ms=3_600_000),
                          token="read-token")
    ingest = client(svc, INGEST)
    for key in keys:
        post_events(ingest, stuck_events("gw-1", key, 5_000))
    # the monitor tries each once by itself (a budget of one); they stay stuck, left to a person
    wait_until(lambda: all(fake_gateway.requests_for(k) for k in keys), timeout=15, what="the automatic round")
    operator = client(svc, "op-token")
    body = {"filter": {"attention": "stuck", "gatewayId": "gw-1"}, "reason": "provider outage over"}
    dry = operator.post("/v1/recoveries", json=body).json()
    assert dry["dryRun"] is True and sorted(s["sessionKey"] for s in dry["sessions"]) == keys
    assert all(len(fake_gateway.requests_for(k)) == 1 for k in keys)  # a dry run asks nobody
    assert client(svc, "read-token").post("/v1/recoveries", json={**body, "dryRun": False}).status_code == 403
    done = operator.post("/v1/recoveries", json={**body, "dryRun": False})
    assert done.status_code == 200, done.text
    wait_until(lambda: all(len(fake_gateway.requests_for(k)) == 2 for k in keys), timeout=15, what="the bulk round")
    times = sorted(fake_gateway.requests_for(k)[1].body["requestedAt"] for k in keys)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 450, gaps  # 2 a second for this gateway: never two at once
    assert {fake_gateway.requests_for(k)[1].body["origin"] for k in keys} == {"operator"}
    (audit,) = [a for a in svc.client.get("/v1/audit").json()["items"] if a["action"] == "recover_many"]
    assert (audit["count"], audit["actor"], audit["reason"]) == (4, "alice", "provider outage over")
