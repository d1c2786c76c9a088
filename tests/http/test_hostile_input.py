"""Hostile input against the service: never a 5xx, never a crash, always the envelope.

The real app in this process (tests/support/inprocess.py) with small limits and bearer tokens
(a plain one, and one bound to gw-a); after every test it must still answer /healthz. An
exception a request raises inside the app fails the test it came from.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.inprocess import InProcessService
from tests.support.service_process import (
    keepalive,
    now_ms,
    post_events,
    wait_until,
)

TOKEN = "plain-token"
BOUND_TOKEN = "gw-a-token"
MAX_BODY = 256 * 1024
MAX_BATCH = 100
ERROR_STATUSES = {400, 413, 415, 422}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessService]:
    service = InProcessService(tmp_path_factory.mktemp("hostile"), {
        "max_body_bytes": MAX_BODY,
        "max_batch_events": MAX_BATCH,
        "ingest_tokens": f"{TOKEN}, {BOUND_TOKEN}=gw-a",
    }, token=TOKEN).start()
    yield service
    service.stop()


@pytest.fixture(autouse=True)
def still_healthy(svc: InProcessService) -> Iterator[None]:
    yield
    assert svc.healthy(), "/healthz after the test"


# -- helpers -----------------------------------------------------------------------------------


def send(svc: InProcessService, body: bytes | Iterator[bytes], content_type: str | None = "application/json",
         token: str | None = TOKEN, **headers: str) -> httpx.Response:
    """POST raw bytes to /v1/events with exactly the headers given."""
    all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers["Authorization"] = f"Bearer {token}" if token else ""
    response = svc.client.post("/v1/events", content=body, headers=all_headers)
    assert response.status_code < 500, f"{response.status_code} {response.text}"
    return response


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def envelope(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the api.md error body; return its `error` object."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    for detail in error["details"]:
        assert isinstance(detail["loc"], list) and isinstance(detail["msg"], str), detail
    if code is not None:
        assert error["code"] == code, error
    return error


def accepted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, f"{response.status_code} {response.text}"
    return response.json()


def progress(key: str, **fields: Any) -> dict[str, Any]:
    return {"type": "session.progress", "sessionKey": key, **fields}


# -- body-level errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b'{"type": ',
    b'{"type":"session.progress","sessionKey":"k",}',
    b'[{"type":"x"} {"type":"y"}]',
    b'{"type":"x","ts":NaN}',
    b'{"type":"x","ts":Infinity}',
    b'{"type":"x","ts":-Infinity}',
    b"{'type':'x'}",
    b"",
    b"   ",
], ids=["truncated", "trailing-comma", "missing-comma", "nan", "infinity", "minus-infinity", "single-quotes",
        "empty", "blank"])
def test_malformed_json_is_400_saying_where(svc, body):
    error = envelope(send(svc, body), 400, "invalid_json")
    assert re.search(r"byte \d+|line \d+|column \d+|truncated|empty", error["message"]), error["message"]


def test_invalid_utf8_is_400(svc):
    envelope(send(svc, b'{"type":"session.progress","sessionKey":"caf\xe9"}'), 400, "invalid_json")


def test_invalid_utf8_names_the_byte_offset_of_the_bad_byte(svc):
    body = b'{"type":"session.progress","sessionKey":"caf\xe9"}'
    bad_byte_at = body.index(b"\xe9")
    error = envelope(send(svc, body), 400, "invalid_json")
    assert f"byte offset {bad_byte_at}" in error["message"], error["message"]


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"type":"session.progress","sessionKey":"deep","trace":' + b'{"a":' * 40_000 + b"1" + b"}" * 40_000 + b"}",
], ids=["array-100000-levels", "object-in-a-field-40000-levels"])
def test_deep_nesting_is_400_and_costs_nothing(svc, body):
    error = envelope(send(svc, body), 400, "invalid_json")
    assert "nesting" in error["message"]


def test_body_over_the_limit_is_413(svc):
    body = as_json([progress("big", padding="x" * (MAX_BODY + 10))])
    envelope(send(svc, body), 413, "payload_too_large")


def test_streamed_body_over_the_limit_is_413_without_a_content_length(svc):
    def chunks() -> Iterator[bytes]:
        yield b'[{"type":"session.progress","sessionKey":"stream","padding":"'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096
        yield b'"}]'
    envelope(send(svc, chunks()), 413, "payload_too_large")


def test_more_events_than_the_batch_limit_is_413(svc):
    events = [{"type": "diagnostic.heartbeat"} for _ in range(MAX_BATCH + 1)]
    envelope(send(svc, as_json(events)), 413, "batch_too_large")
    ndjson = b"\n".join(as_json(e) for e in events)
    envelope(send(svc, ndjson, "application/x-ndjson"), 413, "batch_too_large")
    result = accepted(send(svc, as_json(events[:MAX_BATCH])))
    assert result["accepted"] == MAX_BATCH


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415(svc, content_type):
    envelope(send(svc, as_json(progress("ct")), content_type), 415, "unsupported_media_type")


def test_unsupported_content_encoding_is_415(svc):
    envelope(send(svc, as_json(progress("enc")), content_encoding="br"), 415, "unsupported_media_type")


def test_get_on_the_ingest_route_is_405_with_the_envelope(svc):
    envelope(svc.client.get("/v1/events"), 405, "method_not_allowed")


# -- gzip ---------------------------------------------------------------------------------------


def test_gzip_body_is_accepted_and_applied(svc):
    result = accepted(send(svc, gzip.compress(as_json([progress("gz:json")])), content_encoding="gzip"))
    assert result["accepted"] == 1
    ndjson = gzip.compress(as_json(progress("gz:ndjson")) + b"\n")
    assert accepted(send(svc, ndjson, "application/x-ndjson", content_encoding="gzip"))["accepted"] == 1
    assert svc.session("gz:json")["generation"] == 1
    assert svc.session("gz:ndjson")["generation"] == 1


@pytest.mark.parametrize("body", [
    b"\x1f\x8b\x08\x00not really gzip",
    b"plain text, no gzip header",
    gzip.compress(as_json(progress("gz:cut")))[:-12],
], ids=["corrupt", "not-gzip", "truncated"])
def test_broken_gzip_is_400(svc, body):
    envelope(send(svc, body, content_encoding="gzip"), 400, "invalid_body")


def test_gzip_bomb_is_413_after_decompressing_no_more_than_the_limit(svc):
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < MAX_BODY
    envelope(send(svc, bomb, content_encoding="gzip"), 413, "payload_too_large")


# -- per-event validation -------------------------------------------------------------------------


WRONG = [
    ({"type": 5}, ["type"]),
    ({"type": None}, ["type"]),
    ({"type": "session.state", "sessionKey": "k", "state": "idle", "queueDepth": "three"}, ["queueDepth"]),
    ({"type": "session.state", "sessionKey": "k", "state": "idle", "queueDepth": True}, ["queueDepth"]),
    ({"type": "session.state", "sessionKey": "k", "state": "sleeping"}, ["state"]),
    ({"type": "session.state", "sessionKey": "k"}, ["state"]),
    ({"type": "message.queued", "sessionKey": "k"}, ["source"]),
    ({"type": "model.call.started", "sessionKey": "k", "provider": "openai"}, ["model"]),
    ({"type": "tool.execution.started", "sessionKey": "k", "toolName": "   "}, ["toolName"]),
    ({"type": "session.progress", "sessionKey": ["k"]}, ["sessionKey"]),
    ({"type": "session.progress", "sessionKey": "k", "ts": "yesterday"}, ["ts"]),
    ({"type": "session.progress", "sessionKey": "k", "ts": 1795575850871.5}, ["ts"]),
    ({"type": "session.progress", "sessionKey": "k", "ts": 946_684_799_999}, ["ts"]),
    ({"type": "session.progress", "sessionKey": "k", "seq": -1}, ["seq"]),
    ({"type": "embedded_run.ended", "sessionKey": "k", "clearRunActivity": "yes"}, ["clearRunActivity"]),
    ({"type": "model.usage", "sessionKey": "k", "usage": {"input": -1}}, ["usage", "input"]),
    ({"type": "model.usage", "sessionKey": "k", "usage": [1, 2]}, ["usage"]),
    ({"type": "session.progress", "sessionKey": "k", "eventId": "e" * 257}, ["eventId"]),
    ({"type": "session.progress", "sessionKey": "k", "gatewayId": "g" * 129}, ["gatewayId"]),
    ({"type": "session.progress", "sessionKey": "k" * 513}, ["sessionKey"]),
    ({"type": "session.progress", "sessionKey": "k", "reason": "r" * 513}, ["reason"]),
    ({"type": "x.unknown", "ts": "not a time"}, ["ts"]),  # an unknown type's envelope is still checked
]

HUGE = [
    ({"type": "session.progress", "sessionKey": "k", "ts": 2**63}, ["ts"]),
    ({"type": "session.progress", "sessionKey": "k", "ts": 10**30}, ["ts"]),
    ({"type": "session.progress", "sessionKey": "k", "ts": -(2**70)}, ["ts"]),
    ({"type": "session.progress", "sessionKey": "k", "seq": 2**64}, ["seq"]),
    ({"type": "session.state", "sessionKey": "k", "state": "idle", "queueDepth": 1_000_001}, ["queueDepth"]),
    ({"type": "forwarder.keepalive", "dropped": 2**63}, ["dropped"]),
]


@pytest.mark.parametrize(("event", "field"), WRONG + HUGE, ids=lambda v: None if isinstance(v, dict) else ".".join(v))
def test_invalid_event_is_422_naming_the_field(svc, event, field):
    error = envelope(send(svc, as_json(event)), 422, "validation_failed")
    locs = [d["loc"] for d in error["details"]]
    assert ["body", 0, *field] in locs, locs


def test_same_invalid_events_inside_a_batch_are_rejected_by_index_and_field(svc):
    cases = WRONG + HUGE
    batch = [keepalive()] + [event for event, _ in cases]
    result = accepted(send(svc, as_json(batch)))
    assert result["accepted"] == 1
    rejected = {r["index"]: r["errors"] for r in result["rejected"]}
    assert sorted(rejected) == list(range(1, len(cases) + 1))
    for index, (_, field) in enumerate(cases, start=1):
        assert ["body", index, *field] in [e["loc"] for e in rejected[index]], (index, rejected[index])


def test_mixed_batch_applies_the_good_and_names_the_bad(svc):
    batch = [
        {"type": "session.state", "sessionKey": "mixed:good-0", "state": "processing", "queueDepth": 2},
        {"type": "session.state", "sessionKey": "mixed:bad-1", "state": "processing", "queueDepth": -3},
        {"type": "message.queued", "sessionKey": "mixed:good-2", "source": "telegram"},
        {"type": "message.queued", "source": "telegram"},
        {"type": "x.unknown.type", "whatever": [1, {"a": None}]},
        "not an object",
    ]
    result = accepted(send(svc, as_json(batch)))
    assert (result["accepted"], result["duplicates"], result["ignored"]) == (2, 0, 1)
    assert [r["index"] for r in result["rejected"]] == [1, 3, 5]
    errors = {r["index"]: r["errors"] for r in result["rejected"]}
    assert errors[1][0]["loc"] == ["body", 1, "queueDepth"]
    assert errors[3] == [{"loc": ["body", 3], "msg": "sessionKey, sessionId or runId is required"}]
    assert errors[5][0]["loc"] == ["body", 5]
    good = svc.session("mixed:good-0")
    assert (good["state"], good["queueDepth"]) == ("processing", 2)
    assert svc.session("mixed:good-2")["queueDepth"] == 1
    envelope(svc.client.get("/v1/sessions/mixed:bad-1"), 404, "not_found")


def test_all_bad_is_422_with_one_detail_per_error(svc):
    batch = [
        {"type": "session.state", "sessionKey": "k", "state": "idle", "queueDepth": "x"},
        {"type": "tool.execution.started"},
        42,
    ]
    error = envelope(send(svc, as_json(batch)), 422, "validation_failed")
    locs = [d["loc"] for d in error["details"]]
    assert ["body", 0, "queueDepth"] in locs
    assert ["body", 1, "toolName"] in locs
    assert ["body", 1] in locs  # no session ids
    assert ["body", 2] in locs
    assert all(loc[0] == "body" and loc[1] in (0, 1, 2) for loc in locs)


def test_ndjson_bad_line_is_rejected_by_its_0_based_line_index(svc):
    body = b"\n".join([
        as_json(progress("ndjson:good")),
        b"",  # blank lines are skipped but still count as lines
        b'{"type": "session.progress", "sessionKey": ',
        as_json({"type": "x.unknown"}),
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe garbage",
        as_json({"type": "session.progress", "sessionKey": "ndjson:bad", "ts": "x"}),
        b"",
    ])
    result = accepted(send(svc, body, "application/x-ndjson"))
    assert (result["accepted"], result["ignored"]) == (1, 1)
    assert [r["index"] for r in result["rejected"]] == [2, 4, 5, 6]
    locs = {r["index"]: r["errors"][0]["loc"] for r in result["rejected"]}
    assert locs[2] == ["body", 2] and locs[6] == ["body", 6, "ts"]
    assert svc.session("ndjson:good")["generation"] == 1


def test_unknown_type_is_ignored_not_rejected(svc):
    result = accepted(send(svc, as_json({"type": "gateway.event_loop.sample", "intervalMs": 1000.5,
                                         "sessionKey": "unknown:never-created"})))
    assert (result["accepted"], result["ignored"], result["rejected"]) == (0, 1, [])
    envelope(svc.client.get("/v1/sessions/unknown:never-created"), 404, "not_found")


def test_session_scoped_event_without_ids_is_rejected(svc):
    error = envelope(send(svc, as_json({"type": "session.progress", "sessionKey": "  "})), 422)
    assert error["details"] == [{"loc": ["body", 0], "msg": "sessionKey, sessionId or runId is required"}]


def test_run_id_only_event_of_an_unknown_run_is_ignored(svc):
    result = accepted(send(svc, as_json({"type": "run.progress", "runId": "run-nobody-knows", "reason": "x"})))
    assert (result["accepted"], result["ignored"], result["rejected"]) == (0, 1, [])


def test_empty_batch_is_202_with_zeros(svc):
    assert accepted(send(svc, b"[]")) == {"accepted": 0, "duplicates": 0, "ignored": 0, "rejected": []}


def test_giant_unknown_field_is_ignored_and_the_event_applied(svc):
    event = progress("giant:field", note="n" * (MAX_BODY - 1024))
    assert accepted(send(svc, as_json(event)))["accepted"] == 1
    key = "k" * 512  # the longest key allowed
    assert accepted(send(svc, as_json(progress(key))))["accepted"] == 1
    assert svc.session(key)["sessionKey"] == key


def test_strings_with_control_characters_and_escapes_round_trip(svc):
    key = "odd:\u0000\u001f\u2028\U0001f600/../%2F?x=1#y"
    assert accepted(send(svc, as_json(progress(key))))["accepted"] == 1
    found = svc.client.get("/v1/sessions", params={"limit": 1000}).json()["items"]
    assert key in [item["sessionKey"] for item in found]


def test_number_out_of_float_range_rejects_only_its_event(svc):
    body = b'[{"type":"session.progress","sessionKey":"range:good"},' \
           b'{"type":"model.call.completed","sessionKey":"k","provider":"p","model":"m","durationMs":1e400}]'
    result = accepted(send(svc, body))
    assert result["accepted"] == 1
    assert result["rejected"][0]["errors"][0]["loc"] == ["body", 1, "durationMs"]


def test_number_out_of_float_range_never_answers_5xx(svc):
    response = send(svc, b'{"type":"model.call.completed","sessionKey":"k","provider":"p","model":"m",'
                         b'"durationMs":1e400}')
    assert response.status_code in (400, 422)
    envelope(response, response.status_code)


def test_absurd_usage_amounts_do_not_break_the_read_api(svc):
    usage = {"type": "model.usage", "sessionKey": "usage:absurd", "usage": {"input": 1e308, "total": 1e308},
             "costUsd": 1e308}
    post_events(svc.client, [progress("usage:absurd"), usage, usage])  # the sums overflow to infinity
    session = svc.session("usage:absurd")
    assert session["usage"]["output"] == 0
    assert svc.client.get("/v1/sessions").status_code == 200
    assert svc.client.get("/v1/attention").status_code == 200


# -- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}",
                                           f"Bearer {TOKEN}x", f"Token {TOKEN}"])
def test_missing_or_wrong_token_is_401(svc, authorization):
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = svc.anonymous("POST", "/v1/events", content=as_json(progress("auth:nope")), headers=headers)
    envelope(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    response = svc.anonymous("GET", "/v1/sessions", headers={k: v for k, v in headers.items() if k == "Authorization"})
    envelope(response, 401, "unauthorized")


def test_health_endpoints_stay_open(svc):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert svc.anonymous("GET", path).status_code == 200, path


def test_bound_token_gives_events_its_gateway_and_refuses_others(svc):
    batch = [
        progress("bound:own"),
        progress("bound:named", gatewayId="gw-a"),
        progress("bound:foreign", gatewayId="gw-b"),
    ]
    result = accepted(send(svc, as_json(batch), token=BOUND_TOKEN))
    assert result["accepted"] == 2
    assert result["rejected"] == [{"index": 2, "errors": [
        {"loc": ["body", 2, "gatewayId"], "msg": "the token is bound to gateway gw-a"}]}]
    assert svc.session("bound:own")["gatewayId"] == "gw-a"
    assert svc.session("bound:named", "gw-a")["gatewayId"] == "gw-a"
    envelope(svc.client.get("/v1/sessions/bound:foreign"), 404, "not_found")
    error = envelope(send(svc, as_json(progress("bound:only-foreign", gatewayId="gw-b")), token=BOUND_TOKEN), 422)
    assert error["details"][0]["loc"] == ["body", 0, "gatewayId"]


def test_plain_token_may_write_any_gateway(svc):
    assert accepted(send(svc, as_json(progress("plain:b", gatewayId="gw-b"))))["accepted"] == 1
    assert svc.session("plain:b")["gatewayId"] == "gw-b"


# -- read API ------------------------------------------------------------------------------------


def test_unknown_session_is_404_with_the_envelope(svc):
    error = envelope(svc.client.get("/v1/sessions/agent:main:nobody"), 404, "not_found")
    assert error["details"][0]["loc"] == ["path", "sessionKey"]
    envelope(svc.client.get("/v1/sessions/agent:main:main", params={"gatewayId": "gw-none"}), 404, "not_found")


def test_same_key_on_two_gateways_is_409_listing_them(svc):
    key = "agent:main:shared"
    post_events(svc.client, [progress(key, gatewayId="gw-x"), progress(key, gatewayId="gw-y")])
    error = envelope(svc.client.get(f"/v1/sessions/{key}"), 409)
    assert sorted(d["msg"] for d in error["details"]) == ["gw-x", "gw-y"]
    assert svc.session(key, "gw-y")["gatewayId"] == "gw-y"


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"attention": "bogus"}, {"state": "sleeping"},
    {"cursor": "not-a-cursor"}, {"cursor": "W1sxXQ"},
])
def test_bad_list_parameters_are_422_with_the_envelope(svc, params):
    error = envelope(svc.client.get("/v1/sessions", params=params), 422, "validation_failed")
    assert all(d["loc"][0] == "query" for d in error["details"])


def test_list_filters(svc):
    gateway = "gw-filter"
    t = now_ms()
    post_events(svc.client, [
        keepalive(gateway),
        {"type": "session.state", "gatewayId": gateway, "sessionKey": "filter:busy", "state": "processing",
         "ts": t - 3000},
        {"type": "session.state", "gatewayId": gateway, "sessionKey": "filter:waiting", "state": "waiting",
         "ts": t - 3000},
        progress("filter:idle", gatewayId=gateway),
    ])
    wait_until(lambda: svc.sessions(gatewayId=gateway, attention="stuck"), what="filter:busy flagged")

    def keys(**params: Any) -> list[str]:
        return sorted(item["sessionKey"] for item in svc.sessions(gatewayId=gateway, **params))

    assert keys() == ["filter:busy", "filter:idle", "filter:waiting"]
    assert keys(state="processing") == ["filter:busy"]
    assert keys(state="waiting") == ["filter:waiting"]
    assert keys(attention="stuck") == ["filter:busy"]
    assert keys(attention="stalled") == []
    assert keys(attention="none") == ["filter:idle", "filter:waiting"]
    assert keys(attention="none", state="waiting") == ["filter:waiting"]
    assert keys(attention="stuck", state="idle") == []
    assert all(item["gatewayId"] == gateway for item in svc.sessions(gatewayId=gateway))
    assert "filter:busy" not in [item["sessionKey"] for item in svc.sessions(gatewayId="gw-page")]


# -- fuzz ------------------------------------------------------------------------------------------

KNOWN_TYPES = ["session.state", "message.queued", "session.progress", "tool.execution.started",
               "tool.execution.completed", "model.call.started", "model.call.error", "run.progress",
               "run.started", "run.completed", "embedded_run.started", "embedded_run.ended", "model.usage",
               "session.stuck", "session.recovery.completed", "forwarder.keepalive", "diagnostic.heartbeat"]
FIELDS = ["ts", "seq", "eventId", "gatewayId", "sessionKey", "sessionId", "runId", "state", "queueDepth",
          "source", "toolName", "toolCallId", "provider", "model", "workKey", "clearRunActivity", "reason",
          "durationMs", "usage", "costUsd", "ageMs", "released", "queued", "dropped", "trace"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=946_684_800_000, max_value=now_ms() + 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.integers(min_value=500, max_value=600).map(lambda n: "x" * n),  # around the 512 limit
    st.sampled_from(["idle", "processing", "waiting", "k", "gw-a", "gw-b", " ", ""]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
field_values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(
    st.sampled_from(["input", "output", "total", "a"]), scalars, max_size=2))
events = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(KNOWN_TYPES), st.text(max_size=12), scalars)},
    optional={name: field_values for name in FIELDS},
)
bodies = st.one_of(events, st.lists(events, max_size=6))
# E2E_FUZZ_EXAMPLES=5000 for a longer hunt; the suite stays bounded.
FUZZ = settings(max_examples=int(os.environ.get("E2E_FUZZ_EXAMPLES", "200")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_answer(response: httpx.Response, count: int | None = None) -> None:
    assert response.status_code in {202} | ERROR_STATUSES, f"{response.status_code} {response.text}"
    if response.status_code != 202:
        envelope(response, response.status_code)
        return
    result = response.json()
    total = result["accepted"] + result["duplicates"] + result["ignored"] + len(result["rejected"])
    if count is not None:
        assert total == count, result
    for rejection in result["rejected"]:
        assert rejection["errors"], rejection
        for error in rejection["errors"]:
            assert error["loc"][:2] == ["body", rejection["index"]], rejection


@FUZZ
@given(body=bodies)
def test_fuzz_event_shaped_json(svc, body):
    response = send(svc, json.dumps(body).encode())
    check_answer(response, len(body) if isinstance(body, list) else 1)


@FUZZ
@given(value=json_values)
def test_fuzz_any_json_value(svc, value):
    check_answer(send(svc, json.dumps(value).encode()))


@FUZZ
@given(lines=st.lists(st.one_of(events.map(lambda e: json.dumps(e).encode()), st.binary(max_size=40)),
                      max_size=6))
def test_fuzz_ndjson_lines(svc, lines):
    check_answer(send(svc, b"\n".join(lines), "application/x-ndjson"))


@FUZZ
@given(data=st.binary(max_size=2000),
       content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain", None]),
       gzipped=st.booleans())
def test_fuzz_random_bytes(svc, data, content_type, gzipped):
    body = gzip.compress(data) if gzipped else data
    headers = {"content_encoding": "gzip"} if gzipped else {}
    check_answer(send(svc, body, content_type, **headers))


def test_after_the_fuzz_the_service_is_healthy_and_still_reads(svc):
    assert svc.healthy()
    ready = svc.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert svc.client.get("/v1/sessions", params={"limit": 1000}).status_code == 200
    assert svc.client.get("/v1/attention").status_code == 200
    assert svc.client.get("/v1/gateways").status_code == 200
    assert accepted(send(svc, as_json(progress("after:fuzz"))))["accepted"] == 1
    log = svc.log_text()
    assert "Exception in ASGI application" not in log, svc.log_tail()
    assert "monitor tick failed" not in log, svc.log_tail()
