"""Outbound notifications (`OPENCLAW_DIAG_NOTIFY`) from the service as a process to real HTTP
receivers on loopback: signed JSON, a Slack-format message with its link, a receiver that fails
and recovers (retried with backoff, failures counted and shown in /readyz), and a filter."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from tests.support.service_process import now_ms, post_events, stuck_events, wait_until
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SECRET = "notify-secret"
PUBLIC_URL = "https://diagnostics.example.com"


@pytest.fixture
def receivers():
    started: list[WebhookReceiver] = []

    def make(fail_first: int = 0) -> WebhookReceiver:
        receiver = WebhookReceiver(fail_first).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


def test_signed_json_slack_and_a_receiver_that_fails_then_recovers(service_factory, receivers):
    signed, flaky, slack = receivers(), receivers(fail_first=2), receivers()
    targets = [
        {"url": signed.url, "secret": SECRET},
        {"url": flaky.url, "events": ["attention.opened"]},
        {"url": slack.url, "format": "slack", "events": ["attention.opened"]},
    ]
    svc = service_factory({"notify": json.dumps(targets), "public_url": PUBLIC_URL})
    sent = time.monotonic()
    post_events(svc.client, stuck_events("gw-1", "agent:main:telegram:direct:4711"))

    # signed JSON: every change, with a signature over "<timestamp>.<raw body>"
    wait_until(lambda: any(b["event"] == "attention.opened" for b in signed.bodies()), timeout=15,
               what="the signed notification")
    print(f"stuck session (past warn at send) -> signed notification received: {time.monotonic() - sent:.2f} s")
    opened = next(d for d in signed.received() if d.json()["event"] == "attention.opened")
    headers, raw = opened.headers, opened.body
    timestamp = headers["x-openclaw-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    assert headers["x-openclaw-signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - now_ms() // 1000) < 60
    body = json.loads(raw)
    assert (body["gatewayId"], body["sessionKey"], body["eventType"], body["reason"]) == (
        "gw-1", "agent:main:telegram:direct:4711", "session.stuck", "stale_session_state")

    # the flaky receiver: two 500s, then the same change delivered on the third attempt
    wait_until(lambda: flaky.bodies(), timeout=15, what="delivery after two failures")
    first_three = flaky.received()[:3]
    assert [d.status for d in first_three] == [500, 500, 200]
    assert {d.json()["id"] for d in first_three} == {flaky.bodies()[0]["id"]}  # one change, retried
    assert all(b["event"] == "attention.opened" for b in flaky.bodies())  # its filter
    assert "x-openclaw-signature" not in first_three[0].headers  # no secret, no signature
    ready = svc.client.get("/readyz").json()
    assert ready["status"] == "ready"  # a failing target never makes the service unready
    by_target = {t["target"]: t for t in ready["notify"]}
    assert (by_target[1]["failures"], by_target[1]["delivered"], by_target[1]["lastError"]) == (2, 1, "HTTP 500")
    metrics = svc.client.get("/metrics").text
    assert 'openclaw_monitor_notify_failures_total{openclaw_reason="http_status",' in metrics
    line = next(x for x in metrics.splitlines() if x.startswith("openclaw_monitor_notify_failures_total{"))
    assert line.endswith(" 2.0")

    # Slack: a readable line with a link to the session page
    wait_until(lambda: slack.bodies(), timeout=15, what="the Slack message")
    text = slack.bodies()[0]["text"]
    assert text.startswith("*Stuck session* on gateway `gw-1`")
    assert "`agent:main:telegram:direct:4711`" in text and "`stale_session_state`" in text
    assert (f"<{PUBLIC_URL}/ui/session?gatewayId=gw-1&sessionKey=agent%3Amain%3Atelegram%3Adirect%3A4711|open>"
            in text)


def test_a_bad_setting_stops_start_up_with_the_variable_named(service_factory):
    svc = service_factory({"notify": '[{"url": "ftp://x"}]'}, start=False)
    with pytest.raises(AssertionError) as failed:
        svc.start()
    assert "OPENCLAW_DIAG_NOTIFY" in str(failed.value) and "http(s)" in str(failed.value)
