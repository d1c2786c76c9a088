"""The monitor driven tick by tick with a fake clock (monitor.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from app.clock import ManualClock
from app.events import Event
from app.journal import NullJournal
from app.recovery import ObserveExecutor
from app.service import Service
from app.settings import Settings
from telemetry.record import Recorder

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000_000
S = 1_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CapturingRecorder(Recorder):
    """The telemetry contract, keeping what it is told (reports stamped with the fake time)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.reports: list[dict[str, Any]] = []
        self.requested: list[dict[str, Any]] = []
        self.completed: list[dict[str, Any]] = []
        self.evicted: list[tuple[str, int]] = []

    def attention_reported(self, payload):
        self.reports.append({**payload, "_at": self.clock.now})

    def recovery_requested(self, payload):
        self.requested.append(dict(payload))

    def recovery_completed(self, payload):
        self.completed.append(dict(payload))

    def sessions_evicted(self, reason, count):
        self.evicted.append((reason, count))


class Harness:
    """The core as the service builds it (app/service.py), on a manual clock, driven tick by tick."""

    def __init__(self, warn_s: int = 30, tick_s: int = 5, **config: int) -> None:
        self.clock = ManualClock(T0)
        self.recorder = CapturingRecorder(self.clock)
        if "abort_ms" in config:
            config["stuck_session_abort_ms"] = config.pop("abort_ms")
        settings = {"stuck_session_abort_ms": max(300 * S, 3 * warn_s * S), "scan_interval_ms": tick_s * S,
                    "gateway_silence_ms": 10**9, **config}
        self.service = Service(Settings(stuck_session_warn_ms=warn_s * S, **settings), clock=self.clock,
                               recorder=self.recorder, journal=NullJournal(), executor=ObserveExecutor())
        self.service.journal.open(self.service.store)  # nothing to restore: applies what is submitted
        self.store, self.monitor, self.coordinator = self.service.store, self.service.monitor, self.service.coordinator

    def post(self, type_: str, at_s: float = 0, **fields: Any) -> None:
        ts = T0 + int(at_s * S)
        event = msgspec.convert({"type": type_, "ts": ts, **fields}, Event)
        self.store.apply_event(event, max(ts, self.clock.now))

    async def tick_at(self, at_s: float, lag_ms: int = 0) -> None:
        self.clock.now = T0 + int(at_s * S)
        await self.monitor.tick(self.clock.now, lag_ms)
        await asyncio.sleep(0)  # let the coordinator's executor tasks finish
        await asyncio.sleep(0)

    async def run_until(self, end_s: int, step_s: int) -> None:
        for t in range(step_s, end_s + 1, step_s):
            await self.tick_at(t)

    def report_times(self, event_type: str | None = None) -> list[int]:
        return [
            (r["_at"] - T0) // S for r in self.recorder.reports
            if event_type is None or r["eventType"] == event_type
        ]

    def session(self, key: str = "s1"):
        found = self.store.find("default", key)
        assert found is not None
        return found


def harness(**kwargs: int) -> Harness:
    return Harness(**kwargs)


# -- backoff ---------------------------------------------------------------------------------------


async def test_backoff_with_upstream_30s_tick():
    h = harness(warn_s=30, tick_s=30)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(960, 30)
    assert h.report_times("session.stuck") == [60, 120, 240, 480, 960]


async def test_backoff_with_our_5s_tick():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(600, 5)
    assert h.report_times("session.stuck") == [35, 70, 140, 280, 560]
    # observe mode changes nothing, so each report asks again, and only reports do
    assert len(h.recorder.requested) == 5
    assert all(c["outcomeReason"] == "no_recovery_target" for c in h.recorder.completed)


async def test_long_running_has_its_own_backoff():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("run.started", 0, sessionKey="s1", runId="r1")
    for t in range(5, 300, 5):
        h.post("run.progress", t - 1, runId="r1", reason="model_call:stream_progress")
        await h.tick_at(t)
    assert h.report_times("session.long_running") == [35, 70, 140, 280]
    assert h.session().attention.reason == "active_work"
    assert not h.recorder.requested


