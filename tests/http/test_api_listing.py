"""GET /v1/sessions over a large store: the same pages whether sorted on the loop or off it."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app import queries
from app.main import create_app
from app.settings import Settings


def listing(client: TestClient, **params: object) -> list[str]:
    keys, cursor = [], None
    while True:
        query = {**params, "limit": 7, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/sessions", params=query).json()
        keys += [item["sessionKey"] for item in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            return keys


@pytest.mark.parametrize("large_listing", [10**9, 0], ids=["on-the-loop", "off-the-loop"])
def test_pages_visit_every_session_once_in_order(tmp_path, monkeypatch, large_listing):
    monkeypatch.setattr(queries, "LARGE_LISTING", large_listing)
    now = time.time_ns() // 1_000_000
    events = [{"type": "forwarder.keepalive", "ts": now, "gatewayId": g} for g in ("a", "b")]
    events += [{"type": "session.state", "sessionKey": f"s{i:02d}", "state": "idle", "gatewayId": "ab"[i % 2],
                "ts": now} for i in range(30)]
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://localhost") as client:
        assert client.post("/v1/events", json=events).status_code == 202
        everything = listing(client)
        assert everything == sorted(everything) and len(everything) == 30
        assert listing(client, gatewayId="a") == [f"s{i:02d}" for i in range(0, 30, 2)]
        assert listing(client, gatewayId="nobody") == []
        assert client.get("/v1/sessions", params={"state": "idle"}).json()["total"] == 30


def test_gateways_show_their_version_and_the_profile_in_force(tmp_path):
    now = time.time_ns() // 1_000_000
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://localhost") as client:
        events = [{"type": "forwarder.keepalive", "ts": now, "gatewayId": "new", "gatewayVersion": "2026.9.6"},
                  {"type": "forwarder.keepalive", "ts": now, "gatewayId": "old", "gatewayVersion": "2026.7.1"},
                  {"type": "forwarder.keepalive", "ts": now, "gatewayId": "quiet"}]
        assert client.post("/v1/events", json=events).status_code == 202
        items = {g["gatewayId"]: g for g in client.get("/v1/gateways").json()["items"]}
    assert (items["new"]["gatewayVersion"], items["new"]["profile"]) == ("2026.9.6", "openclaw-2026.9")
    assert (items["old"]["gatewayVersion"], items["old"]["profile"]) == ("2026.7.1", "seed")
    assert (items["quiet"]["gatewayVersion"], items["quiet"]["profile"]) == (None, "seed")
