"""Several instances, one fleet: real service processes behind a real HAProxy, sharing a real
PostgreSQL (docs/scale-out.md).

Each test runs up to four `serve` processes on the PostgreSQL journal of a fresh database, with
Debian's HAProxy in front hashing on `X-OpenClaw-Gateway`. Clients post through the proxy the
way the forwarder does: the header on every request, and a retry of the same body on a 503 (a
gateway moving) or a cut connection (an instance that died).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.haproxy import HAProxy, require_haproxy
from tests.support.postgres import database_of, terminate_backends
from tests.support.service_process import (
    ServiceProcess,
    free_port,
    keepalive,
    now_ms,
    stuck_events,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOKEN = "scale-token"
LOCAL = {"X-OpenClaw-Fleet": "local"}  # this instance's own answer, not the fleet's


@pytest.fixture(autouse=True)
def _needs_haproxy() -> None:
    require_haproxy()


class Fleet:
    """`size` instances declared to HAProxy; `start(n)` brings instance n up."""

    def __init__(self, root: Path, url: str, size: int) -> None:
        self.url = url
        self.ports = [free_port() for _ in range(size)]
        self.instances = [
            ServiceProcess(root / f"i{n}", {
                "journal_url": url, "instance_id": f"i{n}", "instance_url": f"http://127.0.0.1:{port}",
                "ingest_tokens": TOKEN,
            }, log_dir=root / "logs", token=TOKEN, name=f"i{n}")
            for n, port in enumerate(self.ports)
        ]
        self.proxy = HAProxy(root / "haproxy", [(f"i{n}", "127.0.0.1", port) for n, port in enumerate(self.ports)])
        self.client = httpx.Client(base_url="http://placeholder", timeout=10.0,
                                   headers={"Authorization": f"Bearer {TOKEN}"})

    def start(self, *numbers: int) -> None:
        for n in numbers:
            self.instances[n].spawn(self.ports[n])
        for n in numbers:
            self.instances[n].wait_ready()
        if not self.proxy.alive:
            self.proxy.start()
            self.client.base_url = httpx.URL(self.proxy.url)
        self.proxy.wait_until(up={f"i{n}" for n in numbers})

    def close(self) -> None:
        self.client.close()
        self.proxy.stop()
        for instance in self.instances:
            instance.stop()

    def post(self, gateway: str, events: list[dict[str, Any]], timeout: float = 20.0) -> dict[str, Any]:
        """What the forwarder does: retry the same body until it is acknowledged."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                response = self.client.post("/v1/events", json=events, headers={"X-OpenClaw-Gateway": gateway})
            except httpx.TransportError as exc:  # an instance died under the request
                last = repr(exc)
            else:
                if response.status_code == 202:
                    return response.json()
                assert response.status_code == 503, response.text
                last = response.text
            time.sleep(0.1)
        raise AssertionError(f"{gateway}: not acknowledged within {timeout} s: {last}")

    def local_sessions(self, n: int) -> list[dict[str, Any]]:
        instance = self.instances[n]
        if not instance.alive:
            return []
        response = instance.client.get("/v1/sessions", params={"limit": 1000}, headers=LOCAL)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def owners(self) -> dict[str, list[int]]:
        """Gateway -> the instances whose own store holds its sessions."""
        found: dict[str, list[int]] = {}
        for n in range(len(self.instances)):
            for gateway in {item["gatewayId"] for item in self.local_sessions(n)}:
                found.setdefault(gateway, []).append(n)
        return found

    def stuck_where(self) -> dict[tuple[str, str], list[int]]:
        """(gateway, session) -> the instances that flag it stuck."""
        found: dict[tuple[str, str], list[int]] = {}
        for n in range(len(self.instances)):
            for item in self.local_sessions(n):
                if (item.get("attention") or {}).get("eventType") == "session.stuck":
                    found.setdefault((item["gatewayId"], item["sessionKey"]), []).append(n)
        return found


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str) -> Iterator[Fleet]:
    made = Fleet(tmp_path, postgres_url, size=4)
    yield made
    made.close()


GATEWAYS = [f"gw-{n:02d}" for n in range(24)]


