"""Agreement with the real gateway's own monitor (classifier.md, "Profiles"; docs/design.md).

One real `openclaw@2026.9.6` gateway with its own diagnostics on and its thresholds lowered by
its QA hook (abort 60 s, so warn 30 s; it judges every 30 s), and a service with the same
thresholds under the default profile, `auto` — which picks `openclaw-2026.9` from the version
the plugin reports. Two sessions go wrong at once:

- a CLI turn whose model call never answers (the fake model hangs): the gateway says
  long_running / active_model_call_without_progress, then stalled at the abort threshold;
- a chat message whose dispatch a test plugin holds (tests/support/hold_plugin): the session is
  processing with nothing running, and the gateway says stuck / stale_session_state.

Every verdict the gateway reports (type and reason at its `ts`) must be matched by ours at some
moment within [ts - 2 s, ts + one scan + 3 s], and ours never says stuck where the gateway did
not. Our verdicts never read theirs (the service stores them beside ours only).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_model import FakeModelServer
from tests.support.gateway_harness import (
    HOLD_PLUGIN_DIR,
    Gateway,
    IngestTap,
    Runtime,
    SessionWatcher,
)
from tests.support.gateway_stack import (
    INGEST_TOKEN,
    QA_ABORT_MS,
    plugin_config,
    wait_ready,
)
from tests.support.service_process import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

SCAN_MS = 500
WARN_MS = QA_ABORT_MS // 2  # the gateway's own warn under its QA hook
BEFORE_MS, AFTER_MS = 2_000, SCAN_MS + 3_000  # the agreement window around each of its verdicts
HOLD_MARKER = "e2e-hold-dispatch"
VERDICTS = ("session.long_running", "session.stalled", "session.stuck")


@dataclass
class Scenario:
    gateway: Gateway
    service: ServiceProcess
    tap: IngestTap
    watchers: dict[str, SessionWatcher]

    def theirs(self, key: str) -> list[dict[str, Any]]:
        """The gateway's own verdicts for a session, as its plugin forwarded them."""
        return [e for e in self.tap.events() if e["type"] in VERDICTS and e.get("sessionKey") == key]

    def context(self) -> str:
        return (f"\n--- service log ---\n{self.service.log_tail(30)}"
                f"\n--- gateway ---\n{self.gateway.log_tail(30)}")


