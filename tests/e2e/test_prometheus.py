"""The service's /metrics scraped by a REAL Prometheus; the dashboard's queries and the rules run on it.

Spec: deploy.md ("Metric names in Prometheus", "Dashboard", "Alerts") and telemetry.md; issue 4
("A real Prometheus ... scraping /metrics") and issue 5 ("Every dashboard panel query is
executed against a real Prometheus that scraped the real service").

What runs, all on 127.0.0.1:
- the service, as a uvicorn subprocess (tests/support/service_process.py): warn 1 s, a scan every
  100 ms, gateway silence 2 s, idle TTL 1 s (so evictions happen), recovery mode `webhook`;
- a fake gateway webhook (stdlib HTTP server in a thread) that answers some recoveries
  `released` (released: 1) and the others HTTP 503 (-> `failed / none / exception`);
- a "forwarder" thread playing the live gateways' forwarders: a keepalive every 200 ms (with a
  queue length and a growing drop count) and fresh `run.progress` for the long-running sessions;
- Debian's `prometheus` (tests/support/prometheus_server.py), scraping /metrics every 1 s and evaluating
  deploy/rules/openclaw.rules.yml every 1 s.

The scenario runs twice with the same label sets: round 1 before Prometheus starts (its verdicts
polled until visible in GET /v1/attention), round 2 after Prometheus has scraped a few times,
so every counter and histogram INCREASES between stored samples and rate()/increase()/
histogram_quantile() panels get real, finite values (not just a series of zeros). Sessions are
made old with `ts` in the past, never by waiting; every expectation is polled with a deadline.

Grafana itself cannot run here (no Grafana binary, no docker engine): the dashboard JSON is
loaded, its template variables are substituted the way Grafana does for "All" (and for a
multi-value selection), and every panel target's PromQL is executed through Prometheus' HTTP API.
That proves the queries parse and return data; it does not render panels.

If Prometheus is not installed the module is skipped and says so (.ci/run installs Debian's
`prometheus` package).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.prometheus_server import (
    PrometheusServer,
    PromQLError,
    prometheus_binary,
)
from tests.support.service_process import (
    REPO,
    FakeGatewayWebhook,
    Reply,
    ServiceProcess,
    keepalive,
    now_ms,
    post_events,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        prometheus_binary() is None,
        reason="prometheus not installed (Debian's `prometheus` package; .ci/run installs it)",
    ),
]

RULES = REPO / "deploy" / "rules" / "openclaw.rules.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "openclaw-sessions.json"

WARN_MS = 1000
SILENCE_MS = 2000
LIVE_GATEWAYS = ("gw-a", "gw-b")
SILENT_GATEWAY = "gw-silent"
# Which of its two stuck sessions each gateway's webhook releases; the other one fails (HTTP 503).
RELEASED_SESSION = {"gw-a": "seed", "gw-b": "stuck"}
LANE_X = "session:agent:main:x"  # the brief's lane: must become openclaw_lane="session"
OLD = 5000  # ms in the past: older than warn, so sessions are judged on the next scan

# telemetry.md, "Histogram buckets"
JS_DEFAULT = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)  # upstream's
AGE_BUCKETS = JS_DEFAULT + (30e3, 60e3, 120e3, 300e3, 600e3, 1.8e6, 3.6e6, 7.2e6, 21.6e6, 86.4e6)
DURATION_BUCKETS = JS_DEFAULT + (30e3, 60e3, 120e3, 300e3, 600e3, 1.8e6, 3.6e6)
QUEUE_DEPTH_BUCKETS = JS_DEFAULT
SCAN_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

# The OTLP -> Prometheus translation of every instrument of telemetry.md (deploy.md's rule: dots
# become underscores, counters get _total, a unit of ms adds _milliseconds, `1` and `{...}` add
# nothing, By adds _bytes unless the name already ends with it). All of them are fed below.
COUNTERS = (
    "openclaw_session_state_total", "openclaw_session_stuck_total", "openclaw_session_turn_created_total",
    "openclaw_session_recovery_requested_total", "openclaw_session_recovery_completed_total",
    "openclaw_queue_lane_enqueue_total", "openclaw_queue_lane_dequeue_total", "openclaw_run_attempt_total",
    "openclaw_tokens_total", "openclaw_cost_usd_total", "openclaw_model_failover_total",
    "openclaw_tool_execution_blocked_total", "openclaw_tool_loop_total", "openclaw_webhook_received_total",
    "openclaw_webhook_error_total", "openclaw_message_queued_total", "openclaw_message_received_total",
    "openclaw_message_processed_total", "openclaw_message_dispatch_started_total",
    "openclaw_message_dispatch_completed_total", "openclaw_message_delivery_started_total",
    "openclaw_monitor_events_total", "openclaw_monitor_sessions_evicted_total",
    "openclaw_monitor_forwarder_dropped_total", "openclaw_monitor_clock_clamped_total",
    "openclaw_monitor_recovery_released_items_total",
)
HISTOGRAMS = (
    "openclaw_session_stuck_age_ms_milliseconds", "openclaw_session_recovery_age_ms_milliseconds",
    "openclaw_queue_depth", "openclaw_queue_wait_ms_milliseconds", "openclaw_context_tokens",
    "openclaw_run_duration_ms_milliseconds", "openclaw_model_call_duration_ms_milliseconds",
    "openclaw_model_call_request_bytes", "openclaw_model_call_response_bytes",
    "openclaw_model_call_time_to_first_byte_ms_milliseconds", "openclaw_tool_execution_duration_ms_milliseconds",
    "openclaw_webhook_duration_ms_milliseconds", "openclaw_message_duration_ms_milliseconds",
    "openclaw_message_dispatch_duration_ms_milliseconds", "openclaw_message_delivery_duration_ms_milliseconds",
    "openclaw_monitor_scan_duration_ms_milliseconds", "openclaw_monitor_scan_lag_ms_milliseconds",
)
GAUGES = (
    "openclaw_monitor_sessions", "openclaw_monitor_gateways", "openclaw_monitor_gateway_clock_skew_ms_milliseconds",
    "openclaw_monitor_forwarder_queued", "openclaw_monitor_attention_oldest_age_ms_milliseconds",
)
# telemetry.md: the service's own instruments WITHOUT openclaw.gateway. Everything else is
# produced from a gateway's events (or is a per-gateway monitor gauge/counter) and carries it.
NOT_GATEWAY_SCOPED = (
    "openclaw_monitor_scan_duration_ms_milliseconds", "openclaw_monitor_scan_lag_ms_milliseconds",
    "openclaw_monitor_sessions_evicted_total", "openclaw_monitor_export_failures_total",
    "openclaw_monitor_telemetry_overflow_total",
)
# Field names that identify one session/run/call/message (telemetry.md, "Attribute hygiene").
ID_NAMES = ("sessionkey", "sessionid", "runid", "callid", "toolcallid", "chatid", "messageid", "eventid",
            "workkey")


# ---------------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------------


class Forwarder:
    """The live gateways' forwarders: keepalives every `period` s, fresh progress for long runs.

    Keeps gw-a and gw-b from going silent (the silence threshold is 2 s), reports a forwarder
    queue and a cumulative drop count that grows (so openclaw.monitor.forwarder.dropped
    increases), and keeps the long-running sessions' progress clock younger than warn.
    """

    def __init__(self, url: str, gateways: tuple[str, ...], period: float = 0.2) -> None:
        self.gateways = gateways
        self.period = period
        self.client = httpx.Client(base_url=url, timeout=5.0)
        self.progress: list[tuple[str, str, str]] = []  # (gateway, sessionKey, runId)
        self.errors: list[str] = []
        self.posts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def keep_progressing(self, gateway: str, key: str, run: str) -> None:
        with self._lock:
            self.progress.append((gateway, key, run))

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.period):
            t = now_ms()
            dropped = int((time.monotonic() - started) * 2)
            events: list[dict[str, Any]] = [
                {"type": "forwarder.keepalive", "gatewayId": gw, "ts": t, "queued": 3, "dropped": dropped}
                for gw in self.gateways
            ]
            with self._lock:
                events += [
                    {"type": "run.progress", "gatewayId": gw, "sessionKey": key, "runId": run, "reason": "reply",
                     "ts": t}
                    for gw, key, run in self.progress
                ]
            try:
                response = self.client.post("/v1/events", json=events)
                self.posts += 1
                if response.status_code != 202:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


@dataclass
class Scenario:
    """Builds and sends each round; remembers every id sent (none may reach a metric label)."""

    svc: ServiceProcess
    webhook: FakeGatewayWebhook
    forwarder: Forwarder
    ids: set[str] = field(default_factory=set)
    session_keys: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def names(self, gw: str, name: str, r: int) -> tuple[str, str, str]:
        key = f"agent:main:e2e-{name}-{gw}-r{r}"
        sid, run = f"sid-e2e-{name}-{gw}-r{r}", f"run-e2e-{name}-{gw}-r{r}"
        self.ids.update((key, sid, run))
        self.session_keys[(gw, name, r)] = key
        return key, sid, run

    def id(self, value: str) -> str:
        self.ids.add(value)
        return value

    def gateway_batch(self, gw: str, r: int) -> list[dict[str, Any]]:
        t = now_ms()
        g = {"gatewayId": gw}
        events: list[dict[str, Any]] = [keepalive(gw)]  # stamped now: the gateway's clock is right

        # stuck: processing, no activity at all, older than warn (classifier row 7)
        key, sid, _ = self.names(gw, "stuck", r)
        events.append({**g, "type": "session.state", "sessionKey": key, "sessionId": sid, "state": "processing",
                       "reason": "run_started", "ts": t - OLD})

        # stuck, the seed case (OpenClaw 286964c): an orphaned model call on an idle session with
        # queued work (classifier row 1)
        key, sid, run = self.names(gw, "seed", r)
        events += [
            {**g, "type": "session.state", "sessionKey": key, "sessionId": sid, "state": "processing", "ts": t - OLD},
            {**g, "type": "model.call.started", "sessionKey": key, "sessionId": sid, "runId": run,
             "provider": "openai", "model": "gpt-5", "ts": t - OLD},
            {**g, "type": "session.state", "sessionKey": key, "state": "idle", "queueDepth": 0, "ts": t - OLD + 1000},
            {**g, "type": "message.queued", "sessionKey": key, "source": "telegram", "channel": "telegram",
             "ts": t - OLD + 2000},
        ]

        # stalled: processing with a model call that went silent (row 4)
        key, sid, run = self.names(gw, "stalled", r)
        events += [
            {**g, "type": "session.state", "sessionKey": key, "sessionId": sid, "state": "processing", "ts": t - OLD},
            {**g, "type": "model.call.started", "sessionKey": key, "runId": run, "provider": "anthropic",
             "model": "claude-opus", "ts": t - OLD},
        ]

        # stalled: a blocked tool call (row 2)
        key, sid, run = self.names(gw, "tool", r)
        events += [
            {**g, "type": "session.state", "sessionKey": key, "sessionId": sid, "state": "processing", "ts": t - OLD},
            {**g, "type": "tool.execution.started", "sessionKey": key, "runId": run, "toolName": "exec",
             "toolCallId": self.id(f"tc-e2e-blocked-{gw}-r{r}"), "ts": t - OLD},
        ]

        # long-running: processing for longer than warn, a run owner, fresh run.progress (row 5);
        # the forwarder keeps the progress fresh from now on
        key, sid, run = self.names(gw, "long", r)
        events += [
            {**g, "type": "session.state", "sessionKey": key, "sessionId": sid, "state": "processing", "ts": t - OLD},
            {**g, "type": "run.started", "sessionKey": key, "sessionId": sid, "runId": run, "ts": t - OLD},
            {**g, "type": "run.progress", "sessionKey": key, "runId": run, "reason": "reply", "ts": t},
        ]
        self.forwarder.keep_progressing(gw, key, run)

        # a normal turn, end to end, plus every metrics-only event type
        key, sid, run = self.names(gw, "turn", r)
        ids = {"sessionKey": key, "sessionId": sid}
        call1, call2 = self.id(f"call-e2e-1-{gw}-r{r}"), self.id(f"call-e2e-2-{gw}-r{r}")
        tc1, tc2, tc3 = (self.id(f"tc-e2e-{n}-{gw}-r{r}") for n in (1, 2, 3))
        turn = t - 3000
        lane = f"session:{key}"
        events += [
            {**g, "type": "webhook.received", "channel": "telegram", "updateType": "message", "ts": turn},
            {**g, "type": "webhook.processed", "channel": "telegram", "updateType": "message", "durationMs": 12.5,
             "ts": turn},
            {**g, "type": "webhook.error", "channel": "telegram", "updateType": "callback_query", "ts": turn},
            {**g, "type": "message.received", "channel": "telegram", "source": "telegram", **ids, "ts": turn},
            {**g, "type": "message.queued", "source": "telegram", "channel": "telegram", "queueDepth": 1, **ids,
             "ts": turn},
            {**g, "type": "session.turn.created", "agentId": "main", "channel": "telegram", "trigger": "user", **ids,
             "ts": turn},
            {**g, "type": "queue.lane.enqueue", "lane": lane, "queueSize": 1, "ts": turn},
            {**g, "type": "queue.lane.enqueue", "lane": LANE_X, "queueSize": 2, "ts": turn},
            {**g, "type": "queue.lane.dequeue", "lane": lane, "queueSize": 0, "waitMs": 40.0, "ts": turn + 40},
            {**g, "type": "queue.lane.dequeue", "lane": LANE_X, "queueSize": 1, "waitMs": 1500.0, "ts": turn + 40},
            {**g, "type": "queue.lane.enqueue", "lane": "main", "queueSize": 1, "ts": turn + 41},
            {**g, "type": "queue.lane.dequeue", "lane": "main", "queueSize": 0, "waitMs": 3.0, "ts": turn + 44},
            {**g, "type": "diagnostic.heartbeat", "queued": 3, "ts": turn + 50},
            {**g, "type": "session.state", **ids, "state": "processing", "ts": turn + 100},
            {**g, "type": "run.started", **ids, "runId": run, "ts": turn + 100},
            {**g, "type": "run.attempt", **ids, "runId": run, "attempt": 1, "ts": turn + 100},
            {**g, "type": "message.dispatch.started", "channel": "telegram", "source": "reply", **ids,
             "ts": turn + 100},
            {**g, "type": "model.call.started", **ids, "runId": run, "callId": call1, "provider": "openai",
             "model": "gpt-5", "ts": turn + 200},
            {**g, "type": "model.call.completed", **ids, "runId": run, "callId": call1, "provider": "openai",
             "model": "gpt-5", "api": "openai-completions", "transport": "sse", "durationMs": 1800.0,
             "requestPayloadBytes": 50531, "responseStreamBytes": 497, "timeToFirstByteMs": 202.0, "ts": turn + 2000},
            {**g, "type": "tool.execution.started", **ids, "runId": run, "toolName": "exec", "toolCallId": tc1,
             "ts": turn + 2010},
            {**g, "type": "tool.execution.completed", **ids, "runId": run, "toolName": "exec", "toolCallId": tc1,
             "toolSource": "builtin", "durationMs": 35.0, "ts": turn + 2045},
            {**g, "type": "tool.execution.started", **ids, "runId": run, "toolName": "read", "toolCallId": tc2,
             "ts": turn + 2050},
            {**g, "type": "tool.execution.error", **ids, "runId": run, "toolName": "read", "toolCallId": tc2,
             "toolSource": "builtin", "errorCategory": "EACCES", "durationMs": 4.0, "ts": turn + 2054},
            {**g, "type": "tool.execution.blocked", **ids, "runId": run, "toolName": "exec", "toolCallId": tc3,
             "toolSource": "builtin", "ts": turn + 2060},
            {**g, "type": "tool.loop", **ids, "toolName": "exec", "ts": turn + 2060},
            {**g, "type": "model.call.started", **ids, "runId": run, "callId": call2, "provider": "openai",
             "model": "gpt-5", "ts": turn + 2100},
            {**g, "type": "model.call.error", **ids, "runId": run, "callId": call2, "provider": "openai",
             "model": "gpt-5", "api": "openai-completions", "transport": "sse", "errorCategory": "TimeoutError",
             "failureKind": "timeout", "durationMs": 450.0, "ts": turn + 2550},
            {**g, "type": "model.failover", **ids, "provider": "openai", "model": "gpt-5",
             "errorCategory": "TimeoutError", "failureKind": "timeout", "ts": turn + 2550},
            {**g, "type": "model.usage", **ids, "channel": "telegram", "agentId": "main", "provider": "openai",
             "model": "gpt-5", "usage": {"input": 1000, "output": 200, "cacheRead": 50, "total": 1250},
             "context": {"limit": 128000, "used": 9000}, "costUsd": 0.02, "ts": turn + 2560},
            {**g, "type": "run.completed", **ids, "runId": run, "outcome": "completed", "provider": "openai",
             "model": "gpt-5", "channel": "telegram", "durationMs": 2470.0, "ts": turn + 2570},
            {**g, "type": "message.dispatch.completed", "channel": "telegram", "outcome": "completed",
             "durationMs": 120.0, **ids, "ts": turn + 2600},
            {**g, "type": "message.delivery.started", "channel": "telegram", "deliveryKind": "final", **ids,
             "ts": turn + 2600},
            {**g, "type": "message.delivery.completed", "channel": "telegram", "deliveryKind": "final",
             "durationMs": 80.0, **ids, "ts": turn + 2680},
            {**g, "type": "message.delivery.error", "channel": "telegram", "deliveryKind": "final",
             "errorCategory": "HttpError", "durationMs": 15.0, **ids, "ts": turn + 2680},
            {**g, "type": "message.processed", "channel": "telegram", "outcome": "completed", "durationMs": 2700.0,
             **ids, "ts": turn + 2700},
            {**g, "type": "session.state", **ids, "state": "idle", "queueDepth": 0, "ts": turn + 2700},
        ]

        # a duplicate, an ignored type, a clamped clock
        dup = self.id(f"evt-e2e-dup-{gw}-r{r}")
        events += [
            {**g, "type": "webhook.received", "eventId": dup, "channel": "telegram", "updateType": "message", "ts": t},
            {**g, "type": "webhook.received", "eventId": dup, "channel": "telegram", "updateType": "message", "ts": t},
            {**g, "type": "gateway.brand_new.kind", "ts": t},
            {**g, "type": "webhook.received", "channel": "telegram", "updateType": "message", "ts": t + 600_000},
        ]
        # rejected: a bad state, a session-scoped event without ids, an event without a type
        bad_key = self.id(f"agent:main:e2e-bad-{gw}-r{r}")
        events += [
            {**g, "type": "session.state", "sessionKey": bad_key, "state": "exploded", "ts": t},
            {**g, "type": "tool.execution.started", "toolName": "exec", "ts": t},
            {**g, "ts": t},
        ]
        return events

    def send_round(self, r: int) -> None:
        for gw in LIVE_GATEWAYS:
            key = self.session_keys.get((gw, RELEASED_SESSION[gw], r)) or self.names(gw, RELEASED_SESSION[gw], r)[0]
            self.webhook.script[key] = Reply.outcome("released", "release_lane", released=1)
            body = post_events(self.svc.client, self.gateway_batch(gw, r))
            assert len(body["rejected"]) == 3 and body["duplicates"] == 1 and body["ignored"] == 1, body

    def send_silent_gateway(self) -> None:
        key = self.id("agent:main:e2e-quiet")
        post_events(self.svc.client, [
            keepalive(SILENT_GATEWAY),
            {"type": "session.state", "gatewayId": SILENT_GATEWAY, "sessionKey": key, "state": "idle", "ts": now_ms()},
        ])


def metrics_samples(svc: ServiceProcess) -> list[tuple[str, dict[str, str], float]]:
    text = svc.client.get("/metrics").text
    return [(s.name, dict(s.labels), s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def metric_sum(svc: ServiceProcess, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in metrics_samples(svc) if n == name and all(lab.get(k) == x for k, x in labels.items()))


def attention_pairs(svc: ServiceProcess) -> set[tuple[str, str]]:
    summary = svc.client.get("/v1/attention").json()
    return {(row["eventType"], row["reason"]) for row in summary["byReason"]}


EXPECTED_ATTENTION = {
    ("session.stuck", "stale_session_state"),
    ("session.stuck", "queued_work_without_active_run"),
    ("session.stalled", "active_work_without_progress"),
    ("session.stalled", "blocked_tool_call"),
    ("session.long_running", "active_work"),
}


@dataclass
class Stack:
    svc: ServiceProcess
    prom: PrometheusServer
    webhook: FakeGatewayWebhook
    forwarder: Forwarder
    scenario: Scenario
    data_at: float  # time.time() once Prometheus holds round 2

    def wait_query(self, expr: str, ok: Callable[[list[dict[str, Any]]], bool] = bool, *,
                   timeout: float = 15.0, what: str | None = None) -> list[dict[str, Any]]:
        """Poll an instant query until `ok(result)`; fail with the query and its last result."""
        last: list[dict[str, Any]] = []

        def check() -> bool:
            nonlocal last
            last = self.prom.query(expr)
            return ok(last)

        try:
            wait_until(check, timeout=timeout, interval=0.25, what=what or expr)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nquery: {expr}\nlast result: {json.dumps(last)[:1500]}") from None
        return last


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("prometheus-e2e")
    with contextlib.ExitStack() as cleanup:  # stops, in reverse: prometheus, forwarder, service, webhook
        webhook = FakeGatewayWebhook(default=Reply(503, {"error": "lane busy"})).start()
        cleanup.callback(webhook.stop)
        svc = ServiceProcess(root / "data", {
            "stuck_session_warn_ms": WARN_MS,
            "scan_interval_ms": 100,
            "gateway_silence_ms": SILENCE_MS,
            "session_idle_ttl_ms": 1000,
            "recovery_mode": "webhook",
            "recovery_webhook_url": webhook.url_template,
            "recovery_timeout_ms": 2000,
        }, log_dir=root, name="service")
        cleanup.callback(svc.stop)
        prom = PrometheusServer(root / "prometheus", targets=[], rule_files=[RULES])
        cleanup.callback(prom.stop)
        try:
            svc.start()
            forwarder = Forwarder(svc.url, LIVE_GATEWAYS).start()
            cleanup.callback(forwarder.stop)
            scenario = Scenario(svc, webhook, forwarder)
            bring_up(svc, prom, scenario)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- service log ---\n{svc.log_tail()}\n"
                                 f"--- prometheus log ---\n{prom.log_tail()}") from None
        yield Stack(svc, prom, webhook, forwarder, scenario, time.time())


def bring_up(svc: ServiceProcess, prom: PrometheusServer, scenario: Scenario) -> None:
    # round 1, then poll the service until every verdict and both recovery outcomes show
    scenario.send_silent_gateway()
    scenario.send_round(1)
    wait_until(lambda: EXPECTED_ATTENTION <= attention_pairs(svc), timeout=15,
               what=f"round 1 verdicts {sorted(EXPECTED_ATTENTION)} in GET /v1/attention")
    wait_until(lambda: metric_sum(svc, "openclaw_session_recovery_completed_total", openclaw_status="released") >= 2
               and metric_sum(svc, "openclaw_session_recovery_completed_total", openclaw_status="failed") >= 2,
               timeout=15, what="round 1 recoveries completed released and failed")
    wait_until(lambda: any(g["gatewayId"] == SILENT_GATEWAY and g["silent"]
                           for g in svc.client.get("/v1/gateways").json()["items"]),
               timeout=15, what=f"{SILENT_GATEWAY} silent")

    # a real Prometheus scraping /metrics every second, with the repo's rules
    prom.scrape_targets = [f"127.0.0.1:{svc.port}"]
    prom.start()
    prom.wait_scrapes(3)

    # round 2: the same label sets again, so counters increase between stored samples
    scenario.send_round(2)
    for gw in LIVE_GATEWAYS:
        failing = "seed" if RELEASED_SESSION[gw] == "stuck" else "stuck"
        key = scenario.session_keys[(gw, failing, 2)]
        wait_until(lambda: any(e.get("kind") == "completed" and e.get("status") == "failed"
                               for e in svc.session(key, gw)["recoveries"]),
                   timeout=15, what=f"round 2 failed recovery of {key}")
    wait_until(lambda: metric_sum(svc, "openclaw_session_recovery_completed_total", openclaw_status="released") >= 4,
               timeout=15, what="round 2 releases completed")
    wait_until(lambda: metric_sum(svc, "openclaw_monitor_sessions_evicted_total") > 0, timeout=15,
               what="an idle session evicted (TTL)")
    # ...and until Prometheus holds it
    stored = {
        'sum(openclaw_session_recovery_completed_total{openclaw_status="released"})': 4,
        "sum(openclaw_model_call_duration_ms_milliseconds_count)": 8,
        "sum(openclaw_session_turn_created_total)": 4,
        "sum(openclaw_monitor_sessions_evicted_total)": 1,
    }
    for expr, at_least in stored.items():
        wait_until(lambda: (prom.value(expr) or 0) >= at_least, timeout=15, interval=0.25,
                   what=f"Prometheus: {expr} >= {at_least}")
    prom.wait_scrapes(6)


# ---------------------------------------------------------------------------------------------
# Names and labels
# ---------------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_service_and_stores_openclaw_series(stack: Stack) -> None:
    targets = [t for t in stack.prom.targets() if t["labels"]["job"] == "openclaw-diagnostics"]
    assert len(targets) == 1 and targets[0]["health"] == "up", targets
    assert targets[0]["scrapeUrl"] == f"{stack.svc.url}/metrics"
    assert targets[0]["lastError"] == ""
    names = stack.prom.label_values("__name__")
    assert "openclaw_session_stuck_total" in names
    assert stack.prom.value('up{job="openclaw-diagnostics"}') == 1.0


def test_every_translated_instrument_name_of_the_spec_is_in_prometheus(stack: Stack) -> None:
    names = set(stack.prom.label_values("__name__"))
    expected = set(COUNTERS) | set(GAUGES)
    for base in HISTOGRAMS:
        expected |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    missing = sorted(expected - names)
    assert not missing, f"missing in Prometheus: {missing}"
    ours = {n for n in names if n.startswith("openclaw_")}
    # export failures / telemetry overflow are spec'd too but have no points in this run
    known = expected | {"openclaw_monitor_export_failures_total", "openclaw_monitor_telemetry_overflow_total"}
    unexpected = sorted(ours - known)
    assert not unexpected, f"series under names the spec does not list: {unexpected}"


def series(stack: Stack, selector: str) -> list[dict[str, str]]:
    return stack.prom.series(selector)


def has_series(stack: Stack, selector: str) -> list[dict[str, str]]:
    found = series(stack, selector)
    assert found, f"no series for {selector}"
    return found


def test_session_contract_series_and_labels(stack: Stack) -> None:
    # stuck: counter by state (processing: no activity; idle: the seed case), with the age histogram
    for state in ("processing", "idle"):
        for gw in LIVE_GATEWAYS:
            has_series(stack, f'openclaw_session_stuck_total{{openclaw_state="{state}", openclaw_gateway="{gw}"}}')
            has_series(stack, f'openclaw_session_stuck_age_ms_milliseconds_bucket{{openclaw_state="{state}", '
                              f'openclaw_gateway="{gw}", le="+Inf"}}')
    assert stack.prom.value("sum(openclaw_session_stuck_total)") >= 8  # 2 stuck per gateway per round

    # state transitions, including the one a released recovery records
    for state in ("processing", "idle"):
        has_series(stack, f'openclaw_session_state_total{{openclaw_state="{state}"}}')
    has_series(stack, 'openclaw_session_state_total{openclaw_state="idle", openclaw_reason="stuck_recovery:released"}')

    # recovery requested (stuck -> `recover`, allowActiveAbort false) and completed, both outcomes
    for labels in series(stack, "openclaw_session_recovery_requested_total"):
        assert labels.get("openclaw_action") == "recover", labels
        assert labels.get("openclaw_state") in ("processing", "idle"), labels
        assert labels.get("openclaw_reason") in ("stale_session_state", "queued_work_without_active_run"), labels
    has_series(stack, 'openclaw_session_recovery_requested_total{openclaw_action="recover"}')
    released = has_series(stack, 'openclaw_session_recovery_completed_total{openclaw_status="released"}')
    assert {s["openclaw_action"] for s in released} == {"release_lane"}, released
    assert not any("openclaw_released" in s for s in series(stack, "openclaw_session_recovery_completed_total"))
    items = has_series(stack, 'openclaw_monitor_recovery_released_items_total{openclaw_status="released"}')
    assert {s["openclaw_action"] for s in items} == {"release_lane"}, items
    assert stack.prom.value('sum(openclaw_monitor_recovery_released_items_total{openclaw_status="released"})') > 0
    failed = has_series(stack, 'openclaw_session_recovery_completed_total{openclaw_status="failed"}')
    assert {(s["openclaw_action"], s["openclaw_reason"]) for s in failed} == {("none", "exception")}, failed
    has_series(stack, 'openclaw_session_recovery_age_ms_milliseconds_bucket{openclaw_status="released", le="+Inf"}')
    has_series(stack, 'openclaw_session_recovery_age_ms_milliseconds_bucket{openclaw_status="failed", le="+Inf"}')
    # the requested side of the age histogram: the requested counter's attributes, no status
    has_series(stack, 'openclaw_session_recovery_age_ms_milliseconds_bucket{openclaw_action="recover", '
                      'openclaw_status="", le="+Inf"}')

    # the live picture: stuck NOW (with its reason), stalled, long-running
    stuck = stack.wait_query('openclaw_monitor_sessions{openclaw_attention="stuck"} > 0',
                             lambda r: len({s["metric"].get("openclaw_reason") for s in r}) == 2)
    assert {s["metric"]["openclaw_reason"] for s in stuck} == {"stale_session_state", "queued_work_without_active_run"}
    assert {s["metric"]["openclaw_gateway"] for s in stuck} == set(LIVE_GATEWAYS)
    stalled = stack.wait_query('openclaw_monitor_sessions{openclaw_attention="stalled"} > 0',
                               lambda r: len({s["metric"].get("openclaw_reason") for s in r}) == 2)
    assert {s["metric"]["openclaw_reason"] for s in stalled} == {"active_work_without_progress", "blocked_tool_call"}
    long_running = stack.wait_query(
        'max_over_time(openclaw_monitor_sessions{openclaw_attention="long_running"}[30s]) > 0')
    assert {s["metric"]["openclaw_reason"] for s in long_running} == {"active_work"}
    for sample in stack.prom.query('openclaw_monitor_sessions{openclaw_attention="none"}'):
        assert sample["metric"].get("openclaw_reason", "") == "", sample  # absent for none

    # gateways: two live, the quiet one silent
    silent = stack.wait_query('openclaw_monitor_gateways{openclaw_status="silent"} > 0')
    assert {s["metric"]["openclaw_gateway"] for s in silent} == {SILENT_GATEWAY}
    live = stack.wait_query('openclaw_monitor_gateways{openclaw_status="live"} > 0',
                            lambda r: len(r) == len(LIVE_GATEWAYS))
    assert {s["metric"]["openclaw_gateway"] for s in live} == set(LIVE_GATEWAYS)


def test_queue_model_tool_and_monitor_series(stack: Stack) -> None:
    lanes = set(stack.prom.label_values("openclaw_lane"))
    assert lanes == {"session", "main"}, f"session:<key> lanes must be reported as `session`: {lanes}"
    # two session lanes (the turn's and session:agent:main:x) per gateway per round
    assert stack.prom.value('sum(openclaw_queue_lane_enqueue_total{openclaw_lane="session"})') == 8
    assert stack.prom.value('sum(openclaw_queue_lane_dequeue_total{openclaw_lane="session"})') == 8
    assert stack.prom.value('sum(openclaw_queue_lane_enqueue_total{openclaw_lane="main"})') == 4
    assert stack.prom.value('sum(openclaw_queue_wait_ms_milliseconds_count{openclaw_lane="session"})') == 8
    # waits were 40 ms and 1 500 ms: nothing in the 25 ms bucket, both in the 2 500 ms one
    wait = 'sum(openclaw_queue_wait_ms_milliseconds_bucket{{openclaw_lane="session", le=~"{}(\\\\.0)?"}})'
    assert stack.prom.value(wait.format(25)) == 0
    assert stack.prom.value(wait.format(2500)) == 8
    has_series(stack, 'openclaw_queue_depth_bucket{openclaw_channel="heartbeat"}')
    has_series(stack, 'openclaw_queue_depth_bucket{openclaw_lane="session"}')

    calls = has_series(stack, 'openclaw_model_call_duration_ms_milliseconds_bucket{openclaw_provider="openai", '
                              'openclaw_model="gpt-5", openclaw_api="openai-completions", openclaw_transport="sse"}')
    assert {c.get("openclaw_errorCategory", "") for c in calls} == {"", "TimeoutError"}, calls
    has_series(stack, 'openclaw_model_call_duration_ms_milliseconds_count{openclaw_failureKind="timeout"}')
    assert stack.prom.value("sum(openclaw_model_call_duration_ms_milliseconds_count)") == 8
    has_series(stack, 'openclaw_tool_execution_duration_ms_milliseconds_bucket{openclaw_toolName="read", '
                      'openclaw_errorCategory="EACCES"}')
    has_series(stack, 'openclaw_tool_execution_blocked_total{openclaw_toolName="exec"}')
    run = has_series(stack, 'openclaw_run_duration_ms_milliseconds_bucket{openclaw_channel="telegram", openclaw_model="gpt-5"}')
    assert not any("openclaw_outcome" in labels for labels in run)  # upstream's run duration has no outcome
    has_series(stack, 'openclaw_session_turn_created_total{openclaw_agent="main", openclaw_channel="telegram", '
                      'openclaw_trigger="user"}')
    has_series(stack, 'openclaw_run_attempt_total{openclaw_attempt="1"}')
    for token in ("input", "output", "cache_read", "total"):
        has_series(stack, f'openclaw_tokens_total{{openclaw_token="{token}"}}')
    has_series(stack, 'openclaw_context_tokens_bucket{openclaw_context="limit"}')
    has_series(stack, 'openclaw_webhook_received_total{openclaw_channel="telegram", openclaw_webhook="message"}')
    has_series(stack, 'openclaw_message_queued_total{openclaw_channel="telegram", openclaw_source="telegram"}')

    # ingest outcomes, including what was refused; an event without a type counts as `other`
    for outcome in ("accepted", "rejected", "duplicate", "ignored"):
        has_series(stack, f'openclaw_monitor_events_total{{openclaw_outcome="{outcome}"}}')
    rejected = {s["openclaw_event_type"]
                for s in series(stack, 'openclaw_monitor_events_total{openclaw_outcome="rejected"}')}
    assert {"session.state", "tool.execution.started", "other"} <= rejected, rejected
    ignored = {s["openclaw_event_type"]
               for s in series(stack, 'openclaw_monitor_events_total{openclaw_outcome="ignored"}')}
    assert "other" in ignored and "gateway.brand_new.kind" not in ignored, f"unknown types count as `other`: {ignored}"
    assert stack.prom.value('sum(openclaw_monitor_events_total{openclaw_outcome="rejected"})') == 12
    assert stack.prom.value('sum(openclaw_monitor_events_total{openclaw_outcome="duplicate"})') == 4

    has_series(stack, 'openclaw_monitor_scan_duration_ms_milliseconds_bucket{le="+Inf"}')
    assert (stack.prom.value("sum(openclaw_monitor_scan_duration_ms_milliseconds_count)") or 0) > 10
    has_series(stack, 'openclaw_monitor_sessions_evicted_total{openclaw_reason="ttl"}')
    for gw in LIVE_GATEWAYS:
        has_series(stack, f'openclaw_monitor_forwarder_queued{{openclaw_gateway="{gw}"}}')
        has_series(stack, f'openclaw_monitor_forwarder_dropped_total{{openclaw_gateway="{gw}"}}')
        has_series(stack, f'openclaw_monitor_clock_clamped_total{{openclaw_gateway="{gw}"}}')
    for gw in (*LIVE_GATEWAYS, SILENT_GATEWAY):
        has_series(stack, f'openclaw_monitor_gateway_clock_skew_ms_milliseconds{{openclaw_gateway="{gw}"}}')


def bucket_bounds(stack: Stack, name: str) -> set[float]:
    found = has_series(stack, f"{name}_bucket")
    return {float(s["le"]) for s in found}


@pytest.mark.parametrize(("family", "bounds"), [
    ("openclaw_session_stuck_age_ms_milliseconds", AGE_BUCKETS),
    ("openclaw_session_recovery_age_ms_milliseconds", AGE_BUCKETS),
    ("openclaw_queue_wait_ms_milliseconds", DURATION_BUCKETS),
    ("openclaw_model_call_duration_ms_milliseconds", DURATION_BUCKETS),
    ("openclaw_tool_execution_duration_ms_milliseconds", DURATION_BUCKETS),
    ("openclaw_queue_depth", QUEUE_DEPTH_BUCKETS),
    ("openclaw_monitor_scan_duration_ms_milliseconds", SCAN_BUCKETS),
    ("openclaw_monitor_scan_lag_ms_milliseconds", SCAN_BUCKETS),
])
def test_histograms_have_the_explicit_buckets_of_the_spec(stack: Stack, family: str, bounds: tuple[float, ...]) -> None:
    # compared as numbers here; the spelling (le="120000", Go's, as the OTel Collector writes it)
    # is pinned by tests/unit/test_telemetry_exposition.py
    assert bucket_bounds(stack, family) == {float(b) for b in bounds} | {math.inf}
    if family == "openclaw_session_stuck_age_ms_milliseconds":
        count = stack.prom.value(f'sum({family}_bucket{{le="120000"}})')
        assert count is not None and count >= 8, "every stuck report here is younger than 120 s"


def test_gateway_derived_series_carry_openclaw_gateway(stack: Stack) -> None:
    everything = series(stack, '{__name__=~"openclaw_.+"}')
    assert everything
    offenders: dict[str, dict[str, str]] = {}
    for labels in everything:
        name = labels["__name__"]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in NOT_GATEWAY_SCOPED or family in NOT_GATEWAY_SCOPED:
            assert "openclaw_gateway" not in labels, labels
            continue
        if not labels.get("openclaw_gateway"):
            offenders.setdefault(name, labels)
    assert not offenders, f"series without openclaw_gateway: {json.dumps(offenders, indent=1)}"
    gateways = set(stack.prom.label_values("openclaw_gateway"))
    assert {*LIVE_GATEWAYS, SILENT_GATEWAY} <= gateways, gateways
    assert "default" not in gateways, gateways  # rejected events count under their sender


def test_rejected_events_are_counted_under_the_gateway_that_sent_them(stack: Stack) -> None:
    # telemetry.md: every instrument produced from a gateway's events carries openclaw.gateway = gatewayId
    rejected = set(stack.prom.label_values("openclaw_gateway",
                                           'openclaw_monitor_events_total{openclaw_outcome="rejected"}'))
    assert rejected == set(LIVE_GATEWAYS), rejected


def normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def test_no_id_as_a_label_name_or_value(stack: Stack) -> None:
    names = stack.prom.label_names()
    id_like = [n for n in names if any(idn in normalised(n) for idn in ID_NAMES)]
    assert not id_like, f"id-like label names: {id_like}"

    sent = stack.scenario.ids
    assert len(sent) > 50 and any(i.startswith("agent:main:") for i in sent)
    leaks: list[tuple[str, str, str]] = []
    for labels in series(stack, '{__name__=~".+"}'):
        for key, value in labels.items():
            if value in sent or "agent:main:" in value or any(i in value for i in sent):
                leaks.append((labels["__name__"], key, value))
    assert not leaks, f"ids in label values: {leaks[:20]}"


# ---------------------------------------------------------------------------------------------
# The dashboard's queries
# ---------------------------------------------------------------------------------------------

# Grafana's built-in variables. $__rate_interval = max($__interval + scrape interval, 4 * scrape
# interval) with the datasource's timeInterval of 15 s (grafana/provisioning) -> 60 s; $__range is
# the dashboard's default range now-1h, which Grafana's Prometheus datasource renders as "3600s".
GRAFANA_BUILTINS = {
    "__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000",
    "__range": "3600s", "__range_s": "3600", "__range_ms": "3600000",
}

# (panel title, refId) -> why an empty result is legitimate in this run
MAY_BE_EMPTY = {
    ("Export failures per minute", "A"):
        "no OTLP exporter is configured (no OTEL_EXPORTER_OTLP_* endpoint), so "
        "openclaw.monitor.export.failures has no points and its recording rule no series",
    ("Evictions and telemetry overflow per minute", "B"):
        "the scenario stays far below the cardinality cap (2 048 attribute sets per instrument), so "
        "openclaw.monitor.telemetry.overflow has no points (the cap is covered by the telemetry tests)",
}
# Stat panels that must show a number > 0 with every gateway selected (the scenario's picture).
POSITIVE_STATS = (
    "Stuck sessions", "Stalled sessions", "Long-running sessions", "Tracked sessions", "Gateways live",
    "Gateways silent",
)
# Panels whose data depends on an alert FIRING: OpenClawSessionStuckRecoveryFailing has no `for:`
# and fires once the failed-recovery series increased (round 2); every other alert here is only
# pending (their `for:` windows are 5-10 minutes), so they are NOT expected in this table.
NEEDS_FIRING_ALERT = {("Firing OpenClaw alerts", "A")}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from walk(panel.get("panels") or [])
    yield from walk(board["panels"])


def panel_targets(board: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in panels(board) for t in p.get("targets") or [] if t.get("expr")]


def grafana_regex_value(values: list[str]) -> str:
    """A multi-value selection as Grafana's Prometheus datasource formats it for =~."""
    escaped = [re.sub(r"([\\$^*+?.()|{}\[\]'])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, variables: dict[str, str]) -> str:
    """Substitute $var, ${var}, ${var:format} and [[var]] the way Grafana does before querying."""
    def value(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bracket") or match.group("plain")
        if name in variables:
            return variables[name]
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        return match.group(0)  # unknown: left as is, Prometheus will say what it thinks of it

    pattern = r"\$\{(?P<braced>\w+)(?::\w+)?\}|\[\[(?P<bracket>\w+)(?::\w+)?\]\]|\$(?P<plain>\w+)"
    return re.sub(pattern, value, expr)


def template_variables(board: dict[str, Any], selection: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Every query variable as "All" (its allValue), unless `selection` picks values."""
    out: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["type"] == "datasource":
            out[var["name"]] = "prometheus"
            continue
        picked = (selection or {}).get(var["name"])
        if picked:
            out[var["name"]] = grafana_regex_value(picked)
        else:
            assert var.get("includeAll") and var.get("allValue"), f"variable {var['name']} has no All value"
            out[var["name"]] = var["allValue"]
    return out


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    return [v for v in (float(s["value"][1]) for s in result) if math.isfinite(v)]


def check_dashboard(stack: Stack, variables: dict[str, str], *, positive_stats: bool,
                    timeout: float = 20.0) -> dict[tuple[str, str], str]:
    """Run every target; return the problems that persisted until the deadline (empty: all good)."""
    board = dashboard()
    targets = list(panel_targets(board))
    deadline = time.monotonic() + timeout
    while True:
        problems: dict[tuple[str, str], str] = {}
        for panel, target in targets:
            ident = (panel["title"], target.get("refId", "?"))
            expr = interpolate(target["expr"], variables)
            leftover = re.findall(r"\$\{?\w+|\[\[\w+", expr)
            if leftover:
                problems[ident] = f"unsubstituted variables {leftover} in {expr}"
                continue
            try:
                result = stack.prom.query(expr)
            except PromQLError as exc:
                problems[ident] = f"query failed: {exc}\n    {expr}"
                continue
            if ident in MAY_BE_EMPTY:
                continue
            if not result:
                problems[ident] = f"empty result\n    {expr}"
            elif not finite_values(result):
                problems[ident] = f"no finite value (only NaN/Inf): {[s['value'][1] for s in result]}\n    {expr}"
            elif positive_stats and panel["title"] in POSITIVE_STATS and not max(finite_values(result)) > 0:
                problems[ident] = f"stat shows {finite_values(result)}, the scenario makes it > 0\n    {expr}"
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(0.5)


def test_dashboard_has_the_panels_the_expectations_name() -> None:
    board = dashboard()
    idents = {(p["title"], t.get("refId")) for p, t in panel_targets(board)}
    titles = {p.get("title") for p in panels(board)}
    stale = [i for i in (*MAY_BE_EMPTY, *NEEDS_FIRING_ALERT) if i not in idents]
    stale += [t for t in POSITIVE_STATS if t not in titles]
    assert not stale, f"the dashboard changed; update this test's expectations: {stale}"
    assert len(panel_targets(board)) >= 42
    # the variables this test substitutes are all the dashboard uses
    used = set(re.findall(r"\$\{?(\w+)", json.dumps([t["expr"] for _, t in panel_targets(board)])))
    declared = {v["name"] for v in board["templating"]["list"]}
    assert used <= declared | set(GRAFANA_BUILTINS), used - declared - set(GRAFANA_BUILTINS)


def test_dashboard_variable_queries_return_the_gateways_and_lanes(stack: Stack) -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    # label_values(<selector>, <label>) is what Grafana runs through /api/v1/label/<label>/values
    for name, expected in (("gateway", {*LIVE_GATEWAYS, SILENT_GATEWAY}), ("lane", {"session", "main"})):
        definition = variables[name]["query"]["query"]
        match = re.fullmatch(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)", definition)
        assert match, definition
        selector = interpolate(match.group("selector"), template_variables(board))
        assert set(stack.prom.label_values(match.group("label"), selector)) == expected, (name, selector)


@pytest.mark.parametrize("selection", [None, {"gateway": list(LIVE_GATEWAYS)}],
                         ids=["all-gateways", "gateway-multi-select"])
def test_every_dashboard_query_runs_and_the_fed_panels_have_data(stack: Stack, selection: dict | None) -> None:
    board = dashboard()
    variables = template_variables(board, selection)
    problems = check_dashboard(stack, variables, positive_stats=selection is None)
    report = "\n".join(f"- {title} [{ref}]: {why}" for (title, ref), why in sorted(problems.items()))
    assert not problems, f"{len(problems)} dashboard target(s) failed (variables {variables}):\n{report}"


# ---------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------


def rules_by_name(stack: Stack) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for group in stack.prom.rule_groups() for rule in group["rules"]}


def test_every_rule_group_is_loaded_and_evaluates_without_error(stack: Stack) -> None:
    groups = stack.prom.rule_groups()
    assert {g["name"] for g in groups} == {"openclaw.sessions", "openclaw.recovery", "openclaw.gateways",
                                           "openclaw.service"}, [g["name"] for g in groups]
    since = stack.data_at + 2.0  # a couple of 1 s evaluation cycles over the final data

    def evaluated_twice() -> bool:
        for group in stack.prom.rule_groups():
            for rule in group["rules"]:
                stamp = rule.get("lastEvaluation", "0001")
                if stamp.startswith("0001") or _epoch(stamp) < since:
                    return False
        return True

    wait_until(evaluated_twice, timeout=15, interval=0.25, what="every rule evaluated after the data landed")
    unhealthy = [(g["name"], r["name"], r.get("health"), r.get("lastError"))
                 for g in stack.prom.rule_groups() for r in g["rules"]
                 if r.get("health") != "ok" or r.get("lastError")]
    assert not unhealthy, unhealthy
    names = rules_by_name(stack)
    for alert in ("OpenClawSessionStuck", "OpenClawSessionStuckRateHigh", "OpenClawSessionsStalled",
                  "OpenClawSessionStuckRecoveryFailing", "OpenClawGatewaySilent", "OpenClawDiagnosticsExportFailing",
                  "OpenClawDiagnosticsNoData"):
        assert names.get(alert, {}).get("type") == "alerting", alert


def _epoch(stamp: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanosecond fractions) as epoch seconds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", stamp)).timestamp()


def test_recording_rules_produce_series_from_the_scraped_data(stack: Stack) -> None:
    stack.wait_query('gateway_attention_reason:openclaw_monitor_sessions:sum{openclaw_attention="stuck"} > 0',
                     lambda r: {s["metric"].get("openclaw_gateway") for s in r} == set(LIVE_GATEWAYS))
    stack.wait_query("gateway_state:openclaw_session_stuck:rate5m > 0")
    failing = stack.wait_query("gateway_status_reason:openclaw_session_recovery_failing:increase15m > 0")
    assert {s["metric"]["openclaw_status"] for s in failing} == {"failed"}
    assert {s["metric"]["openclaw_reason"] for s in failing} == {"exception"}
    # no exporter configured: nothing to record (see MAY_BE_EMPTY)
    assert stack.prom.query("job_instance_signal:openclaw_monitor_export_failures:rate5m") == []


def test_alerts_fire_or_wait_for_their_windows_on_the_scenario(stack: Stack) -> None:
    def alert_states() -> dict[tuple[str, str], str]:
        return {(a["labels"]["alertname"], a["labels"].get("openclaw_gateway", "")): a["state"]
                for a in stack.prom.alerts()}

    expected = {("OpenClawSessionStuckRecoveryFailing", gw): "firing" for gw in LIVE_GATEWAYS}
    expected |= {("OpenClawSessionStuck", gw): "pending" for gw in LIVE_GATEWAYS}  # for: 5m
    expected |= {("OpenClawSessionsStalled", gw): "pending" for gw in LIVE_GATEWAYS}  # for: 10m
    expected[("OpenClawGatewaySilent", SILENT_GATEWAY)] = "pending"  # for: 5m

    def matches() -> bool:
        states = alert_states()
        return all(states.get(key) == state for key, state in expected.items())

    try:
        wait_until(matches, timeout=20, interval=0.25, what="the expected alert states")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nexpected {expected}\nactual {alert_states()}") from None
    states = alert_states()
    unexpected = {k: v for k, v in states.items() if k not in expected}
    # the rate alert needs > 2 stuck reports a minute fleet-wide sustained; the data/export
    # alerts must stay quiet with a healthy service and no exporter
    quiet = ("OpenClawDiagnosticsNoData", "OpenClawDiagnosticsExportFailing")
    assert not {k for k in unexpected if k[0] in quiet}, states
    # the firing alert carries what an operator needs
    firing = [a for a in stack.prom.alerts() if a["state"] == "firing"]
    for alert in firing:
        assert alert["labels"].get("severity"), alert
        assert {"summary", "description", "runbook_url", "dashboard"} <= set(alert["annotations"]), alert
        assert alert["labels"]["openclaw_gateway"] in alert["annotations"]["summary"], alert


def test_the_forwarder_was_answered_202_throughout(stack: Stack) -> None:
    assert stack.forwarder.posts > 10
    assert not stack.forwarder.errors, stack.forwarder.errors[:5]
