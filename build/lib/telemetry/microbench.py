"""Micro-benchmark of the telemetry hot path (not a test; prints figures).

    python -m telemetry.microbench [--events 200000]

Feeds a realistic mix of accepted events (one normal turn of a real gateway: lanes, model
call, usage, run, messages, heartbeat) through ``Recorder.event_applied`` and
``events_counted`` (one call per 100-event request), and prints the cost per event beside its
anchor in the same run: one ``Counter.add`` of the OpenTelemetry SDK with a single reader.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter as Tally

from app.events import ContextSize, Event, Usage


def _mix() -> list[Event]:
    run = "1e3857ce-ffe1-4d9a-a0f8-25da90d6d36b"
    common = {"sessionKey": "agent:main:main", "sessionId": "dd7377d7-283a-4397-9387-e1a4ff666697"}
    return [
        Event(type="message.queued", source="cli", channel="http", queueDepth=1, **common),
        Event(type="queue.lane.enqueue", lane="session:agent:main:main", queueSize=1),
        Event(type="queue.lane.dequeue", lane="session:agent:main:main", queueSize=0, waitMs=1.0),
        Event(type="session.turn.created", agentId="main", channel="http", trigger="user", **common),
        Event(type="run.started", runId=run, provider="fake", model="fake-model", **common),
        Event(type="model.call.started", runId=run, provider="fake", model="fake-model", **common),
        Event(type="run.progress", runId=run, reason="model_call:stream_progress", **common),
        Event(
            type="model.call.completed", runId=run, provider="fake", model="fake-model", api="openai-completions",
            transport="auto", durationMs=212.5, requestPayloadBytes=48_211, responseStreamBytes=1_502,
            timeToFirstByteMs=95.0, **common,
        ),
        Event(type="run.completed", runId=run, outcome="completed", durationMs=3259, provider="fake", model="fake-model", **common),
        Event(
            type="model.usage", channel="http", agentId="main", provider="fake", model="fake-model",
            usage=Usage(input=10, output=6, cacheRead=0, cacheWrite=0, promptTokens=10, total=16),
            context=ContextSize(limit=128000, used=5200), costUsd=0.0012, **common,
        ),
        Event(type="message.processed", channel="http", outcome="completed", durationMs=3300, **common),
        Event(type="diagnostic.heartbeat", queued=0),
        Event(type="tool.execution.completed", toolName="read", toolSource="builtin", durationMs=12, **common),
        Event(type="session.progress", reason="reply", **common),
    ]


def run(events: int = 200_000) -> dict[str, float]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from telemetry.setup import build_recorder

    recorder = build_recorder(gateway_attribute=True, cardinality_limit=2048, env={})
    mix = _mix()
    batch = (mix * (100 // len(mix) + 1))[:100]
    counts = Tally(("gw-1", e.type, "accepted") for e in batch)
    rounds = max(1, events // len(batch))
    gc.collect()

    start = time.perf_counter()
    for _ in range(rounds):
        for event in batch:
            recorder.event_applied(event, "gw-1")
    applied = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(rounds):
        recorder.events_counted(counts)
    counted = time.perf_counter() - start

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    counter = provider.get_meter("anchor").create_counter("anchor")
    attrs = {"openclaw.gateway": "gw-1", "openclaw.lane": "session"}
    n_anchor = min(events, 100_000)
    start = time.perf_counter()
    for _ in range(n_anchor):
        counter.add(1, attrs)
    anchor = time.perf_counter() - start
    provider.shutdown()

    start = time.perf_counter()
    recorder.render_metrics()
    render = time.perf_counter() - start
    recorder.shutdown()

    n = rounds * len(batch)
    return {
        "event_applied_us_per_event": applied / n * 1e6,
        "events_counted_us_per_request_of_100": counted / rounds * 1e6,
        "telemetry_us_per_event": (applied + counted) / n * 1e6,
        "events_per_s_one_core": n / (applied + counted),
        "anchor_sdk_counter_add_us": anchor / n_anchor * 1e6,
        "render_metrics_ms": render * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    for name, value in run(args.events).items():
        unit = name.rsplit("_", 1)[-1] if name.endswith(("_us", "_ms", "_s")) else ""
        print(f"{name} {value:.3f} {unit}".rstrip())


if __name__ == "__main__":
    main()
