"""Paging through GET /v1/sessions while the monitor runs: every session exactly once, in order,
while attention ages grow between two page requests. A real process, because the point is real
ticks passing between the requests (tests/http/test_api_listing.py pages a still store)."""

from __future__ import annotations

import pytest

from tests.support.service_process import (
    ServiceProcess,
    keepalive,
    now_ms,
    post_events,
    wait_until,
)

TOKEN = "page-token"


@pytest.fixture(scope="module")
def svc(module_service_factory) -> ServiceProcess:
    return module_service_factory({"ingest_tokens": TOKEN}, token=TOKEN, name="paging")


def progress(key: str, **fields):
    return {"type": "session.progress", "sessionKey": key, **fields}


def test_pagination_visits_every_session_exactly_once(svc):
    gateway = "gw-page"
    t = now_ms()
    idle = [progress(f"page:idle:{i:02d}", gatewayId=gateway) for i in range(17)]
    processing = [{"type": "session.state", "gatewayId": gateway, "sessionKey": f"page:busy:{i:02d}",
                   "state": "processing", "ts": t - 3000 - 40 * i} for i in range(9)]
    post_events(svc.client, [keepalive(gateway), *idle, *processing])
    expected = {e["sessionKey"] for e in idle + processing}
    wait_until(lambda: len(svc.sessions(gatewayId=gateway, attention="stuck")) == len(processing),
               what="the processing sessions under attention")

    for limit in (1, 4, 7, 26, 1000):
        seen = [item["sessionKey"] for item in svc.sessions(gatewayId=gateway, limit=limit)]
        assert sorted(seen) == sorted(expected), f"limit {limit}"
    first = svc.client.get("/v1/sessions", params={"gatewayId": gateway, "limit": 4}).json()
    assert first["total"] == len(expected) and len(first["items"]) == 4 and first["nextCursor"]
    busy = [item["sessionKey"] for item in first["items"]]
    assert busy == [f"page:busy:{i:02d}" for i in (8, 7, 6, 5)], "most severe, then oldest attention first"


def test_pagination_is_stable_while_attention_ages_grow(svc):
    """Ages grow between two page requests; the cursor must neither skip nor repeat sessions."""
    gateway = "gw-drift"
    t = now_ms()
    processing = [{"type": "session.state", "gatewayId": gateway, "sessionKey": f"drift:{i:02d}",
                   "state": "processing", "ts": t - 3000 - 20 * i} for i in range(12)]
    post_events(svc.client, [keepalive(gateway), *processing])
    wait_until(lambda: len(svc.sessions(gatewayId=gateway, attention="stuck")) == len(processing),
               what="the sessions under attention")

    page = svc.client.get("/v1/sessions", params={"gatewayId": gateway, "limit": 3}).json()
    seen = [item["sessionKey"] for item in page["items"]]
    ticks = svc.client.get("/readyz").json()["monitor"]["ticks"]
    wait_until(lambda: svc.client.get("/readyz").json()["monitor"]["ticks"] >= ticks + 4,
               what="a few monitor ticks (ages grow by more than the spacing)")
    cursor = page["nextCursor"]
    while cursor:
        page = svc.client.get("/v1/sessions", params={"gatewayId": gateway, "limit": 3, "cursor": cursor}).json()
        seen += [item["sessionKey"] for item in page["items"]]
        cursor = page["nextCursor"]
    assert sorted(seen) == sorted(e["sessionKey"] for e in processing)
