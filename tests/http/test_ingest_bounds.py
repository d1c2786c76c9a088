"""Work per request is bounded before it is done (issue 12): a small body that inflates to a huge
batch is refused after counting its items, before any event is built or checked.

In-process: the real app through Starlette's TestClient, and the decoder directly; the bound is
shown by counting the work done (events checked), never by timing it.
"""

from __future__ import annotations

import gzip
import json
import sys

import pytest
from fastapi.testclient import TestClient

from app import decoding as decoding_module
from app.decoding import (
    DECODE_SLICE,
    TooManyEvents,
    decode_json,
    decode_ndjson,
    json_steps,
    ndjson_steps,
)
from app.main import create_app
from app.settings import Settings

TINY = b'{"type":"x"}'


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the events `check_event` looks at: the per-event work of a decode."""
    calls: list[int] = []
    original = decoding_module.check_event

    def counting(index, event):
        calls.append(index)
        return original(index, event)

    monkeypatch.setattr(decoding_module, "check_event", counting)
    return calls


def test_an_oversized_array_is_counted_not_decoded(checked: list[int]) -> None:
    body = b"[" + b",".join([TINY] * 200_000) + b"]"
    with pytest.raises(TooManyEvents) as refused:
        decode_json(body, max_events=10_000)
    assert refused.value.count == 200_000
    assert checked == []  # not one event was built or checked


def test_oversized_ndjson_is_counted_not_decoded(checked: list[int]) -> None:
    with pytest.raises(TooManyEvents):
        decode_ndjson(b"\n".join([TINY] * 20_001), max_events=20_000)
    assert checked == []


def test_a_batch_at_the_limit_is_decoded_in_full(checked: list[int]) -> None:
    body = b"[" + b",".join([TINY] * 10_000) + b"]"
    assert decode_json(body, max_events=10_000).total == 10_000
    assert len(checked) == 10_000


@pytest.mark.parametrize("steps, body", [
    (json_steps, b"[" + b",".join([TINY] * 2_000) + b"]"),
    (ndjson_steps, b"\n".join([TINY] * 2_000)),
])
def test_a_large_body_is_decoded_in_slices(checked: list[int], steps, body: bytes) -> None:
    """Between two yields (where the ingest path gives the event loop back) at most one slice of
    events is decoded and checked."""
    decoding = steps(body, 10_000)
    checked_at_each_yield = [len(checked) for _ in decoding]
    assert checked_at_each_yield == [n * DECODE_SLICE for n in range(1, 2_000 // DECODE_SLICE + 1)]
    assert len(checked) == 2_000


def test_a_bad_event_in_a_later_slice_is_named_by_its_index() -> None:
    events = [TINY] * 1_500
    events[1_200] = b'{"type":"run.started","ts":"yesterday"}'
    decoded = decode_json(b"[" + b",".join(events) + b"]")
    assert decoded.total == 1_500 and len(decoded.events) == 1_499
    assert [rejection.index for rejection in decoded.rejected] == [1_200]
    assert decoded.rejected[0].errors[0]["loc"][:3] == ["body", 1_200, "ts"]


def test_a_number_out_of_range_in_an_array_rejects_only_its_event() -> None:
    decoded = decode_json(b'[{"type":"x"},{"type":"model.call.completed","sessionKey":"k",'
                          b'"provider":"p","model":"m","durationMs":1e400}]')
    assert [index for index, _ in decoded.events] == [0]
    assert decoded.rejected[0].errors[0]["loc"] == ["body", 1, "durationMs"]


def test_an_8_kb_gzip_body_of_600_000_events_is_413_with_no_event_built(tmp_path, checked: list[int]) -> None:
    inflated = b"[" + b",".join([TINY] * 600_000) + b"]"
    body = gzip.compress(inflated, 9)
    assert len(body) < 16_384
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://localhost") as client:
        response = client.post("/v1/events", content=body,
                               headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert "inflates more than 64x" in response.json()["error"]["message"]
        assert checked == []
        # a batch over the limit that is not a bomb is counted, and refused before decoding
        plain = b"[" + b",".join([TINY] * 20_000) + b"]"
        response = client.post("/v1/events", content=plain, headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "batch_too_large"
        assert "20000 events" in response.json()["error"]["message"]
        assert checked == []
        # the service goes on serving
        assert client.post("/v1/events", json={"type": "forwarder.keepalive"}).status_code == 202


def test_an_ordinary_gzip_batch_is_accepted(tmp_path) -> None:
    events = [{"type": "message.queued", "gatewayId": "gw", "sessionKey": f"agent:main:s{i}", "source": "telegram",
               "eventId": f"evt-{i:08d}-{i * 7919 % 100_003}", "ts": 1_800_000_000_000 + i * 37} for i in range(2_000)]
    body = gzip.compress(json.dumps(events).encode(), 9)
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://localhost") as client:
        response = client.post("/v1/events", content=body,
                               headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert response.status_code == 202 and response.json()["accepted"] == 2_000


def test_a_body_without_content_type_is_refused_as_a_browser_could_send_it(tmp_path) -> None:
    """`fetch`/`sendBeacon` from any web page can POST a body with no Content-Type (no preflight)."""
    body = b'{"type":"session.state","sessionKey":"cross-site","state":"processing"}'
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://localhost") as client:
        response = client.post("/v1/events", content=body)
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"
        assert client.get("/v1/sessions/cross-site").status_code == 404
        assert client.post("/v1/events", content=body, headers={"content-type": "application/json"}).status_code == 202


@pytest.mark.parametrize("path", ["/v1/events", "/v1/sessions", "/metrics", "/"])
def test_a_host_not_on_the_allow_list_is_refused_on_every_route(tmp_path, path: str) -> None:
    """DNS rebinding: a page on attacker.example reaches 127.0.0.1 under its own name."""
    with TestClient(create_app(Settings(data_dir=tmp_path)), base_url="http://attacker.example") as client:
        response = client.post(path, json={"type": "forwarder.keepalive"}) if path == "/v1/events" else client.get(path)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "host_not_allowed"
        assert client.get("/healthz").status_code == 200  # probes answer whatever the Host
        assert client.get("/readyz").status_code == 200
        allowed = client.get(path if path != "/v1/events" else "/v1/sessions", headers={"host": "localhost:8080"})
        assert allowed.status_code == 200


def test_allowed_hosts_as_configured(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, allowed_hosts="diag.internal, [::1]")
    with TestClient(create_app(settings), base_url="http://diag.internal:8080") as client:
        assert client.get("/v1/sessions").status_code == 200
        assert client.get("/v1/sessions", headers={"host": "localhost"}).status_code == 400  # not the default any more
    with TestClient(create_app(Settings(data_dir=tmp_path / "any", allowed_hosts="*")),
                    base_url="http://anything.example") as client:
        assert client.get("/v1/sessions").status_code == 200


def test_the_service_shortens_the_switch_interval_while_it_runs(tmp_path) -> None:
    """The journal's writer thread must not wait 5 ms for the GIL at each of its SQLite calls
    while the loop decodes a large body (app/service.py, Service.open)."""
    from app.service import SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    with TestClient(create_app(Settings(data_dir=str(tmp_path))), base_url="http://localhost"):
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == before
