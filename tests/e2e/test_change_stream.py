"""`GET /v1/stream` read by a real HTTP client from the service as a process: live changes, a
reconnect that resumes from Last-Event-ID, a reader told to reload, and the token's scope."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.service_process import (
    GRACEFUL,
    now_ms,
    post_events,
    stuck_events,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOKENS = "ingest-token"
READ_TOKENS = "all:read-all,gw-a-only:read-a=gw-a"


class Reader:
    """Reads one stream in a thread; events arrive on a queue as (id, event, data)."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None) -> None:
        self.events: queue.Queue[tuple[str | None, str, dict[str, Any]]] = queue.Queue()
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.client = httpx.Client(timeout=httpx.Timeout(5.0, read=30.0))
        self.response = self.client.send(self.client.build_request("GET", url, headers=headers), stream=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if "event" in fields:
                        self.events.put((fields.get("id"), fields["event"], json.loads(fields.get("data", "{}"))))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        except httpx.HTTPError:
            pass

    def next(self, event: str | None = None, timeout: float = 15.0) -> tuple[str | None, str, dict[str, Any]]:
        """The next event (of that name: others are passed over)."""
        while True:
            item = self.events.get(timeout=timeout)
            if event is None or item[1] == event:
                return item

    def close(self) -> None:
        self.response.close()
        self.client.close()


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    opened: list[Reader] = []
    yield opened
    for reader in opened:
        reader.close()


def test_changes_arrive_live_and_a_reconnect_resumes_where_it_left(service_factory, readers):
    svc = service_factory({"ingest_tokens": TOKENS, "read_tokens": READ_TOKENS}, token="read-all")
    ingest = httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {TOKENS}"})
    url = f"{svc.url}/v1/stream"
    first = Reader(url, "read-all")
    readers.append(first)
    assert first.response.status_code == 200
    assert first.response.headers["content-type"].startswith("text/event-stream")

    post_events(ingest, stuck_events("gw-a", "agent:main:one"))
    event_id, event, data = first.next("attention.opened")
    assert (data["gatewayId"], data["sessionKey"], data["eventType"], data["reason"]) == (
        "gw-a", "agent:main:one", "session.stuck", "stale_session_state")
    assert data["sessionHash"] and data["id"] == int(event_id)
    first.next("recovery.requested")
    first.close()  # the reader goes away ...

    # ... and misses these: the session goes idle, another gets stuck
    post_events(ingest, [{"type": "session.state", "gatewayId": "gw-a", "sessionKey": "agent:main:one",
                          "state": "idle", "ts": now_ms()}, *stuck_events("gw-a", "agent:main:two")])
    def both_judged() -> bool:
        one = svc.client.get("/v1/sessions/agent:main:one", params={"gatewayId": "gw-a"}).json()
        two = svc.client.get("/v1/sessions/agent:main:two", params={"gatewayId": "gw-a"}).json()
        return one["attention"] is None and (two["attention"] or {}).get("eventType") == "session.stuck"

    wait_until(both_judged, timeout=10, what="the changes the reader missed")
    time.sleep(0.5)  # a few scans: the clearing is published at the end of one
    again = Reader(url, "read-all", last_event_id=event_id)  # EventSource sends this by itself
    readers.append(again)
    missed = []
    while {"attention.cleared", "attention.opened"} - {e for _, e, _ in missed}:
        missed.append(again.next())
    assert all(int(i) > int(event_id) for i, _, _ in missed)  # nothing it had seen again
    cleared = next(d for _, e, d in missed if e == "attention.cleared")
    assert (cleared["sessionKey"], cleared["previous"]["reason"]) == ("agent:main:one", "stale_session_state")
    assert next(d for _, e, d in missed if e == "attention.opened")["sessionKey"] == "agent:main:two"


def test_a_reader_older_than_the_backlog_is_told_to_reload(service_factory, readers):
    svc = service_factory({"ingest_tokens": TOKENS, "read_tokens": READ_TOKENS}, token="read-all")
    reader = Reader(f"{svc.url}/v1/stream", "read-all", last_event_id="1")  # from before this process
    readers.append(reader)
    assert reader.next()[1] == "reset"


def test_a_bound_token_sees_only_its_gateways(service_factory, readers):
    svc = service_factory({"ingest_tokens": TOKENS, "read_tokens": READ_TOKENS}, token="read-all")
    ingest = httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {TOKENS}"})
    mine = Reader(f"{svc.url}/v1/stream", "read-a")
    everyone = Reader(f"{svc.url}/v1/stream", "read-all")
    readers.extend([mine, everyone])
    post_events(ingest, [*stuck_events("gw-b", "agent:main:b"), *stuck_events("gw-a", "agent:main:a")])
    seen_all = {everyone.next("attention.opened")[2]["gatewayId"], everyone.next("attention.opened")[2]["gatewayId"]}
    assert seen_all == {"gw-a", "gw-b"}
    assert mine.next("attention.opened")[2]["gatewayId"] == "gw-a"
    with pytest.raises(queue.Empty):
        mine.next("attention.opened", timeout=1.0)  # gw-b's never comes
    refused = httpx.get(f"{svc.url}/v1/stream", headers={"Authorization": "Bearer wrong"}, timeout=5.0)
    assert refused.status_code == 401


def test_a_stop_signal_ends_open_streams_instead_of_waiting_for_them(service_factory, readers):
    """A stream never ends by itself: without the service hearing of the stop first (app/main.py
    chains SIGTERM), the graceful stop would wait out its whole bound for it."""
    svc = service_factory({"ingest_tokens": TOKENS, "read_tokens": READ_TOKENS, "shutdown_timeout_ms": 60_000},
                          token="read-all")
    reader = Reader(f"{svc.url}/v1/stream", "read-all")
    readers.append(reader)
    assert reader.response.status_code == 200
    began = time.monotonic()
    assert svc.stop() in GRACEFUL
    assert time.monotonic() - began < 30  # not the 60 s the graceful stop allows open requests
    reader.thread.join(5)
    assert not reader.thread.is_alive()  # the stream ended, it was not cut mid-event
