"""The notifier's pieces (app/notify.py): the setting, the signature, the Slack text, and what
happens to a change a target never takes (on a manual clock: the backoff waits for nothing)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket

import pytest

from app.changes import Change, ChangeFeed
from app.clock import ManualClock
from app.notify import MAX_ATTEMPTS, QUEUE, Notifier, parse_targets, sign, slack_body
from telemetry.record import Recorder

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Failures(Recorder):
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def notify_failed(self, reason: str) -> None:
        self.reasons.append(reason)


def test_the_setting_is_a_json_list_of_targets() -> None:
    assert parse_targets("") == []
    (target,) = parse_targets('[{"url": "https://hooks.example.com/x", "format": "slack", "events": ["gateway.silent"]}]')
    assert (target.format, target.events, target.secret) == ("slack", ["gateway.silent"], None)
    for bad, says in [('{"url": "https://x"}', "JSON list"), ('[{"url": "file:///etc/passwd"}]', "http(s)"),
                      ('[{"url": "https://x", "events": ["attention.reopened"]}]', "attention.reopened"),
                      ('[{"url": "https://x", "format": "html"}]', "JSON list"),
                      ('[{"url": "https://x", "colour": "red"}]', "JSON list")]:
        with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
            parse_targets(bad)


def test_the_signature_is_an_hmac_of_timestamp_dot_body() -> None:
    body = b'{"event":"gateway.silent"}'
    expected = hmac.new(b"s3cret", b"1796031492." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1796031492, body) == f"sha256={expected}"


def test_slack_text_for_each_kind_of_change() -> None:
    cleared = Change(7, "attention.cleared", "gw-1", T0, {
        "sessionKey": "agent:main:x", "previous": {"eventType": "session.stuck", "reason": "stale_session_state"}})
    assert slack_body(cleared, "")["text"] == "*No longer stuck* on gateway `gw-1` · session `agent:main:x`"
    completed = Change(8, "recovery.completed", "gw-1", T0, {
        "sessionKey": "agent:main:x", "status": "released", "outcomeReason": None, "reason": "stale_session_state"})
    assert slack_body(completed, "https://d.example")["text"] == (
        "*Recovery released* on gateway `gw-1` · session `agent:main:x` · reason `stale_session_state` · "
        "<https://d.example/ui/session?gatewayId=gw-1&sessionKey=agent%3Amain%3Ax|open>")
    silent = Change(9, "gateway.silent", "gw 2", T0, {})
    assert slack_body(silent, "https://d.example")["text"] == (
        "*Gateway silent* on gateway `gw 2` · <https://d.example/?gatewayId=gw+2|open>")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_target_that_never_answers_costs_retries_then_the_change_is_dropped() -> None:
    clock = ManualClock(T0)
    feed = ChangeFeed(clock)
    failures = Failures()
    (target,) = parse_targets(f'[{{"url": "http://127.0.0.1:{_closed_port()}/hook"}}]')
    notifier = Notifier(feed, [target], clock=clock, recorder=failures)
    notifier.start()
    try:
        feed.publish("gateway.silent", "gw-1", {})
        (queue,) = notifier.queues
        for _ in range(200):  # connection refused is immediate; the backoff waits on the manual clock
            await asyncio.sleep(0.01)
            if queue.dropped:
                break
        assert failures.reasons == ["connection"] * MAX_ATTEMPTS + ["gave_up"]
        assert (queue.delivered, queue.dropped, len(queue.pending)) == (0, 1, 0)
        assert clock.now > T0  # it did back off between the attempts
    finally:
        await notifier.aclose()


async def test_a_full_queue_drops_its_oldest_change_and_counts_it() -> None:
    clock = ManualClock(T0)
    feed = ChangeFeed(clock)
    failures = Failures()
    (target,) = parse_targets('[{"url": "http://127.0.0.1:9/hook"}]')
    notifier = Notifier(feed, [target], clock=clock, recorder=failures)  # not started: nothing is sent
    for n in range(QUEUE + 3):
        notifier.enqueue(feed.publish("gateway.back", f"gw-{n}", {}))
    (queue,) = notifier.queues
    assert len(queue.pending) == QUEUE and queue.pending[0].gateway == "gw-3"
    assert failures.reasons == ["queue_full"] * 3 and queue.dropped == 3
    await notifier.aclose()
