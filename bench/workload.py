"""The bench's events: the same mixed stream as bench/wrk_events.lua, for the Python clients.

Sessions advance through one realistic cycle each (queued -> processing -> model call -> tool
call -> progress -> idle), ACTIVE of them at a time, interleaved, over a pool of session keys
spread over GATEWAYS gateways. Every event has a unique eventId and seq so the dedupe window
never short-circuits.
"""

from __future__ import annotations

import time

ACTIVE = 64
GATEWAYS = 8

_STEPS = (
    ',"type":"message.queued","source":"telegram","channel":"telegram","queueDepth":1}',
    ',"type":"session.state","state":"processing","prevState":"idle","reason":"run_started","queueDepth":1}',
    ',"type":"model.call.started","provider":"anthropic","model":"claude-sonnet-4","api":"messages","transport":"http"}',
    ',"type":"model.call.completed","provider":"anthropic","model":"claude-sonnet-4","api":"messages",'
    '"transport":"http","durationMs":1834,"timeToFirstByteMs":412,"requestPayloadBytes":18211,"responseStreamBytes":5120}',
    ',"type":"tool.execution.started","toolName":"exec","toolCallId":"call-{cycle}","toolSource":"builtin"}',
    ',"type":"tool.execution.completed","toolName":"exec","toolCallId":"call-{cycle}","toolSource":"builtin",'
    '"durationMs":270,"outcome":"ok"}',
    ',"type":"run.progress","reason":"tool:exec:completed"}',
    ',"type":"session.state","state":"idle","prevState":"processing","reason":"run_completed","queueDepth":0}',
)
_WITH_RUN = frozenset({2, 3, 4, 5, 6})


def event_json(n: int, ts: int, prefix: str, sessions: int = 20_000, tid: int = 0) -> str:
    """The n-th event of the stream (JSON text)."""
    slot = n % ACTIVE
    rnd = n // ACTIVE
    step = rnd % 8
    cycle = rnd // 8
    idx = (cycle * ACTIVE + slot) % sessions
    head = (
        f'{{"eventId":"{prefix}-{tid}-{n}","seq":{n},"ts":{ts},"gatewayId":"gw-{idx % GATEWAYS}",'
        f'"sessionKey":"agent:main:t{tid}-s{idx}","sessionId":"sid-t{tid}-{idx}"'
    )
    if step in _WITH_RUN:
        head += f',"runId":"run-{tid}-{idx}-{cycle}"'
    tail = _STEPS[step]
    if step in (4, 5):
        tail = tail.replace("{cycle}", str(cycle))
    return head + tail


def body(start: int, count: int, prefix: str, sessions: int = 20_000, tid: int = 0) -> bytes:
    """One request body: a bare object for count == 1, else a JSON array."""
    ts = int(time.time()) * 1000
    if count == 1:
        return event_json(start, ts, prefix, sessions, tid).encode()
    return ("[" + ",".join(event_json(start + i, ts, prefix, sessions, tid) for i in range(count)) + "]").encode()