async def test_attention_is_current_on_every_tick_even_when_suppressed():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(35, 5)
    await h.tick_at(45)  # suppressed
    attention = h.session().attention
    assert (attention.event_type, attention.age_ms, attention.since) == ("session.stuck", 45 * S, T0 + 35 * S)
    assert h.report_times() == [35]
    h.post("session.state", 46, sessionKey="s1", state="processing")
    await h.tick_at(50)
    assert h.session().attention is None  # no longer considered


async def test_state_change_resets_backoff():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(70, 5)
    h.post("session.progress", 71, sessionKey="s1", reason="reply")
    await h.run_until(110, 5)
    # after the reset the first report comes as soon as the session is considered again
    assert h.report_times("session.stuck") == [35, 70, 105]


# -- stalled reports -----------------------------------------------------------------------------


async def test_stalled_is_rate_limited_and_reset_by_a_state_change():
    h = harness(warn_s=30, tick_s=5, stalled_report_interval_ms=60 * S)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("model.call.started", 0, sessionKey="s1", provider="p", model="m")
    await h.run_until(95, 5)
    assert h.report_times("session.stalled") == [35, 95]
    h.post("session.progress", 96, sessionKey="s1")
    await h.run_until(130, 5)
    # 130 - 95 < 60, but the state change cleared the report time
    assert h.report_times("session.stalled") == [35, 95, 130]
    report = h.recorder.reports[-1]
    assert (report["reason"], report["activeWorkKind"], report["classification"]) == (
        "active_work_without_progress", "model_call", "stalled_agent_run")


# -- the seed scenario ------------------------------------------------------------------------------


async def test_orphaned_model_call_behind_queued_work_is_stuck_and_recovered():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("run.started", 0, sessionKey="s1", runId="r1")
    h.post("model.call.started", 1, sessionKey="s1", runId="r1", provider="p", model="m")
    h.post("session.state", 2, sessionKey="s1", state="idle")  # the run's owner ends, the call stays
    h.post("message.queued", 3, sessionKey="s1", source="telegram", queueDepth=1)
    await h.tick_at(30)
    assert h.session().attention is None  # progress 29 s old: not yet
    await h.tick_at(35)
    report = h.recorder.reports[-1]
    assert (report["eventType"], report["reason"], report["state"], report["ageMs"]) == (
        "session.stuck", "queued_work_without_active_run", "idle", 34 * S)  # the progress age
    request = h.recorder.requested[-1]
    assert request["expectedState"] == "idle" and request["allowActiveAbort"] is False
    assert request["activeWorkKind"] is None and request["stateGeneration"] == h.session().generation


async def test_idle_session_with_live_embedded_run_is_not_stuck():
    h = harness(warn_s=30, tick_s=5)
    h.post("embedded_run.started", 0, sessionKey="s1", workKey="w")
    h.post("model.call.started", 1, sessionKey="s1", provider="p", model="m")
    h.post("session.state", 2, sessionKey="s1", state="idle")
    h.post("message.queued", 3, sessionKey="s1", source="x", queueDepth=1)
    await h.run_until(60, 5)
    assert {r["eventType"] for r in h.recorder.reports} == {"session.stalled"}
    assert not h.recorder.requested


async def test_waiting_sessions_are_never_considered():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="waiting", queueDepth=3)
    await h.run_until(120, 5)
    assert not h.recorder.reports


# -- recovery gating -----------------------------------------------------------------------------------


async def test_late_tick_reports_but_requests_no_recovery():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.tick_at(35, lag_ms=1001)
    assert h.report_times() == [35] and not h.recorder.requested
    h.post("session.state", 36, sessionKey="s1", state="processing")
    await h.tick_at(71, lag_ms=1000)
    assert len(h.recorder.requested) == 1