@pytest.fixture(scope="module")
def scenario(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root: Path = tmp_path_factory.mktemp("agreement")
    release = root / "release-held-dispatch"
    model = FakeModelServer().start()
    tap = IngestTap().start()
    gateway = Gateway(
        runtime, root / "gateway", gateway_id="e2e-agree", model_base_url=model.base_url,
        plugin_config=plugin_config(tap, "e2e-agree", recovery=False),
        extra_env={"OPENCLAW_QA_PARENT_PID": str(os.getpid()),
                   "QA_DIAGNOSTIC_STUCK_SESSION_ABORT_MS": str(QA_ABORT_MS)},
        extra_plugins={HOLD_PLUGIN_DIR: {
            "enabled": True,
            "hooks": {"allowConversationAccess": True, "timeouts": {"before_dispatch": 600_000}},
            "config": {"marker": HOLD_MARKER, "releaseFile": str(release)},
        }},
    )
    service = ServiceProcess(
        root / "service-data",
        {"stuck_session_warn_ms": WARN_MS, "stuck_session_abort_ms": QA_ABORT_MS, "scan_interval_ms": SCAN_MS,
         "ingest_tokens": INGEST_TOKEN},  # the classifier profile is left at its default, auto
        log_dir=root / "logs", token=INGEST_TOKEN, name="service-auto", fast_monitor=False,
    )
    watchers: dict[str, SessionWatcher] = {}
    try:
        service.start()
        tap.upstream = service.url
        gateway.spawn()
        wait_ready(service, gateway)
        hung, held = f"agent:main:agree-hung-{uuid.uuid4().hex[:8]}", f"agent:main:agree-held-{uuid.uuid4().hex[:8]}"
        model.hang.set()
        gateway.start_turn(hung)
        sent = gateway.chat_send(held, f"please {HOLD_MARKER} this one")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        for key in (hung, held):
            watchers[key] = SessionWatcher(service.url, INGEST_TOKEN, key, "e2e-agree").start()
        yield Scenario(gateway, service, tap, watchers)
    finally:
        for watcher in watchers.values():
            watcher.stop()
        release.touch()  # the held dispatch ends, and the gateway can drain
        model.release_hung()
        gateway.stop()
        model.stop()
        tap.stop()
        service.stop()


def _key(scenario: Scenario, kind: str) -> str:
    return next(k for k in scenario.watchers if f"agree-{kind}-" in k)


def _wait_for_theirs(scenario: Scenario, key: str, wanted: list[str]) -> list[dict[str, Any]]:
    """Until the gateway has reported each wanted type, plus our window after the last one."""
    def reported() -> list[dict[str, Any]] | None:
        theirs = scenario.theirs(key)
        return theirs if all(any(v["type"] == t for v in theirs) for t in wanted) else None

    # its first 30 s tick past warn, the next past abort, forwarding, and a loaded machine's slack
    theirs = wait_until(reported, timeout=(QA_ABORT_MS + 2 * 30_000) / 1000 + 30, interval=0.5,
                        what=f"{key}: the gateway's own {wanted}{scenario.context()}")
    # our window after its last verdict (the gateways' clock is this machine's)
    time.sleep(max(0.0, (max(v["ts"] for v in theirs) + AFTER_MS) / 1000 - time.time()) + 0.5)
    return scenario.theirs(key)


def _unmatched(theirs: list[dict[str, Any]], pictures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Their verdicts that no picture of ours held (same type and reason) inside the window. A
    picture holds from when it was first seen until the next one was."""
    spans = [(p, p["at"], nxt["at"]) for p, nxt in zip(pictures, [*pictures[1:], {"at": 2**62}])]
    return [
        v for v in theirs
        if not any(p["ours"] == v["type"] and p["oursReason"] == v["reason"]
                   and start <= v["ts"] + AFTER_MS and end >= v["ts"] - BEFORE_MS
                   for p, start, end in spans)
    ]


def test_the_service_judges_the_real_gateway_by_its_own_profile(scenario: Scenario) -> None:
    gateways = {g["gatewayId"]: g for g in scenario.service.client.get("/v1/gateways").json()["items"]}
    assert (gateways["e2e-agree"]["gatewayVersion"], gateways["e2e-agree"]["profile"]) == (
        "2026.9.6", "openclaw-2026.9")


def test_hung_model_call_agrees_with_the_gateway(scenario: Scenario) -> None:
    key = _key(scenario, "hung")
    theirs = _wait_for_theirs(scenario, key, ["session.long_running", "session.stalled"])
    assert [(v["type"], v["reason"]) for v in theirs] == [
        ("session.long_running", "active_model_call_without_progress"),
        ("session.stalled", "active_work_without_progress")], theirs
    pictures = scenario.watchers[key].pictures()
    assert _unmatched(theirs, pictures) == [], (theirs, pictures)
    assert "session.stuck" not in {p["ours"] for p in pictures}, pictures


def test_held_dispatch_is_stuck_for_both(scenario: Scenario) -> None:
    key = _key(scenario, "held")
    theirs = _wait_for_theirs(scenario, key, ["session.stuck"])
    assert {(v["type"], v["reason"]) for v in theirs} == {("session.stuck", "stale_session_state")}, theirs
    pictures = scenario.watchers[key].pictures()
    assert _unmatched(theirs, pictures) == [], (theirs, pictures)
    # the message being processed is not backlog: never queued_work_without_active_run
    assert {(p["ours"], p["oursReason"]) for p in pictures if p["ours"]} == {
        ("session.stuck", "stale_session_state")}, pictures
