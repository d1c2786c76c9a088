"""Roles and tenancy (issue 12; api.md "Auth"): a token bound to gateways sees only those, on every
read — and another gateway's session is a 404 exactly like an unknown one. A read token never
writes."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

INGEST = {"authorization": "Bearer writer"}
READ_A = {"authorization": "Bearer reader-a"}
OPERATOR = {"authorization": "Bearer boss"}


@pytest.fixture
def client(tmp_path):
    settings = Settings(data_dir=tmp_path, ingest_tokens="writer", read_tokens="team-a:reader-a=gw-a",
                        operator_tokens="ops:boss", stuck_session_warn_ms=1_000, scan_interval_ms=50,
                        protect_metrics=True)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        now = time.time_ns() // 1_000_000
        for gateway in ("gw-a", "gw-b"):
            events = [{"type": "forwarder.keepalive", "gatewayId": gateway, "ts": now},
                      {"type": "session.state", "gatewayId": gateway, "sessionKey": f"{gateway}:s",
                       "state": "processing", "ts": now - 60_000},
                      {"type": "session.state", "gatewayId": gateway, "sessionKey": "shared-key",
                       "state": "idle", "ts": now}]
            assert client.post("/v1/events", json=events, headers=INGEST).status_code == 202
        yield client


def test_a_bound_token_lists_only_its_gateways(client) -> None:
    keys = {item["sessionKey"] for item in client.get("/v1/sessions", headers=READ_A).json()["items"]}
    assert keys == {"gw-a:s", "shared-key"}
    assert client.get("/v1/sessions", params={"gatewayId": "gw-b"}, headers=READ_A).json()["items"] == []
    gateways = [g["gatewayId"] for g in client.get("/v1/gateways", headers=READ_A).json()["items"]]
    assert gateways == ["gw-a"]
    everyone = {item["sessionKey"] for item in client.get("/v1/sessions", headers=OPERATOR).json()["items"]}
    assert everyone == {"gw-a:s", "gw-b:s", "shared-key"}


def test_another_gateways_session_is_a_404_like_an_unknown_one(client) -> None:
    foreign = client.get("/v1/sessions/gw-b:s", headers=READ_A)
    unknown = client.get("/v1/sessions/nobody", headers=READ_A)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    # a key two gateways share is not ambiguous for a token that sees one of them
    assert client.get("/v1/sessions/shared-key", headers=READ_A).json()["gatewayId"] == "gw-a"
    assert client.get("/v1/sessions/shared-key", headers=OPERATOR).status_code == 409


def test_the_attention_summary_and_the_page_are_scoped(client) -> None:
    deadline = time.monotonic() + 15  # the monitor scans every 50 ms: wait for its verdicts
    while time.monotonic() < deadline:
        summary = client.get("/v1/attention", headers=OPERATOR).json()
        if summary["total"] >= 2:
            break
        time.sleep(0.1)
    assert set(client.get("/v1/attention", headers=OPERATOR).json()["perGateway"]) == {"gw-a", "gw-b"}
    assert set(client.get("/v1/attention", headers=READ_A).json()["perGateway"]) == {"gw-a"}
    state = client.get("/ui/state.json", headers=READ_A).json()
    assert [g["gatewayId"] for g in state["gateways"]] == ["gw-a"]
    assert {item["gatewayId"] for item in state["items"]} == {"gw-a"}
    assert state["sessions"]["total"] == 2


def test_a_read_token_may_not_write(client) -> None:
    response = client.post("/v1/events", json={"type": "forwarder.keepalive"}, headers=READ_A)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert client.post("/v1/events", json={"type": "forwarder.keepalive"}).status_code == 401


def test_protected_metrics_show_a_bound_token_only_its_gateways(client) -> None:
    assert client.get("/metrics").status_code == 401
    everything = client.get("/metrics", headers=OPERATOR).text
    assert 'openclaw_gateway="gw-a"' in everything and 'openclaw_gateway="gw-b"' in everything
    mine = client.get("/metrics", headers=READ_A).text
    assert 'openclaw_gateway="gw-a"' in mine and 'openclaw_gateway="gw-b"' not in mine
    assert "openclaw_monitor_scan_duration_ms" in mine  # the service's own series stay