async def test_silent_gateway_gets_verdicts_but_no_recovery():
    h = harness(warn_s=30, tick_s=5, gateway_silence_ms=20 * S)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(35, 5)
    assert h.recorder.reports[-1]["gatewaySilent"] is True
    assert not h.recorder.requested


async def test_warming_up_after_restore_requests_no_recovery():
    h = harness(warn_s=30, tick_s=5)
    h.monitor.warm_until = T0 + 40 * S
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(70, 5)
    assert [r["warmingUp"] for r in h.recorder.reports] == [True, False]
    assert len(h.recorder.requested) == 1


async def test_gateway_clock_five_minutes_behind_gets_no_false_verdict():
    h = harness(warn_s=30, tick_s=5)
    behind = 300 * S
    # events stamped in the gateway's clock, received now
    event = msgspec.convert({"type": "session.state", "ts": T0 - behind, "sessionKey": "s1", "state": "processing"}, Event)
    h.store.apply_event(event, T0)
    await h.tick_at(5)
    assert h.session().attention is None and not h.recorder.reports
    await h.tick_at(35)
    assert h.report_times() == [35]


# -- active abort (a), (b), (c) --------------------------------------------------------------------------


async def _abort_flags(h: Harness) -> list[bool]:
    return [r["allowActiveAbort"] for r in h.recorder.requested]


async def test_abort_a_embedded_run_at_the_abort_threshold():
    h = harness(warn_s=30, tick_s=5, abort_ms=90 * S, stalled_report_interval_ms=0)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("embedded_run.started", 0, sessionKey="s1", workKey="w")
    await h.tick_at(85)
    assert not h.recorder.requested  # between warn and abort: observe only
    await h.tick_at(90)
    request = h.recorder.requested[-1]
    assert (request["allowActiveAbort"], request["activeWorkKind"], request["ageMs"]) == (True, "embedded_run", 90 * S)


async def test_abort_b_blocked_tool_call_needs_both_ages():
    h = harness(warn_s=30, tick_s=5, abort_ms=90 * S, stalled_report_interval_ms=0)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("tool.execution.started", 0, sessionKey="s1", toolName="exec", toolCallId="c1")
    h.post("run.progress", 10, sessionKey="s1", reason="heartbeat")  # progress younger than the tool
    await h.tick_at(95)
    assert h.recorder.reports[-1]["reason"] == "blocked_tool_call"
    assert not h.recorder.requested  # tool 95 s, progress 85 s
    await h.tick_at(100)
    assert h.recorder.requested[-1]["activeWorkKind"] == "tool_call"
    assert h.recorder.requested[-1]["allowActiveAbort"] is True


async def test_abort_c_owned_model_call_only():
    h = harness(warn_s=30, tick_s=5, abort_ms=90 * S, stalled_report_interval_ms=0)
    h.post("session.state", 0, sessionKey="owned", state="processing")
    h.post("run.started", 0, sessionKey="owned", runId="r1")
    h.post("model.call.started", 0, sessionKey="owned", runId="r1", provider="p", model="m")
    h.post("session.state", 0, sessionKey="orphan", state="processing")
    h.post("model.call.started", 0, sessionKey="orphan", provider="p", model="m")
    await h.tick_at(85)
    assert not h.recorder.requested
    await h.tick_at(90)
    assert [(r["sessionKey"], r["allowActiveAbort"]) for r in h.recorder.requested] == [("owned", True)]


# -- eviction ----------------------------------------------------------------------------------------------


async def test_idle_sessions_are_evicted_after_the_ttl():
    h = harness(warn_s=30, tick_s=5, session_idle_ttl_ms=60 * S)
    h.post("message.queued", 0, sessionKey="old", source="x", queueDepth=0)
    h.post("message.queued", 30, sessionKey="young", source="x", queueDepth=0)
    h.post("session.state", 0, sessionKey="busy", state="processing")
    await h.tick_at(60)
    assert h.store.session_count == 3
    await h.tick_at(61)
    assert h.store.find("default", "old") is None
    assert h.store.find("default", "young") is not None and h.store.find("default", "busy") is not None
    assert h.recorder.evicted == [("ttl", 1)]


