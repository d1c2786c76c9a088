"""Token lists parse as api.md says: last-`=` binding, `name:` prefix, base64 padding kept, and an
empty token a start-up error (it would make the empty bearer token valid)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.http.auth import authorize
from app.main import create_app
from app.settings import Settings, SettingsError, load_settings
from app.tokens import TokenEntry, parse_tokens


def test_base64_padding_stays_in_the_token() -> None:
    # what `openssl rand -base64 32` prints ends in `=`
    assert parse_tokens("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ=") == [
        TokenEntry("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJ=", None, None)]
    assert parse_tokens("abc==") == [TokenEntry("abc==", None, None)]


def test_the_binding_is_after_the_last_equals_sign() -> None:
    assert parse_tokens("abc==gw-a") == [TokenEntry("abc=", None, frozenset({"gw-a"}))]
    assert parse_tokens("t1=gw-a|gw-b, t2") == [TokenEntry("t1", None, frozenset({"gw-a", "gw-b"})),
                                                TokenEntry("t2", None, None)]


def test_a_name_is_before_the_first_colon() -> None:
    assert parse_tokens("ci-forwarder:s3cret=gw-a") == [TokenEntry("s3cret", "ci-forwarder", frozenset({"gw-a"}))]


@pytest.mark.parametrize("text", ["=gw", "good, =gw-b", "name:=gw", " , =  "])
def test_an_empty_token_is_a_start_up_error_naming_the_variable(text: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(ingest_tokens=text)
    assert "OPENCLAW_DIAG_INGEST_TOKENS" in str(error.value) and "empty token" in str(error.value)


def test_the_empty_bearer_token_is_never_valid() -> None:
    tokens = {"t": None}
    assert authorize(tokens, b"Bearer ") == (False, None)
    assert authorize(tokens, b"Bearer t") == (True, None)


def test_a_padded_token_authenticates_and_a_bound_one_writes_only_its_gateways(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, ingest_tokens="abc==,pair:xyz=gw-a|gw-b")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        padded = {"authorization": "Bearer abc=="}
        assert client.post("/v1/events", json={"type": "forwarder.keepalive"}, headers=padded).status_code == 202
        pair = {"authorization": "Bearer xyz"}
        body = [{"type": "forwarder.keepalive", "gatewayId": "gw-a"}, {"type": "forwarder.keepalive", "gatewayId": "gw-c"},
                {"type": "forwarder.keepalive"}]
        result = client.post("/v1/events", json=body, headers=pair).json()
        assert result["accepted"] == 1
        assert [r["index"] for r in result["rejected"]] == [1, 2]
        assert "bound to gateways gw-a, gw-b: name one" in result["rejected"][1]["errors"][0]["msg"]
