"""The status page over HTTP, in-process (no browser): escaping, security headers, the token and
cookie flow. The browser tests are tests/e2e/test_page_browser.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from app.formatting import human_ms
from tests.support.inprocess import InProcessService
from tests.support.paths import REPO
from tests.support.service_process import keepalive, now_ms, post_events, wait_until

XSS_KEY = "agent:main:</script><script>alert(1)</script>"
TOKEN = "page-token"
STATIC = REPO / "app" / "http" / "static"


def flag(svc: Any, gateway: str, key: str, age_ms: int = 5_000) -> None:
    """A session processing for `age_ms` with no activity: stuck once the monitor scans."""
    post_events(svc.client, [
        keepalive(gateway),
        {"type": "session.state", "gatewayId": gateway, "sessionKey": key, "state": "processing",
         "ts": now_ms() - age_ms},
    ])
    def flagged() -> Any:
        response = svc.client.get("/v1/sessions/" + quote(key, safe=""), params={"gatewayId": gateway})
        return response.status_code == 200 and response.json()["attention"]

    wait_until(flagged, timeout=10, what=f"{key} flagged")


@pytest.fixture(scope="module")
def open_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    svc = InProcessService(tmp_path_factory.mktemp("page-open")).start()
    flag(svc, "gw-<b>", XSS_KEY)
    flag(svc, "gw-1", "agent:main:a/b?c#d&e")
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def locked_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    svc = InProcessService(tmp_path_factory.mktemp("page-locked"), {"ingest_tokens": f"{TOKEN},bound=gw-9"},
                           token=TOKEN).start()
    flag(svc, "gw-1", "agent:main:locked")
    yield svc
    svc.stop()


def initial_state(page: str) -> Any:
    """The page's one JSON data block, parsed: it must end where the server ended it."""
    blocks = re.findall(r'<script type="application/json" id="initial-state">(.*?)</script>', page, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_overview_escapes_everything(open_svc: Any) -> None:
    response = open_svc.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # Two script elements: the data (JSON, never run) and the page's own script from this origin;
    # the CSP forbids inline script. In the data, <, > and & are \u-escaped (Jinja's tojson), so
    # a key holding </script><script> stays inside its block.
    assert re.findall(r"<script[^>]*>", page) == [
        '<script type="application/json" id="initial-state">', '<script src="/ui/static/app.js">']
    assert page.count("</script>") == 2
    assert "<script>alert" not in page and "<b>" not in page
    state = initial_state(page)
    assert XSS_KEY in [item["sessionKey"] for item in state["items"]]
    assert "gw-<b>" in [g["gatewayId"] for g in state["gateways"]]
    # The server renders the shell only; app.js renders the data (test_page_browser.py).
    shell = page.replace(re.search(r'<script type="application/json".*?</script>', page, re.S).group(0), "")
    assert "agent:main" not in shell and "stale_session_state" not in shell
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "unauthenticated" in page  # no tokens configured: the page says so


def test_detail_view_and_json(open_svc: Any) -> None:
    post_events(open_svc.client, [{"type": "model.usage", "gatewayId": "gw-1", "sessionKey": "agent:main:a/b?c#d&e",
                                   "usage": {"input": 1200, "output": 300, "total": 1500}, "costUsd": 0.0123,
                                   "ts": now_ms()}])
    params = {"gatewayId": "gw-1", "sessionKey": "agent:main:a/b?c#d&e"}
    response = open_svc.client.get("/ui/session", params=params)
    assert response.status_code == 200
    # The shell names the session (escaped); app.js polls /ui/session.json with the body's data-*.
    assert "<title>agent:main:a/b?c#d&amp;e · OpenClaw diagnostics</title>" in response.text
    assert 'data-gateway="gw-1" data-key="agent:main:a/b?c#d&amp;e"' in response.text
    data = open_svc.client.get("/ui/session.json", params=params).json()
    for item in (initial_state(response.text), data):  # the page's first state, and a poll
        assert item["sessionKey"] == "agent:main:a/b?c#d&e" and item["recentEvents"]
        assert item["attention"]["reason"] == "stale_session_state"
        assert item["usage"]["total"] == 1500 and item["usage"]["costUsd"] == 0.0123
        assert item["recoveries"] and item["recoveries"][0]["outcomeReason"] == "no_recovery_target"
    # Without gatewayId the key's only session is found; an unknown key is a 404 page.
    xss = open_svc.client.get("/ui/session", params={"sessionKey": XSS_KEY})
    assert xss.status_code == 200 and "&lt;/script&gt;&lt;script&gt;" in xss.text and "<script>alert" not in xss.text
    assert initial_state(xss.text)["sessionKey"] == XSS_KEY
    unknown = open_svc.client.get("/ui/session", params={"sessionKey": "<i>nope</i>"})
    assert unknown.status_code == 404 and "&lt;i&gt;nope&lt;/i&gt;" in unknown.text and "<i>" not in unknown.text
    assert "initial-state" not in unknown.text


def test_ambiguous_key_offers_each_gateway(open_svc: Any) -> None:
    flag(open_svc, "gw-2", "agent:main:a/b?c#d&e")
    response = open_svc.client.get("/ui/session", params={"sessionKey": "agent:main:a/b?c#d&e"})
    assert response.status_code == 409
    assert "gatewayId=gw-1&amp;" in response.text and "gatewayId=gw-2&amp;" in response.text


def test_state_json(open_svc: Any) -> None:
    state = open_svc.client.get("/ui/state.json").json()
    assert state["counts"]["stuck"] >= 2
    keys = [item["sessionKey"] for item in state["items"]]
    assert XSS_KEY in keys
    ages = [item["attention"]["attentionAgeMs"] for item in state["items"]]
    assert ages == sorted(ages, reverse=True)  # all stuck: oldest first
    assert {g["gatewayId"] for g in state["gateways"]} >= {"gw-1", "gw-<b>"}
    # each gateway with its version and the classifier profile in force (no keepalive: seed)
    assert {(g["gatewayVersion"], g["profile"]) for g in state["gateways"]} == {(None, "seed")}
    assert state["monitor"]["running"] is True and state["monitor"]["warnMs"] == 1000
    # ?gatewayId= narrows the picture to one gateway (what the alerts link to)
    one = open_svc.client.get("/ui/state.json", params={"gatewayId": "gw-<b>"}).json()
    assert [g["gatewayId"] for g in one["gateways"]] == ["gw-<b>"]
    assert {item["gatewayId"] for item in one["items"]} == {"gw-<b>"} and one["counts"]["stuck"] >= 1
    page_state = initial_state(open_svc.client.get("/", params={"gatewayId": "gw-<b>"}).text)
    assert [g["gatewayId"] for g in page_state["gateways"]] == ["gw-<b>"]


def test_static_assets(open_svc: Any) -> None:
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    css = (STATIC / "app.css").read_text(encoding="utf-8")
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    assert "http" not in css.replace("https", "")  # nothing fetched from elsewhere
    for name, body, types in (("app.js", js, {"text/javascript", "application/javascript"}), ("app.css", css, {"text/css"})):
        response = open_svc.client.get("/ui/static/" + name)
        assert response.status_code == 200 and response.text == body
        assert response.headers["content-type"].split(";")[0] in types  # nosniff: a wrong type is not run
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "public, max-age=300"
        moved = open_svc.client.get("/ui/" + name, follow_redirects=False)  # where the files were before app/http/static/
        assert moved.status_code == 301 and moved.headers["location"] == "/ui/static/" + name
    assert open_svc.client.get("/ui/static/%2e%2e/page.py").status_code == 404  # app/http/page.py stays out


def test_token_required_and_cookie_flow(locked_svc: InProcessService) -> None:
    class Browser:  # no token, keeps cookies, follows no redirect
        cookies = locked_svc.client.cookies

        def get(self, path: str, **kwargs: Any) -> Any:
            return locked_svc.anonymous("GET", path, follow_redirects=False, **kwargs)

        def post(self, path: str, **kwargs: Any) -> Any:
            return locked_svc.anonymous("POST", path, follow_redirects=False, **kwargs)

    browser = Browser()
    login = browser.get("/")
    assert login.status_code == 401
    assert '<form method="post" action="/ui/login">' in login.text
    assert "agent:main:locked" not in login.text
    assert browser.get("/ui/state.json").status_code == 401
    assert browser.get("/ui/state.json").json()["error"]["code"] == "unauthorized"
    assert browser.get("/ui/session", params={"sessionKey": "agent:main:locked"}).status_code == 401

    wrong = browser.post("/ui/login", data={"token": "guess", "next": "/"})
    assert wrong.status_code == 401 and "That token is not accepted." in wrong.text
    assert "set-cookie" not in wrong.headers

    ok = browser.post("/ui/login", data={"token": TOKEN, "next": "/ui/session?sessionKey=agent%3Amain%3Alocked"})
    assert ok.status_code == 303
    assert ok.headers["location"] == "/ui/session?sessionKey=agent%3Amain%3Alocked"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"openclaw_diag_token={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert browser.get("/").status_code == 200  # the client keeps the cookie
    assert "agent:main:locked" in browser.get("/").text
    assert "Sign out" in browser.get("/").text
    assert browser.get("/ui/state.json").status_code == 200
    # The cookie opens the read API too (app/http/auth.py, token_from), never ingest.
    assert browser.get("/v1/sessions").status_code == 200
    ingest = browser.post("/v1/events", json={"type": "forwarder.keepalive"})
    assert ingest.status_code == 401

    out = browser.post("/ui/logout")
    assert out.status_code == 303 and 'openclaw_diag_token=""' in out.headers["set-cookie"]
    browser.cookies.clear()
    assert browser.get("/").status_code == 401

    # A bearer header works as for the API; a gateway-bound token reads too.
    assert browser.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    bound = browser.get("/", headers={"Authorization": "Bearer bound"})
    assert bound.status_code == 200  # bound to gw-9: the page's data holds none of gw-1's sessions
    assert initial_state(bound.text)["items"] == [] and "agent:main:locked" not in bound.text
    assert browser.get("/ui/session", params={"sessionKey": "agent:main:locked"},
                       headers={"Authorization": "Bearer bound"}).status_code == 404
    assert browser.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "javascript:alert(1)"])
