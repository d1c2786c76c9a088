"""Slow clients are timed out (issue 12): a body trickled a byte at a time is cut with a 408 after
OPENCLAW_DIAG_BODY_TIMEOUT_MS, while a well-behaved client is served meanwhile. A real process:
the connection and its descriptor are the point."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.service_process import now_ms

pytestmark = pytest.mark.e2e


def trickle_until_answered(sock: socket.socket, within: float = 20.0) -> bytes:
    """Send the body a byte every 50 ms until the service answers (or `within` seconds pass)."""
    sock.settimeout(0.05)
    answer = b""
    ends = time.monotonic() + within
    while b"\r\n\r\n" not in answer and time.monotonic() < ends:
        try:
            sock.sendall(b" ")
        except OSError:
            pass  # the service may have closed its side already; its answer is still to read
        try:
            part = sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not part:
            break
        answer += part
    return answer


def test_a_trickled_body_is_cut_with_408_and_others_are_served_meanwhile(service_factory):
    svc = service_factory({"body_timeout_ms": 500})
    tricklers = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", svc.port))
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n[")
        tricklers.append(sock)
    try:
        # served while twenty clients hold their bodies back
        ok = svc.client.post("/v1/events", json={"type": "forwarder.keepalive", "ts": now_ms()})
        assert ok.status_code == 202
        for sock in tricklers:
            answer = trickle_until_answered(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    finally:
        for sock in tricklers:
            sock.close()