async def test_session_cap_evicts_least_recently_active_idle_first():
    h = harness(warn_s=30, tick_s=5, max_sessions=2)
    h.post("session.state", 0, sessionKey="busy-old", state="processing")
    h.post("message.queued", 1, sessionKey="idle-old", source="x", queueDepth=0)
    h.post("message.queued", 2, sessionKey="idle-new", source="x", queueDepth=0)
    await h.tick_at(3)
    assert h.store.find("default", "idle-old") is None
    assert h.store.session_count == 2
    assert h.recorder.evicted == [("cap", 1)]


async def test_run_loop_ticks_on_schedule_with_the_injected_clock():
    h = harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    ticks: list[int] = []

    async def after_tick() -> None:
        ticks.append(h.clock.now)
        if len(ticks) == 8:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await h.monitor.run(after_tick)
    assert ticks == [T0 + i * 5 * S for i in range(8)]
    assert h.report_times() == [35]


@pytest.mark.parametrize(("setting", "version", "expected"), [
    ("auto", "2026.9.6", "openclaw-2026.9"),
    ("auto", "2026.10.1", "openclaw-2026.9"),
    ("auto", "2027.1.0", "openclaw-2026.9"),
    ("auto", "2026.8.30", "seed"),
    ("auto", None, "seed"),
    ("auto", "nightly", "seed"),
    ("seed", "2026.9.6", "seed"),
    ("openclaw-2026.9", None, "openclaw-2026.9"),
])
def test_the_profile_of_a_gateway(setting, version, expected):
    from app.vocabulary import profile_for

    assert profile_for(setting, version) == expected


@pytest.mark.parametrize(("version", "at_40s"), [
    (None, ("session.stalled", "active_work_without_progress")),  # the seed's: stalled from warn
    ("2026.9.6", ("session.long_running", "active_model_call_without_progress")),
])
async def test_a_2026_9_gateway_gets_its_own_table(version, at_40s):
    """A hung model call an embedded run owns: under `auto`, a gateway reporting 2026.9.6 hears
    long_running until the abort threshold, then stalled; one reporting nothing, the seed's
    stalled from warn."""
    h = harness(warn_s=30, tick_s=5, abort_ms=90 * S, stalled_report_interval_ms=0)
    h.post("forwarder.keepalive", 0, **({"gatewayVersion": version} if version else {}))
    h.post("run.started", 0, sessionKey="s1", runId="r1")
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("embedded_run.started", 0, sessionKey="s1", workKey="s1")
    h.post("model.call.started", 0, sessionKey="s1", runId="r1", provider="p", model="m", callId="c1")
    await h.run_until(40, 5)
    assert (h.session().attention.event_type, h.session().attention.reason) == at_40s
    await h.run_until(95, 5)
    assert (h.session().attention.event_type, h.session().attention.reason) == (
        "session.stalled", "active_work_without_progress")
    assert h.monitor.profile_of(h.store.gateway_info("default")) == ("openclaw-2026.9" if version else "seed")


# -- the openclaw-2026.9 profile's monitor rules (README, "How it decides"; docs/design.md) ----------


def upstream_harness(**kwargs: int) -> Harness:
    h = Harness(**kwargs)
    h.post("forwarder.keepalive", 0, gatewayVersion="2026.9.6")
    return h