def test_gateways_spread_and_every_session_is_classified_by_exactly_one_instance(fleet: Fleet) -> None:
    fleet.start(0, 1, 2)
    for gateway in GATEWAYS:
        fleet.post(gateway, stuck_events(gateway, "stuck"))
    flagged = wait_until(lambda: (lambda s: s if len(s) == len(GATEWAYS) else None)(fleet.stuck_where()),
                         timeout=15, what="every gateway's stuck session flagged")
    assert all(len(where) == 1 for where in flagged.values()), flagged  # exactly one instance each
    owners = fleet.owners()
    assert sorted(owners) == GATEWAYS and all(len(n) == 1 for n in owners.values())
    assert {n[0] for n in owners.values()} == {0, 1, 2}  # the hash spread them over all three
    # a fleet-wide read on any instance lists every gateway's sessions, and says who answered
    for instance in fleet.instances[:3]:
        body = instance.client.get("/v1/sessions", params={"limit": 1000}).json()
        assert sorted(item["gatewayId"] for item in body["items"]) == GATEWAYS
        assert body["total"] == len(GATEWAYS) and body["instances"]["missing"] == []
        summary = instance.client.get("/v1/attention").json()
        assert summary["byEventType"] == {"session.stuck": len(GATEWAYS)}
        assert sorted(summary["perGateway"]) == GATEWAYS
        gateways = instance.client.get("/v1/gateways").json()["items"]
        assert [g["gatewayId"] for g in gateways] == GATEWAYS
    # one session, and a gateway's maintenance, are answered by the gateway's owner from anywhere
    gateway = GATEWAYS[0]
    other = next(n for n in range(3) if n != owners[gateway][0])
    detail = fleet.instances[other].client.get("/v1/sessions/stuck", params={"gatewayId": gateway})
    assert detail.status_code == 200 and detail.json()["gatewayId"] == gateway
    assert detail.json()["attention"]["eventType"] == "session.stuck"
    ambiguous = fleet.instances[other].client.get("/v1/sessions/stuck")
    assert ambiguous.status_code == 409  # every gateway has a "stuck": the fleet is asked, and says so
    # the status page, from any instance, is the fleet's: its overview and another owner's session
    state = fleet.instances[other].client.get("/ui/state.json").json()
    assert state["counts"]["stuck"] == state["underAttention"] == len(GATEWAYS)
    assert sorted(item["gatewayId"] for item in state["items"]) == GATEWAYS
    assert [g["gatewayId"] for g in state["gateways"]] == GATEWAYS
    assert state["instances"]["answered"] == ["i0", "i1", "i2"]
    one = fleet.instances[other].client.get("/ui/state.json", params={"gatewayId": gateway}).json()
    assert [item["gatewayId"] for item in one["items"]] == [gateway] and one["sessions"]["total"] == 1
    page = fleet.instances[other].client.get("/ui/session", params={"sessionKey": "stuck", "gatewayId": gateway})
    assert page.status_code == 200 and gateway in page.text
    which = fleet.instances[other].client.get("/ui/session", params={"sessionKey": "stuck"})
    assert which.status_code == 409 and all(g in which.text for g in GATEWAYS)


def test_kill_9_of_one_instance_under_load_moves_its_gateways_and_loses_nothing(fleet: Fleet) -> None:
    fleet.start(0, 1, 2)
    gateways = GATEWAYS[:12]
    for gateway in gateways:
        fleet.post(gateway, stuck_events(gateway, "stuck"))
    wait_until(lambda: len(fleet.stuck_where()) == len(gateways), timeout=15, what="all flagged")
    owners = fleet.owners()
    victim = max(range(3), key=lambda n: sum(1 for o in owners.values() if o == [n]))
    moved = sorted(g for g, o in owners.items() if o == [victim])

    acked: dict[str, int] = {gateway: 0 for gateway in gateways}
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(gateway: str) -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                fleet.post(gateway, [{"type": "message.queued", "gatewayId": gateway, "sessionKey": "queue",
                                      "source": "load", "eventId": f"{gateway}-{n}", "ts": now_ms()}])
                acked[gateway] = n
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(g,), daemon=True) for g in gateways]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    killed_at = time.monotonic()
    fleet.instances[victim].kill()
    # the victim's gateways are classified elsewhere: their stuck sessions flagged again
    wait_until(lambda: all(len(fleet.stuck_where().get((g, "stuck"), [])) == 1 for g in moved),
               timeout=30, what="the victim's stuck sessions flagged by a survivor")
    failover_s = time.monotonic() - killed_at
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    owners = fleet.owners()
    assert all(o != [victim] and len(o) == 1 for o in owners.values()), owners
    # every acknowledged event is there, and none twice: the queue holds exactly what was acked
    for gateway in gateways:
        (queue,) = [item for n in owners[gateway] for item in fleet.local_sessions(n)
                    if item["gatewayId"] == gateway and item["sessionKey"] == "queue"]
        assert queue["queueDepth"] == acked[gateway], (gateway, queue["queueDepth"], acked[gateway])
    print(f"failover: {failover_s:.2f} s for {len(moved)} gateways")


