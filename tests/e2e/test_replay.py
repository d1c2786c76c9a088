"""Replay the real OpenClaw 2026.9.6 captures (../shared/data) through the running service.

Each line is sent exactly as the gateway emitted it, except `ts`, shifted so that the replayed
part of the capture ends now (the service's clock is real).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.service_process import ServiceProcess, now_ms, recoveries, wait_until

DATA = Path("/work/shared/data")
NORMAL = DATA / "openclaw-2026.9.6-gateway-normal-turns.ndjson"
HUNG = DATA / "openclaw-2026.9.6-gateway-hung-model-call.ndjson"
CAPTURES = [NORMAL, HUNG]
HANG_KEY = "agent:main:hang2"
CAPTURE_WARN_MS = 30_000  # the QA thresholds the hung capture was recorded with

pytestmark = pytest.mark.skipif(not HUNG.exists(), reason="captures not available")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def shifted(events: list[dict[str, Any]], end_at: int) -> list[dict[str, Any]]:
    """The same events with `ts` moved so that the last of them happened at `end_at`."""
    delta = end_at - events[-1]["ts"]
    return [{**event, "ts": event["ts"] + delta} for event in events]


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(json.dumps(event).encode() for event in events) + b"\n"


def replay(svc: ServiceProcess, events: list[dict[str, Any]], as_ndjson: bool = True) -> dict[str, Any]:
    if as_ndjson:
        response = svc.client.post("/v1/events", content=ndjson(events),
                                   headers={"Content-Type": "application/x-ndjson"})
    else:
        response = svc.client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text
    return response.json()


def hung_call_cut(events: list[dict[str, Any]]) -> int:
    """Index of the hung call's model.call.error: the capture up to it has the call open."""
    return next(i for i, e in enumerate(events) if e["type"] == "model.call.error" and e.get("sessionKey") == HANG_KEY)


@pytest.fixture
def svc(service_factory) -> ServiceProcess:
    return service_factory({"stuck_session_warn_ms": CAPTURE_WARN_MS}, name="replay")


@pytest.mark.parametrize("as_ndjson", [True, False], ids=["ndjson", "json-array"])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem.removeprefix("openclaw-2026.9.6-gateway-"))
def test_every_line_of_a_real_capture_is_accepted(svc, capture, as_ndjson):
    events = load(capture)
    body = shifted(events, now_ms())
    result = replay(svc, body, as_ndjson)

    assert result["rejected"] == []
    assert result["duplicates"] == 0
    assert result["accepted"] + result["ignored"] == len(events)
    assert result["accepted"] > 0
    for session in svc.sessions():
        assert session["state"] == "idle", f"{session['sessionKey']} did not end idle"
        assert session["queueDepth"] == 0 and session["attention"] is None
        assert "activeWorkKind" not in session["activity"], f"{session['sessionKey']} kept an open marker"
    # the same body again (a forwarder retry): every line carries seq and ts, so all are duplicates
    again = replay(svc, body, as_ndjson)
    assert (again["accepted"], again["ignored"], again["duplicates"], again["rejected"]) == (0, 0, len(events), [])


def test_normal_turn_leaves_an_idle_session_with_its_usage(svc):
    events = load(NORMAL)
    replay(svc, shifted(events, now_ms()))
    session = svc.session("agent:main:main")
    assert session["state"] == "idle" and session["queueDepth"] == 0
    assert session["sessionId"] is not None
    assert session["generation"] >= 2  # processing, then idle
    assert session["usage"]["total"] > 0, "model.usage tokens are summed on the session"
    assert session["recentEvents"], "recent events are read back from the journal"
    last = [e for e in events if e.get("sessionKey") == "agent:main:main"][-1]
    assert session["recentEvents"][0]["type"] == last["type"]  # newest first
    assert session["recentEvents"][0]["seq"] == last["seq"]


def test_hung_model_call_is_flagged_stalled_when_replayed_up_to_the_hang(svc):
    events = load(HUNG)
    cut = hung_call_cut(events)
    # the capture up to the hung call's error, ending now: the call started ~110 s ago
    replay(svc, shifted(events[:cut], now_ms()))

    session = wait_until(lambda: (s := svc.session(HANG_KEY))["attention"] and s,
                         timeout=15, what=f"{HANG_KEY} flagged")
    attention = session["attention"]
    assert session["state"] == "processing"
    assert (attention["eventType"], attention["reason"], attention["classification"]) == (
        "session.stalled", "active_work_without_progress", "stalled_agent_run")
    assert attention["activeWorkKind"] == "model_call"
    assert attention["attentionAgeMs"] > CAPTURE_WARN_MS
    assert session["activity"]["lastProgressReason"] == "model_call:started"
    assert session["activity"]["lastProgressAgeMs"] > CAPTURE_WARN_MS
    assert recoveries(session) == [], "below the abort threshold a stalled run is observe-only"

    # the gateway's own verdicts are kept beside ours, never applied
    verdict = session["gatewayVerdict"]
    assert verdict["eventType"] == "session.stalled"
    assert verdict["reason"] == "active_work_without_progress"
    assert verdict["classification"] == "stalled_agent_run"
    assert verdict["activeWorkKind"] == "model_call"
    assert verdict["ageMs"] == 89040

    for probe in ("agent:main:probe1", "agent:main:probe2"):
        assert svc.session(probe)["attention"] is None, f"{probe} finished normally"
    stalled = [s["sessionKey"] for s in svc.sessions(attention="stalled")]
    assert stalled == [HANG_KEY]


def test_hung_call_verdict_clears_when_the_rest_of_the_capture_arrives(svc):
    events = load(HUNG)
    cut = hung_call_cut(events)
    delta = now_ms() - events[cut - 1]["ts"]  # the part before the error ends now
    events = [{**event, "ts": event["ts"] + delta} for event in events]
    replay(svc, events[:cut])
    wait_until(lambda: svc.session(HANG_KEY)["attention"], timeout=15, what=f"{HANG_KEY} flagged")

    # the timeout error, run.completed and idle (stamped a few seconds ahead: within the skew limit)
    result = replay(svc, events[cut:])
    assert result["rejected"] == []
    session = wait_until(lambda: (s := svc.session(HANG_KEY))["attention"] is None and s,
                         timeout=10, what=f"{HANG_KEY} cleared")
    assert session["state"] == "idle" and session["queueDepth"] == 0
    assert "activeWorkKind" not in session["activity"]
