"""The status page in a real browser: headless Chromium (Debian's package, /usr/bin/chromium)
driven by Playwright, against the real service process.

A stuck session appears on the open page without a reload, its detail view opens, a session key
carrying `</script><script>` is shown as text and never runs, the page shows the data it was
served with before any poll answers, app.js writes durations and times as app/formatting.py does,
and the token cookie flow signs in and out. Screenshots go to tests/artifacts/ (git-ignored) for
a human to look at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from app.formatting import human_ms, stamp_ms
from tests.support.paths import ARTIFACTS
from tests.support.service_process import Reply, now_ms, post_events, stuck_events

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("OPENCLAW_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS_KEY = "agent:main:</script><script>alert(1)</script>"
TOKEN = "browser-token"
WAIT_MS = 15_000  # Playwright's waits poll until this deadline


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.dialogs = []  # type: ignore[attr-defined]
    tab.errors = []  # type: ignore[attr-defined]
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))  # type: ignore[attr-defined]
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))  # type: ignore[attr-defined]
    yield tab
    context.close()


def shot(tab: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    tab.screenshot(path=str(path), full_page=True)
    return path


def test_stuck_session_appears_live_and_opens(service_factory: Any, page: Any) -> None:
    svc = service_factory(name="page-browser")  # warn 1000 ms, a scan every 100 ms
    page.goto(svc.url + "/")
    page.wait_for_selector("#live.live")  # the script fetched and rendered
    # it follows the change stream (GET /v1/stream) and fetches when something changes
    page.locator("#live.live", has_text="live \u00b7 streaming").wait_for()
    assert page.locator("#attention").inner_text().strip() == "No session needs attention."

    # Events arrive while the page is open: a stuck session, a stalled one, and the hostile key.
    post_events(svc.client, [
        *stuck_events("gw-1", "agent:main:telegram:direct:4711", 95_000, sessionId="5c23b3a8-1f"),
        {"type": "run.started", "gatewayId": "gw-1", "sessionKey": "agent:ops:main", "runId": "r2",
         "ts": now_ms() - 42_000},
        {"type": "session.state", "gatewayId": "gw-1", "sessionKey": "agent:ops:main", "state": "processing",
         "ts": now_ms() - 42_000},
        {"type": "tool.execution.started", "gatewayId": "gw-1", "sessionKey": "agent:ops:main", "runId": "r2",
         "toolName": "browser", "toolCallId": "call_8f2", "ts": now_ms() - 41_000},
        {"type": "model.usage", "gatewayId": "gw-1", "sessionKey": "agent:main:telegram:direct:4711",
         "usage": {"input": 41_200, "output": 1_830, "total": 43_030}, "costUsd": 0.2113, "ts": now_ms()},
        *stuck_events("gw-2", XSS_KEY, 8_000),
        {"type": "message.queued", "gatewayId": "gw-2", "sessionKey": "agent:main:quiet", "source": "cli",
         "queueDepth": 0, "ts": now_ms()},
    ])
    rows = page.locator("#attention tbody tr")
    rows.nth(2).wait_for()  # three sessions under attention, without a reload
    page.wait_for_function("document.querySelectorAll('#attention .rec').length === 3 && "
                           "[...document.querySelectorAll('#attention .rec')].slice(0, 2)"
                           ".every(e => e.textContent.includes('no_recovery_target'))")
    texts = [rows.nth(i).inner_text() for i in range(3)]
    # Most severe first, oldest first: stuck 95 s, stuck 8 s, then the stalled tool call.
    assert "agent:main:telegram:direct:4711" in texts[0] and "STUCK" in texts[0].upper()
    assert XSS_KEY in texts[1] and "STUCK" in texts[1].upper()
    assert "agent:ops:main" in texts[2] and "blocked_tool_call" in texts[2] and "browser" in texts[2]
    assert "1m 3" in texts[0]  # a human-readable age (1m 35s and counting)
    assert page.locator(".card.stuck .card-value").inner_text() == "2"
    assert page.locator(".card.stalled .card-value").inner_text() == "1"
    # each gateway's version and classifier profile (these keepalives report no version: seed)
    assert page.locator("#gateways").inner_text().count("unknown · seed") == 2
    # The hostile key is text, not markup: two <script> elements on the page (ours and the JSON
    # data block the page came with), no dialog; its link carries it URL-encoded.
    assert page.locator("script").count() == 2
    assert page.locator("script[type='application/json']").count() == 1
    assert page.locator("#attention a.key", has_text="<script>").count() == 1
    assert page.locator("#attention a.key", has_text="<script>").get_attribute("href") == (
        "/ui/session?" + urlencode({"gatewayId": "gw-2", "sessionKey": XSS_KEY}))
    # app.js writes durations as app/formatting.py's human_ms (1s, 5m 00s, 100ms here).
    monitor = svc.client.get("/ui/state.json").json()["monitor"]
    assert page.locator("#footer").inner_text() == (
        f"warn {human_ms(monitor['warnMs'])} · abort {human_ms(monitor['abortMs'])} · scan every "
        f"{human_ms(monitor['scanIntervalMs'])} · recovery mode {monitor['recoveryMode']} · monitor running")
    overview = shot(page, "status-overview.png")
    assert overview.stat().st_size > 10_000

    page.locator("#attention a.key", has_text="telegram").click()
    page.wait_for_url("**/ui/session?**")
    page.wait_for_selector("#live.live")
    assert page.locator("h1.key").inner_text() == "agent:main:telegram:direct:4711"
    detail = page.locator("#detail").inner_text()  # note: CSS upper-cases the panel titles
    assert "stale_session_state" in detail and "5c23b3a8-1f" in detail
    assert "recovery history" in detail.lower() and "no_recovery_target" in detail
    assert "session.state" in detail  # recent events from the journal
    assert "43,030 tokens · $0.2113" in detail
    # ... and times as its stamp_ms (the session clock stopped with the events above).
    item = svc.client.get("/ui/session.json", params={"gatewayId": "gw-1",
                                                      "sessionKey": "agent:main:telegram:direct:4711"}).json()
    assert stamp_ms(item["lastActivityAt"]) in detail
    shot(page, "status-session.png")

    page.go_back()
    page.wait_for_selector("#live.live")
    page.locator("#attention a.key", has_text="<script>").click()
    page.wait_for_selector("#live.live")
    assert page.locator("h1.key").inner_text() == XSS_KEY
    assert page.locator("script").count() == 2
    shot(page, "status-session-hostile-key.png")

    # The first render needs no poll: with every poll refused, the page shows what it came with.
    page.route("**/ui/state.json", lambda route: route.abort())
    page.goto(svc.url + "/")
    page.wait_for_selector("#live.down")  # the first poll has failed ("offline")
    assert page.locator("#attention tbody tr").count() == 3
    assert page.locator(".card.stuck .card-value").inner_text() == "2"
    page.unroute("**/ui/state.json")
    assert page.dialogs == [] and page.errors == []


def test_token_cookie_flow(service_factory: Any, page: Any) -> None:
    svc = service_factory({"ingest_tokens": TOKEN}, token=TOKEN, name="page-browser-locked")
    post_events(svc.client, stuck_events("gw-1", "agent:main:locked", 6_000))
    page.goto(svc.url + "/")
    assert page.locator("h1").inner_text() == "Sign in"
    assert "agent:main:locked" not in page.content()
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    page.wait_for_selector(".error")
    assert "not accepted" in page.locator(".error").inner_text()
    shot(page, "status-sign-in.png")

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#live.live")  # signed in, and the script's fetches pass with the cookie
    page.locator("#attention a.key", has_text="agent:main:locked").wait_for()
    # the change stream takes the same cookie
    page.locator("#live.live", has_text="live \u00b7 streaming").wait_for()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["openclaw_diag_token"]["httpOnly"] is True
    assert cookies["openclaw_diag_token"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the token

    page.click("text=Sign out")
    page.wait_for_selector("#token")
    assert page.locator("h1").inner_text() == "Sign in"
    assert page.dialogs == [] and page.errors == []


def test_the_page_polls_when_the_change_stream_is_cut(service_factory: Any, page: Any) -> None:
    svc = service_factory(name="page-browser-polling")
    page.route("**/v1/stream", lambda route: route.abort())  # a proxy that drops event streams
    page.goto(svc.url + "/")
    page.locator("#live.live", has_text="live \u00b7 polling").wait_for()
    post_events(svc.client, stuck_events("gw-1", "agent:main:polled", 6_000))
    page.locator("#attention a.key", has_text="agent:main:polled").wait_for()  # within a few polls
    assert page.dialogs == [] and page.errors == []


def test_an_operator_acts_from_the_page_and_a_forged_request_is_refused(service_factory: Any, page: Any,
                                                                        fake_gateway: Any) -> None:
    key = "agent:main:from-the-page"
    fake_gateway.script[key] = Reply.outcome("released", "release_lane", released=1)
    svc = service_factory({"ingest_tokens": TOKEN, "operator_tokens": "carol:op-page-token",
                           "recovery_mode": "webhook", "recovery_webhook_url": fake_gateway.url_template,
                           "stuck_session_warn_ms": 60_000},
                          token=TOKEN, name="page-browser-acting")
    post_events(svc.client, stuck_events("gw-1", key, 1_000))
    page.goto(svc.url + "/")
    page.fill("#token", "op-page-token")  # an operator signs in; the cookie carries the token
    page.click("button[type=submit]")
    page.wait_for_selector("#live.live")

    # a request another page could forge (the cookie rides along, the CSRF token does not): refused
    forged = page.evaluate(
        "fetch('/v1/sessions/' + encodeURIComponent('" + key + "') + '/recover', {method: 'POST', "
        "credentials: 'same-origin', headers: {'Content-Type': 'application/json'}, "
        "body: JSON.stringify({reason: 'forged', gatewayId: 'gw-1'})}).then(r => r.status)")
    assert forged == 403
    assert fake_gateway.requests_for(key) == []

    page.goto(svc.url + "/ui/session?" + urlencode({"gatewayId": "gw-1", "sessionKey": key}))
    page.wait_for_selector("#live.live")
    page.click("text=Release lane")  # without a reason: nothing is sent
    page.locator("#act-note", has_text="a reason is needed").wait_for()
    page.fill("#act-reason", "customer escalated")
    page.click("text=Release lane")
    page.locator("#act-note", has_text="recovery requested (release)").wait_for()
    received = fake_gateway.wait_for_request(key)
    assert (received.body["origin"], received.body["allowActiveAbort"]) == ("operator", False)
    (entry,) = svc.client.get("/v1/audit").json()["items"]
    assert (entry["actor"], entry["reason"], entry["action"]) == ("carol", "customer escalated", "recover")

    # a gateway's maintenance from the overview
    page.goto(svc.url + "/")
    page.wait_for_selector("#live.live")
    page.fill("#act-reason", "upgrading gw-1")
    page.click("text=Maintenance 1 h")
    page.locator("#act-note", has_text="gw-1 in maintenance for 1 h").wait_for()
    gateway = next(g for g in svc.client.get("/v1/gateways").json()["items"] if g["gatewayId"] == "gw-1")
    assert gateway["maintenance"]["actor"] == "carol"
    shot(page, "status-acting.png")
    assert page.dialogs == [] and page.errors == []