def test_a_cut_lock_connection_fences_the_instance_and_its_gateways_go_on_elsewhere(fleet: Fleet) -> None:
    fleet.start(0, 1, 2)
    gateways = GATEWAYS[:9]
    for gateway in gateways:
        fleet.post(gateway, stuck_events(gateway, "stuck"))
    wait_until(lambda: len(fleet.stuck_where()) == len(gateways), timeout=15, what="all flagged")
    owners = fleet.owners()
    victim = next(n for n in range(3) if any(o == [n] for o in owners.values()))
    cut = terminate_backends(fleet.url.rsplit("/", 1)[0] + "/postgres", database_of(fleet.url),
                             f"openclaw-diagnostics i{victim} writer")
    assert cut == 1
    # the victim stays up but forgets the gateways its connection held...
    wait_until(lambda: fleet.local_sessions(victim) == [], timeout=10, what="the cut instance let go")
    assert fleet.instances[victim].alive
    # ...and each is classified again by exactly one instance (adopted, or taken back on its next event)
    wait_until(lambda: all(len(fleet.stuck_where().get((g, "stuck"), [])) == 1 for g in gateways),
               timeout=15, what="every stuck session flagged once again")
    for gateway in gateways:
        fleet.post(gateway, [keepalive(gateway)])
    assert all(len(o) == 1 for o in fleet.owners().values())


def test_a_fourth_instance_joins_and_takes_its_share_by_handover(fleet: Fleet) -> None:
    fleet.start(0, 1, 2)
    gateways = [f"gw-{n:02d}" for n in range(40)]
    sent: dict[str, int] = {}
    for gateway in gateways:
        fleet.post(gateway, [keepalive(gateway), {"type": "message.queued", "gatewayId": gateway,
                                                  "sessionKey": "queue", "source": "x", "eventId": f"{gateway}-1",
                                                  "ts": now_ms()}])
        sent[gateway] = 1
    before = fleet.owners()
    fleet.start(3)
    for gateway in gateways:  # the next event of each gateway: the hash sends some to the newcomer
        fleet.post(gateway, [{"type": "message.queued", "gatewayId": gateway, "sessionKey": "queue",
                              "source": "x", "eventId": f"{gateway}-2", "ts": now_ms()}])
        sent[gateway] = 2
    after = fleet.owners()
    moved = sorted(g for g in gateways if after[g] != before[g])
    assert moved and all(after[g] == [3] for g in moved), (before, after)  # only to the newcomer
    assert 0.1 <= len(moved) / len(gateways) <= 0.45, len(moved)  # about a quarter
    for gateway in gateways:
        (queue,) = [item for item in fleet.local_sessions(after[gateway][0])
                    if item["gatewayId"] == gateway and item["sessionKey"] == "queue"]
        assert queue["queueDepth"] == sent[gateway]  # nothing lost or doubled by the handover


def read_frames(client: httpx.Client, headers: dict[str, str], want: int, timeout: float = 20.0,
                event: str | None = None, gateway: str | None = None) -> list[dict[str, str]]:
    """GET /v1/stream's events, each as {id, event, data}, until `want` of them (of `event`,
    of `gateway`)."""
    frames: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", "/v1/stream", headers=headers, timeout=httpx.Timeout(5.0, read=timeout)) as response:
        assert response.status_code == 200
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "event" in current and "id" in current:
                    frames.append(current)
                    if sum(1 for f in frames if event in (None, f["event"])
                           and gateway in (None, json.loads(f["data"])["gatewayId"])) >= want:
                        return frames
                current = {}
            elif ":" in line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = value
            assert time.monotonic() < deadline, frames
    return frames


def test_the_change_stream_of_any_instance_carries_every_instance_s_changes(fleet: Fleet) -> None:
    fleet.start(0, 1, 2)
    gateways = GATEWAYS[:9]
    for gateway in gateways:  # known to their owners first, so the stream's openings are all ours
        fleet.post(gateway, [keepalive(gateway)])
    reader = fleet.instances[0].client
    got: list[dict[str, str]] = []
    thread = threading.Thread(target=lambda: got.extend(read_frames(reader, {}, len(gateways), event="attention.opened")),
                              daemon=True)
    thread.start()
    time.sleep(1.5)  # the merged stream has asked every instance
    for gateway in gateways:
        fleet.post(gateway, stuck_events(gateway, "stuck"))
    thread.join(30)
    opened = [f for f in got if f["event"] == "attention.opened"]
    assert sorted(json.loads(f["data"])["gatewayId"] for f in opened) == gateways
    owners = fleet.owners()
    assert len({owners[g][0] for g in gateways}) > 1  # changes of several instances, on one stream
    # every id names a position in each instance's own stream; resuming from the last one
    # replays nothing already seen, and carries what came since
    last = got[-1]["id"]
    assert all("=" in part for part in last.split(","))
    fleet.post(gateways[0], stuck_events(gateways[0], "stuck-again"))
    after = read_frames(reader, {"Last-Event-ID": last}, 1, event="attention.opened", gateway=gateways[0])
    seen = {json.loads(f["data"])["id"] for f in got}
    assert not [f for f in after if json.loads(f["data"])["id"] in seen]
    assert json.loads(after[-1]["data"])["sessionKey"] == "stuck-again"
