"""Recovery records keep the journal's format: release 0.1 wrote requests and outcomes as msgpack
maps, and the typed records are written as the same maps and read back from either."""

from __future__ import annotations

import msgspec

from app import records
from app.outcomes import GatewayAnswer, failed
from app.store import Session
from tests.support.builders import recovery_outcome, recovery_request


def test_a_request_is_written_as_the_map_release_0_1_wrote() -> None:
    request = recovery_request(sessionKey="k", stateGeneration=3, allowActiveAbort=True)
    as_map = msgspec.msgpack.encode(request.as_json())
    assert msgspec.msgpack.encode(request) == as_map
    assert records.from_row(1, records.REQUESTED, "default", "k", None, as_map).payload == request


def test_a_completed_record_of_maps_reads_back_as_records() -> None:
    request = recovery_request(sessionKey="k")
    body = msgspec.msgpack.encode([request.as_json(), {"status": "released", "action": "release_lane"}, 5])
    read = records.from_row(2, records.COMPLETED, "default", "k", 5, body).payload
    # written before profiles existed: applied with the seed's guard
    assert read == [request, recovery_outcome(status="released", action="release_lane"), 5, "seed"]
    assert read[1].mutating


def test_a_checkpointed_session_with_a_request_in_flight_restores_it() -> None:
    request = recovery_request(sessionKey="k", requestedAt=7)
    session = Session("default", "k", "k", None, "idle", 1, 2, 3)
    session.inflight = request
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(session.to_state()))  # the map, as stored
    assert isinstance(state[14], dict)
    assert Session.from_state(state).inflight == request


def test_a_long_error_is_recorded_and_read_back_unchecked() -> None:
    """What the service records itself is not held to what a gateway may send."""
    outcome = failed("exception", "x" * 5_000)
    body = msgspec.msgpack.encode([recovery_request().as_json(), outcome, 1])
    assert records.from_row(3, records.COMPLETED, "default", "k", 1, body).payload[1] == outcome
    try:
        msgspec.json.decode(msgspec.json.encode(outcome), type=GatewayAnswer)
    except msgspec.ValidationError as exc:
        assert "$.error" in str(exc)
    else:
        raise AssertionError("a gateway's 5,000-character error was accepted")