def test_login_never_redirects_off_site(locked_svc: InProcessService, target: str) -> None:
    response = locked_svc.anonymous("POST", "/ui/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_login_form_limits(locked_svc: InProcessService) -> None:
    big = locked_svc.anonymous("POST", "/ui/login", data={"token": "x" * 20_000})
    assert big.status_code == 413


def test_human_ages() -> None:
    assert [human_ms(v) for v in (None, 400, 35_000, 245_000, 7_380_000, 2 * 86_400_000 + 4 * 3_600_000)] == [
        "–", "400ms", "35s", "4m 05s", "2h 03m", "2d 4h"]


def test_the_session_hash_is_the_one_exported_records_carry(tmp_path) -> None:
    """sessionHash in the read API (and on the page, from that JSON) is the keyed hash the log
    records carry in place of the key (app/session_ids.py), and the key is the configured one."""
    from app.session_ids import SessionIds

    svc = InProcessService(tmp_path, {"session_hash_key": "deployment-key"}).start()
    try:
        post_events(svc.client, [{"type": "session.state", "sessionKey": "agent:main:dm:42", "state": "idle",
                                  "ts": now_ms()}])
        item = svc.session("agent:main:dm:42")
        assert item["sessionHash"] == SessionIds("hash", lambda: b"deployment-key").hash("agent:main:dm:42")
        page = svc.client.get("/ui/session.json", params={"sessionKey": "agent:main:dm:42"}).json()
        assert page["sessionHash"] == item["sessionHash"]
    finally:
        svc.stop()
