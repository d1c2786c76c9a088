"""The scale-out routing, shown on a real HAProxy: a gateway sticks to one instance, and an
instance that leaves or joins moves only the gateways it has to.

What runs, all on 127.0.0.1: Debian's `haproxy` (tests/support/haproxy.py: `balance
hdr(X-OpenClaw-Gateway)`, `hash-type consistent`, checks on `GET /readyz` every 300 ms) in front
of four tiny stdlib HTTP servers standing in for instances `b1`..`b4`: each answers /readyz with
200 and every other path with its own name. `b4` is declared in the proxy from the start, but its
port is only bound (connections are refused) until a test starts it: a fourth instance joining,
as the operator's runbook for the scale stack does it (docker-compose.scale.yml's header).

The consistent-hash promises checked here are what the service's hand-over relies on: when the
ring changes, the gateways whose owner changed are exactly those next to the server that left or
joined, so only those sessions move between instances.

Skipped when HAProxy is not installed, except under CI=true, where that fails (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.haproxy import HASH_HEADER, HAProxy, require_haproxy

pytestmark = pytest.mark.e2e

SURVIVORS = ("b1", "b2", "b3")
JOINER = "b4"
GATEWAYS = [f"gw-{n:04d}" for n in range(200)]


@pytest.fixture(scope="module", autouse=True)
def _require_haproxy() -> None:
    require_haproxy()


class Backend:
    """A stand-in instance: GET /readyz -> 200, any other GET -> its own name.

    The port is bound at construction but not listened on until `start()`, so the proxy can be
    told about it first (connections to it are refused meanwhile, as to a container not yet up)
    and no other process can take the port in between. HTTP/1.0, one request per connection:
    after `stop()` nothing of this server answers any more, not even an idle kept-alive connection.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(), bind_and_activate=False)
        self._httpd.daemon_threads = True
        self._httpd.server_bind()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),  # quick to stop
                                        name=f"backend-{name}", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> Backend:
        self._httpd.server_activate()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        name = self.name

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = b"ready" if self.path == "/readyz" else name.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # HAProxy's health check hangs up (a reset) once it has read the status line.
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(body)

        return Handler


class Stack:
    def __init__(self, proxy: HAProxy, backends: dict[str, Backend]) -> None:
        self.proxy = proxy
        self.backends = backends
        self.client = httpx.Client(base_url=proxy.url, timeout=10.0)

    def owner(self, gateway: str) -> str:
        response = self.client.get("/v1/sessions", headers={HASH_HEADER: gateway})
        assert response.status_code == 200, f"{gateway}: HTTP {response.status_code}\n{self.proxy.log_tail()}"
        return response.text

    def owners(self) -> dict[str, str]:
        return {gateway: self.owner(gateway) for gateway in GATEWAYS}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """b1..b3 up, b4 declared but absent, the proxy settled on that."""
    backends = {name: Backend(name) for name in (*SURVIVORS, JOINER)}
    for name in SURVIVORS:
        backends[name].start()
    proxy = HAProxy(tmp_path / "haproxy", [(name, "127.0.0.1", b.port) for name, b in backends.items()])
    try:
        proxy.start()
        proxy.wait_until(up=SURVIVORS, down={JOINER})
        stack = Stack(proxy, backends)
        yield stack
        stack.client.close()
    finally:
        proxy.stop()
        for backend in backends.values():
            backend.stop()


def test_a_gateway_always_lands_on_the_same_instance_and_gateways_spread_over_all(stack: Stack) -> None:
    first = stack.owners()
    for _ in range(2):
        assert stack.owners() == first
    spread = Counter(first.values())
    assert set(spread) == set(SURVIVORS), spread
    # Not a statistics test: no instance is left nearly idle (an even split is ~67 each).
    assert min(spread.values()) >= 20, spread


def test_an_instance_that_dies_gives_up_only_its_own_gateways_to_the_survivors(stack: Stack) -> None:
    before = stack.owners()
    orphans = [gw for gw, owner in before.items() if owner == "b2"]
    assert orphans, before

    stack.backends["b2"].stop()
    # Before the checks notice, a request for b2 is refused, retried and redispatched: it is
    # answered by a survivor, not failed.
    assert stack.owner(orphans[0]) in {"b1", "b3"}
    stack.proxy.wait_until(up={"b1", "b3"}, down={"b2", JOINER})

    after = stack.owners()
    for gateway, owner in before.items():
        if owner == "b2":
            assert after[gateway] in {"b1", "b3"}, gateway
        else:
            assert after[gateway] == owner, f"{gateway} moved from {owner} to {after[gateway]}"
    assert set(after.values()) == {"b1", "b3"}


def test_a_joining_instance_takes_about_a_quarter_and_only_it_gains(stack: Stack) -> None:
    before = stack.owners()

    stack.backends[JOINER].start()
    stack.proxy.wait_until(up={*SURVIVORS, JOINER})

    after = stack.owners()
    moved = {gateway for gateway in GATEWAYS if after[gateway] != before[gateway]}
    assert {after[gateway] for gateway in moved} == {JOINER}, "a gateway moved between old instances"
    assert all(after[gateway] == JOINER for gateway in moved)
    share = len(moved) / len(GATEWAYS)
    assert 0.10 <= share <= 0.45, f"{len(moved)} of {len(GATEWAYS)} gateways moved to {JOINER}"
    assert stack.owners() == after  # and it stays so
