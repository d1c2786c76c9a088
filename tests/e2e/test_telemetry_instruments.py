"""telemetry/instruments.py: the one module that spells the contract (telemetry.md)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry import instruments as ins
from tests.support.paths import REPO

ROOT = REPO


def test_names_unique_and_namespaced() -> None:
    names = [spec.name for spec in ins.INSTRUMENTS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"openclaw\.[a-z_.]+", name) for name in names)
    assert set(ins.BY_NAME) == set(names)


def test_the_session_contract_exactly() -> None:
    """The table of telemetry.md, "The session contract (must be exact)"."""
    expected = {
        "openclaw.session.state": ("counter", "1", {"openclaw.state", "openclaw.reason"}),
        "openclaw.session.stuck": ("counter", "1", {"openclaw.state"}),
        "openclaw.session.stuck_age_ms": ("histogram", "ms", {"openclaw.state"}),
        "openclaw.session.turn.created": ("counter", "1", {"openclaw.agent", "openclaw.channel", "openclaw.trigger"}),
        "openclaw.session.recovery.requested": (
            "counter", "1", {"openclaw.state", "openclaw.action", "openclaw.active_work_kind", "openclaw.reason"},
        ),
        "openclaw.session.recovery.completed": (
            "counter", "1",
            {"openclaw.state", "openclaw.action", "openclaw.status", "openclaw.active_work_kind", "openclaw.reason"},
        ),
        "openclaw.session.recovery.age_ms": (
            "histogram", "ms",
            {"openclaw.state", "openclaw.action", "openclaw.status", "openclaw.active_work_kind", "openclaw.reason"},
        ),
        "openclaw.queue.lane.enqueue": ("counter", "1", {"openclaw.lane"}),
        "openclaw.queue.lane.dequeue": ("counter", "1", {"openclaw.lane"}),
        "openclaw.queue.depth": ("histogram", "1", {"openclaw.lane", "openclaw.channel"}),
        "openclaw.queue.wait_ms": ("histogram", "ms", {"openclaw.lane"}),
        "openclaw.run.attempt": ("counter", "1", {"openclaw.attempt"}),
    }
    actual = {s.name: (s.kind, s.unit, set(s.attributes)) for s in ins.SESSION_CONTRACT}
    assert actual == expected
    assert all(spec.gateway_scoped for spec in ins.SESSION_CONTRACT)


def test_the_monitor_instruments() -> None:
    expected = {
        "openclaw.monitor.events": ("counter", "1", {"openclaw.event_type", "openclaw.outcome"}, True),
        "openclaw.monitor.sessions": ("gauge", "{session}", {"openclaw.state", "openclaw.attention", "openclaw.reason",
                                                             "openclaw.needs_human", "openclaw.maintenance"}, True),
        "openclaw.monitor.recovery.verifications": ("counter", "1", {"openclaw.result", "openclaw.origin"}, True),
        "openclaw.monitor.attention.oldest_age_ms": ("gauge", "ms", {"openclaw.attention", "openclaw.reason"}, True),
        "openclaw.monitor.gateways": ("gauge", "{gateway}", {"openclaw.status", "openclaw.maintenance"}, True),
        "openclaw.monitor.gateway.clock_skew_ms": ("gauge", "ms", set(), True),
        "openclaw.monitor.scan.duration_ms": ("histogram", "ms", set(), False),
        "openclaw.monitor.scan.lag_ms": ("histogram", "ms", set(), False),
        "openclaw.monitor.sessions.evicted": ("counter", "1", {"openclaw.reason"}, False),
        "openclaw.monitor.export.failures": ("counter", "1", {"openclaw.signal"}, False),
        "openclaw.monitor.forwarder.dropped": ("counter", "1", set(), True),
        "openclaw.monitor.forwarder.queued": ("gauge", "{event}", set(), True),
        "openclaw.monitor.clock.clamped": ("counter", "1", set(), True),
        "openclaw.monitor.telemetry.overflow": ("counter", "1", {"openclaw.instrument"}, False),
        "openclaw.monitor.journal.refused": ("counter", "1", {"openclaw.reason"}, False),
        "openclaw.monitor.notify.failures": ("counter", "1", {"openclaw.reason"}, False),
        "openclaw.monitor.bounded.evicted": ("counter", "1", {"openclaw.structure"}, False),
        "openclaw.monitor.recovery.released_items": ("counter", "1", {"openclaw.status", "openclaw.action"}, True),
    }
    actual = {s.name: (s.kind, s.unit, set(s.attributes), s.gateway_scoped) for s in ins.MONITOR_INSTRUMENTS}
    assert actual == expected


def test_the_gateway_contract_names() -> None:
    names = {s.name for s in ins.GATEWAY_CONTRACT}
    assert names == {
        "openclaw.tokens", "openclaw.cost.usd", "openclaw.context.tokens", "openclaw.run.duration_ms",
        "openclaw.model_call.duration_ms", "openclaw.model_call.request_bytes", "openclaw.model_call.response_bytes",
        "openclaw.model_call.time_to_first_byte_ms", "openclaw.model.failover", "openclaw.tool.execution.duration_ms",
        "openclaw.tool.execution.blocked", "openclaw.tool.loop", "openclaw.webhook.received", "openclaw.webhook.error",
        "openclaw.webhook.duration_ms", "openclaw.message.queued", "openclaw.message.received",
        "openclaw.message.processed", "openclaw.message.dispatch.started", "openclaw.message.dispatch.completed",
        "openclaw.message.delivery.started", "openclaw.message.duration_ms", "openclaw.message.dispatch.duration_ms",
        "openclaw.message.delivery.duration_ms",
    }
    kinds = {s.name: s.kind for s in ins.GATEWAY_CONTRACT}
    assert {n for n, k in kinds.items() if k == "histogram"} == {
        n for n in names if n.endswith(("_ms", "_bytes")) or n == "openclaw.context.tokens"
    }


def test_histogram_buckets_are_the_spec_lists() -> None:
    js_default = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)  # upstream's
    assert ins.AGE_BUCKETS_MS == js_default + (30e3, 60e3, 120e3, 300e3, 600e3, 1.8e6, 3.6e6, 7.2e6, 21.6e6, 86.4e6)
    assert ins.DURATION_BUCKETS_MS == js_default + (30e3, 60e3, 120e3, 300e3, 600e3, 1.8e6, 3.6e6)
    assert ins.QUEUE_DEPTH_BUCKETS == js_default
    assert ins.BYTES_BUCKETS == js_default + (16384, 65536, 262144, 1048576, 4194304, 16777216)
    for layout in (ins.AGE_BUCKETS_MS, ins.DURATION_BUCKETS_MS, ins.QUEUE_DEPTH_BUCKETS, ins.BYTES_BUCKETS):
        assert layout[:len(js_default)] == js_default  # a superset: every upstream le counts as upstream's
    # upstream's own layouts (its exporter's AGENT_DURATION_MS_BUCKETS and CONTEXT_TOKENS_BUCKETS)
    assert ins.AGENT_DURATION_BUCKETS_MS == js_default + (
        15e3, 20e3, 30e3, 45e3, 60e3, 120e3, 180e3, 240e3, 300e3, 600e3, 900e3, 1.8e6, 3.6e6)
    assert ins.TOKENS_BUCKETS == js_default + (16e3, 32e3, 64e3, 128e3, 2e5, 4e5, 1e6, 2e6)
    assert ins.SCAN_BUCKETS_MS == (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
    for spec in ins.INSTRUMENTS:
        if spec.kind != "histogram":
            assert spec.buckets is None, spec.name
            continue
        assert spec.buckets and list(spec.buckets) == sorted(set(spec.buckets)), spec.name
        if spec.name.endswith(("stuck_age_ms", "recovery.age_ms")):
            assert spec.buckets == ins.AGE_BUCKETS_MS
        elif spec.name == "openclaw.run.duration_ms":
            assert spec.buckets == ins.AGENT_DURATION_BUCKETS_MS
        elif spec.name.startswith("openclaw.monitor.scan."):
            assert spec.buckets == ins.SCAN_BUCKETS_MS
        elif spec.name.endswith(("duration_ms", "wait_ms", "time_to_first_byte_ms")):
            assert spec.buckets == ins.DURATION_BUCKETS_MS, spec.name
        elif spec.name.endswith("_bytes"):
            assert spec.buckets == ins.BYTES_BUCKETS and spec.unit == "By"
        elif spec.name == "openclaw.queue.depth":
            assert spec.buckets == ins.QUEUE_DEPTH_BUCKETS
        elif spec.name == "openclaw.context.tokens":
            assert spec.buckets == ins.TOKENS_BUCKETS
        else:  # pragma: no cover - a new histogram needs a decision here
            pytest.fail(f"no bucket rule for {spec.name}")


def test_units() -> None:
    for spec in ins.INSTRUMENTS:
        if spec.name.endswith("_ms"):
            assert spec.unit == "ms", spec.name
        elif spec.kind == "gauge":
            assert spec.unit.startswith("{"), spec.name  # `1` would make the collector add _ratio
        elif spec.kind == "counter":
            assert spec.unit == "1", spec.name


def test_attribute_keys_are_bounded_vocabularies_never_ids() -> None:
    id_like = {f"openclaw.{name}" for name in ins.ID_FIELDS}
    for spec in ins.INSTRUMENTS:
        for key in spec.attribute_keys:
            assert re.fullmatch(r"(openclaw|gen_ai)\.[A-Za-z_.]+", key), key  # gen_ai.tool.name: upstream's
            assert key not in id_like, (spec.name, key)
            assert "session" not in key.lower() and not key.lower().endswith("id"), (spec.name, key)


def test_prometheus_names() -> None:
    assert ins.prometheus_name(ins.SESSION_STUCK) == "openclaw_session_stuck_total"
    assert ins.prometheus_name(ins.SESSION_STUCK_AGE) == "openclaw_session_stuck_age_ms_milliseconds"
    assert ins.prometheus_series(ins.SESSION_STUCK_AGE)[0] == "openclaw_session_stuck_age_ms_milliseconds_bucket"
    assert ins.prometheus_name(ins.RECOVERY_COMPLETED) == "openclaw_session_recovery_completed_total"
    assert ins.prometheus_name(ins.MONITOR_SESSIONS) == "openclaw_monitor_sessions"
    assert ins.prometheus_name(ins.MODEL_CALL_REQUEST_BYTES) == "openclaw_model_call_request_bytes"
    assert ins.prometheus_label(ins.ERROR_CATEGORY) == "openclaw_errorCategory"


def test_docs_match_the_generated_section() -> None:
    doc = (ROOT / "docs" / "telemetry.md").read_text(encoding="utf-8")
    assert ins.splice(doc) == doc, "docs/telemetry.md is stale: run python -m telemetry.instruments --write docs/telemetry.md"
    assert ins.markdown() in doc
    for spec in ins.INSTRUMENTS:
        assert f"`{spec.name}`" in doc


def test_cli_prints_the_markdown() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "telemetry.instruments", "--markdown"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out == ins.markdown()
    assert ins.main(["--bogus"]) == 2


def test_splice_replaces_only_the_section() -> None:
    doc = f"head\n{ins.BEGIN_MARKER}\nold\n{ins.END_MARKER}\ntail\n"
    assert ins.splice(doc, "NEW\n") == "head\nNEW\ntail\n"


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_nothing_else_spells_an_instrument_name() -> None:
    """issue 4: "Nothing else in the code base spells an instrument name"."""
    names = {spec.name for spec in ins.INSTRUMENTS}
    offenders = []
    for package in ("app", "telemetry"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "instruments.py" and path.parent.name == "telemetry":
                continue
            spelled = _string_constants(path) & names
            if spelled:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(spelled)}")
    assert not offenders, offenders
