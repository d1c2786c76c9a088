"""Closing the loop (monitor.md): every applied recovery is verified by the gateway's own
evidence, the automatic attempts have a budget, and what they cannot fix goes to a person.
The monitor on a manual clock, with an executor that answers as a gateway would."""

from __future__ import annotations

import msgspec
import pytest

from app.clock import ManualClock
from app.journal import NullJournal
from app.outcomes import RecoveryOutcome, RecoveryRequest
from app.service import Service
from app.settings import Settings
from app.store import Session
from tests.unit.test_monitor import T0, CapturingRecorder, Harness, S

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class AnsweringGateway:
    """An executor (app/recovery.py's protocol) that answers every request with `outcome`."""

    def __init__(self, outcome: RecoveryOutcome) -> None:
        self.outcome = outcome
        self.requests: list[RecoveryRequest] = []

    async def execute(self, request: RecoveryRequest) -> RecoveryOutcome:
        self.requests.append(request)
        return self.outcome

    async def aclose(self) -> None:
        return None


class VerifyingRecorder(CapturingRecorder):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.verified: list[dict] = []

    def recovery_verified(self, payload):
        self.verified.append(dict(payload))


class LoopHarness(Harness):
    def __init__(self, outcome: RecoveryOutcome, **settings: int) -> None:  # noqa: D107 - as Harness
        self.clock = ManualClock(T0)
        self.recorder = VerifyingRecorder(self.clock)
        self.gateway = AnsweringGateway(outcome)
        config = {"stuck_session_warn_ms": 30 * S, "stuck_session_abort_ms": 300 * S, "scan_interval_ms": 5 * S,
                  "gateway_silence_ms": 10**9, "recovery_verify_ms": 60 * S, **settings}
        self.service = Service(Settings(**config), clock=self.clock, recorder=self.recorder, journal=NullJournal(),
                               executor=self.gateway)
        self.service.journal.open(self.service.store)
        self.store, self.monitor, self.coordinator = self.service.store, self.service.monitor, self.service.coordinator

    async def ticks(self, start_s: int, end_s: int) -> None:
        for t in range(start_s, end_s + 1, 5):
            await self.tick_at(t)

    def changes(self) -> list[str]:
        feed = self.service.changes
        return [c.event for c in feed.since(T0 * 1000, None)[0]]


RELEASED = RecoveryOutcome("released", "release_lane", released=1)
FAILED = RecoveryOutcome("failed", "none", "exception", error="HTTP 503")


async def test_a_recovery_the_gateway_never_confirms_is_ineffective():
    h = LoopHarness(RELEASED)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.ticks(5, 40)  # stuck at 35 s: released, the answer applied by 40 s
    session = h.session()
    assert session.state == "idle" and session.verifying is not None
    applied_at = session.verifying["appliedAt"]
    await h.ticks(45, 95)
    assert session.verifying is not None and h.recorder.verified == []  # still within its 60 s
    await h.ticks(100, 105)  # nothing from the gateway for 60 s: ineffective
    assert session.verifying is None and applied_at <= T0 + 40 * S
    (verified,) = h.recorder.verified
    assert (verified["result"], verified["origin"], verified["reason"]) == ("ineffective", "automatic",
                                                                           "stale_session_state")
    assert verified["at"] - verified["appliedAt"] >= 60 * S
    assert session.recoveries[-1]["kind"] == "verified"
    assert "recovery.ineffective" in h.changes()


async def test_an_event_from_the_gateway_after_the_recovery_verifies_it():
    h = LoopHarness(RELEASED)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.ticks(5, 40)
    applied_at = h.session().verifying["appliedAt"]
    # what this service wrote when it applied the outcome is no evidence; the gateway's idle is
    h.post("session.state", (applied_at - T0) / S + 2, sessionKey="s1", state="idle")
    await h.ticks(45, 50)
    (verified,) = h.recorder.verified
    assert verified["result"] == "verified"
    assert "recovery.verified" in h.changes()


async def test_the_attempt_budget_ends_automatic_recoveries_and_a_person_is_called():
    h = LoopHarness(FAILED, recovery_max_attempts=2, recovery_retry_interval_ms=30 * S)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.ticks(5, 400)
    assert len(h.gateway.requests) == 2  # the budget: two attempts that reached the executor
    session = h.session()
    assert session.needs_human["cause"] == "budget_spent"
    assert "session.needs_human" in h.changes()
    items, _, total = await h.service.queries.sessions_page(None, attention=None, state=None, gateway_id=None,
                                                            after=None, limit=10, needs_human=True)
    assert total == 1 and items[0]["needsHuman"]["cause"] == "budget_spent"
    # the session moves (the gateway says so): off the list, and recoveries may start again
    h.post("session.state", 401, sessionKey="s1", state="idle")
    assert session.needs_human is None


async def test_two_ineffective_recoveries_in_a_row_call_a_person():
    h = LoopHarness(RELEASED, recovery_max_attempts=10)
    for start in (0, 200):
        h.post("session.state", start, sessionKey="s1", state="processing")
        await h.ticks(start + 5, start + 150)
    session = h.session()
    assert [v["result"] for v in h.recorder.verified] == ["ineffective", "ineffective"]
    assert session.needs_human["cause"] == "ineffective_twice"


def test_the_loop_survives_a_checkpoint():
    session = Session("gw", "k", "k", None, "idle", 0, 3, T0)
    session.verifying = {"requestedAt": T0 - 5, "appliedAt": T0, "origin": "operator",
                         "reason": "stale_session_state", "evidenceAt": None}
    session.needs_human = {"cause": "budget_spent", "since": T0}
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(session.to_state()))  # as stored
    restored = Session.from_state(state)
    assert (restored.verifying, restored.needs_human) == (session.verifying, session.needs_human)
    assert restored.is_candidate()  # the monitor keeps it in sight, idle as it is
