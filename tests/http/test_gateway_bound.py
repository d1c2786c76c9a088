"""The number of gateways is bounded (issue 12; api.md): a new gateway evicts the least recently
heard one without sessions; if every gateway has sessions, events for a new one are rejected."""

from __future__ import annotations

import msgspec
from fastapi.testclient import TestClient

from app.events import Event
from app.main import create_app
from app.settings import Settings
from app.store import REJECTED, Store

NOW = 1_800_000_000_000


def keepalive(gateway: str, at: int) -> Event:
    return msgspec.convert({"type": "forwarder.keepalive", "gatewayId": gateway, "ts": at}, Event)


def test_a_new_gateway_evicts_the_least_recently_heard_one_without_sessions() -> None:
    store = Store(max_gateways=3)
    for i, gateway in enumerate(("a", "b", "c")):
        store.apply_event(keepalive(gateway, NOW + i), NOW + i)
    store.apply_event(keepalive("a", NOW + 10), NOW + 10)  # a is heard again: b is the oldest now
    store.apply_event(keepalive("d", NOW + 11), NOW + 11)
    assert {g.gateway_id for g in store.gateway_infos()} == {"a", "c", "d"}
    assert store.bounded_evictions["gateway"] == 1


def test_gateways_with_sessions_are_kept_and_a_new_one_is_rejected() -> None:
    store = Store(max_gateways=2)
    for gateway in ("a", "b"):
        store.apply_event(msgspec.convert({"type": "session.state", "gatewayId": gateway, "sessionKey": "s",
                                           "state": "idle", "ts": NOW}, Event), NOW)
    result = store.apply_event(keepalive("c", NOW + 1), NOW + 1)
    assert result.outcome == REJECTED and result.refused == "gateway_limit"
    assert {g.gateway_id for g in store.gateway_infos()} == {"a", "b"}
    assert store.bounded_evictions["gateway"] == 0


def test_three_hundred_thousand_gateway_ids_leave_the_bound_in_place(tmp_path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, max_gateways=100)), base_url="http://localhost") as client:
        client.post("/v1/events", json={"type": "session.state", "gatewayId": "real", "sessionKey": "s",
                                        "state": "processing"})
        for start in range(0, 3_000, 1_000):
            body = [{"type": "unknown.type", "gatewayId": f"junk-{n}"} for n in range(start, start + 1_000)]
            assert client.post("/v1/events", json=body).status_code == 202
        gateways = client.get("/v1/gateways").json()
        listed = gateways["items"] if isinstance(gateways, dict) else gateways
        assert len(listed) <= 100
        assert client.get("/v1/sessions/s", params={"gatewayId": "real"}).status_code == 200
        metrics = client.get("/metrics").text
        evicted = [line for line in metrics.splitlines()
                   if line.startswith("openclaw_monitor_bounded_evicted_total") and 'openclaw_structure="gateway"' in line]
        assert evicted and float(evicted[0].split()[-1]) >= 2_900  # counted