@pytest.mark.parametrize(("version", "reason", "queue_depth"), [
    (None, "queued_work_without_active_run", 1),
    ("2026.9.6", "stale_session_state", 0),
])
async def test_the_message_being_processed_is_not_backlog_in_2026_9(version, reason, queue_depth):
    """A chat dispatch held before any run starts: the gateway queues the message, then marks the
    session processing with it. 2026.9 counts only the work behind it (none: stale state)."""
    h = harness(warn_s=30, tick_s=5)
    if version:
        h.post("forwarder.keepalive", 0, gatewayVersion=version)
    h.post("message.queued", 0, sessionKey="s1", source="dispatch", queueDepth=1)
    h.post("session.state", 0, sessionKey="s1", state="processing", prevState="idle", queueDepth=1)
    await h.run_until(35, 5)
    report = h.recorder.reports[-1]
    assert (report["eventType"], report["reason"], report["queueDepth"]) == ("session.stuck", reason, queue_depth)
    assert h.recorder.requested[-1]["queueDepth"] == queue_depth
    # a second message queued behind it is backlog in both
    h.post("message.queued", 36, sessionKey="s1", source="dispatch", queueDepth=2)
    for t in range(40, 75, 5):
        await h.tick_at(t)
    assert (h.session().attention.reason, h.recorder.reports[-1]["queueDepth"]) == (
        "queued_work_without_active_run", queue_depth + 1)


async def test_2026_9_requests_recovery_on_every_eligible_tick_within_the_retry_interval():
    """The backoff throttles the report only; the request follows every tick the session is
    eligible, at most once per retry interval (min(30 s, warn))."""
    h = upstream_harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(300, 5)
    assert h.report_times("session.stuck") == [35, 70, 140, 280]
    assert [(r["requestedAt"] - T0) // S for r in h.recorder.requested] == list(range(35, 300, 30))


async def test_seed_requests_recovery_with_reports_only_and_never_twice_within_the_retry_interval():
    h = harness(warn_s=30, tick_s=5, recovery_retry_interval_ms=50 * S)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(300, 5)
    assert h.report_times("session.stuck") == [35, 70, 140, 280]
    # the report at 70 s comes 35 s after the request at 35 s: within the 50 s interval
    assert [(r["requestedAt"] - T0) // S for r in h.recorder.requested] == [35, 140, 280]


async def test_a_profile_switch_starts_the_backoff_afresh():
    h = upstream_harness(warn_s=30, tick_s=5)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    await h.run_until(50, 5)
    assert h.report_times("session.stuck") == [35]
    # the gateway is downgraded: its next keepalive reports an older version (no session event)
    h.post("forwarder.keepalive", 50, gatewayVersion="2026.8.1")
    for t in range(55, 80, 5):
        await h.tick_at(t)
    assert h.report_times("session.stuck") == [35, 55]  # not 70: the seed's memory starts empty
    assert h.session().attention.profile == "seed"
    assert h.recorder.reports[-1]["classifierProfile"] == "seed"
    assert h.recorder.reports[0]["classifierProfile"] == "openclaw-2026.9"


@pytest.mark.parametrize(("version", "considered"), [(None, False), ("2026.9.6", True)])
async def test_2026_9_counts_the_silence_of_owned_work_as_the_session_age(version, considered):
    """upstream's attention age is max(session age, owned work's progress age): a session whose
    state was touched recently, but whose model call has been silent past warn, is considered."""
    h = harness(warn_s=30, tick_s=5)
    if version:
        h.post("forwarder.keepalive", 0, gatewayVersion=version)
    h.post("session.state", 0, sessionKey="s1", state="processing")
    h.post("run.started", 0, sessionKey="s1", runId="r1")
    h.post("model.call.started", 0, sessionKey="s1", runId="r1", provider="p", model="m", callId="c1")
    h.post("message.queued", 20, sessionKey="s1", source="x", queueDepth=1)  # touches the session
    await h.tick_at(35)
    attention = h.session().attention
    assert (attention is not None) is considered
    if considered:
        assert (attention.event_type, attention.reason, attention.age_ms) == (
            "session.long_running", "active_model_call_without_progress", 35 * S)
