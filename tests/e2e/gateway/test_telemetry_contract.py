"""The telemetry contract held against upstream's own documentation: the installed
`openclaw@2026.9.6` package's `docs/gateway/opentelemetry/model-calls-and-metrics.md` lists every
instrument with its type and attribute keys. The table is read from that file, never from our
output; for each instrument we emit under an upstream name, the type and the keys (beside our
one extra, `openclaw.gateway`) must be the documented ones.

What is not as upstream yet is listed in NOT_YET, and the test holds the differences to exactly
that list: a fix must remove its entry, a regression adds one. A second test holds every series
actually emitted — fed with the real gateway's captured events, events shaped as its d.ts types
them, and the monitor's reports — to the documented keys.
"""

from __future__ import annotations

import re

import msgspec
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.events import Event
from telemetry import instruments as ins
from telemetry.setup import build_recorder
from tests.support.gateway_harness import Runtime
from tests.support.paths import SHARED_DATA
from tests.support.telemetry_scenario import drive_all, gateway_events

DOC = "docs/gateway/opentelemetry/model-calls-and-metrics.md"
_LINE = re.compile(r"^- `([a-z_.]+)` \(([a-z]+)(.*)$", re.M)

# instrument -> (keys upstream documents that we lack, keys we add that it does not)
NOT_YET: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


def documented(text: str) -> dict[str, tuple[str, frozenset[str] | None]]:
    """instrument -> (type, attribute keys), or None keys where the line lists none of its own
    (`attrs: same as …`, or a description only)."""
    table: dict[str, tuple[str, frozenset[str] | None]] = {}
    for name, kind, rest in _LINE.findall(text):
        match = re.search(r"attrs: (.*)\)\s*$", rest)
        keys = None
        if match and not match.group(1).startswith("same as"):
            # `openclaw.channel=heartbeat` names a key with its fixed value
            keys = frozenset(key.split("=")[0] for key in re.findall(r"`([A-Za-z_.]+(?:=[a-z]+)?)`",
                                                                        match.group(1).split(";")[0]))
        table[name] = (kind, keys)
    return table


def test_every_upstream_named_instrument_has_the_documented_type_and_keys(runtime: Runtime) -> None:
    table = documented((runtime.openclaw_pkg / DOC).read_text(encoding="utf-8"))
    assert len(table) > 40 and "openclaw.session.stuck" in table  # the reference was read
    ours = {spec.name: spec for spec in ins.INSTRUMENTS if not spec.name.startswith("openclaw.monitor.")}
    assert set(ours) <= set(table), f"emitted under names upstream does not document: {set(ours) - set(table)}"
    differences = {}
    for name, spec in ours.items():
        kind, keys = table[name]
        assert spec.kind == kind, (name, spec.kind, kind)
        if keys is None:
            continue
        declared = frozenset(spec.attributes) - {ins.GATEWAY}
        if declared != keys:
            differences[name] = (keys - declared, declared - keys)
    assert differences == NOT_YET


def emitted_series() -> dict[str, list[dict[str, object]]]:
    """Every series our recorder emits, fed with the real 2026.9.6 gateway's own events (the
    captures in ../shared/data), events shaped as its d.ts types them (one per type, all fields
    set: tests/support/telemetry_scenario.py), and the monitor's reports."""
    recorder = build_recorder(True, 2048, env={}, log_exporter=InMemoryLogRecordExporter(),
                              span_exporter=InMemorySpanExporter())
    try:
        captured = [line for path in sorted(SHARED_DATA.glob("openclaw-2026.9.6-*.ndjson"))
                    for line in path.read_bytes().splitlines() if line.strip()]
        assert len(captured) > 300
        for line in captured:
            recorder.event_applied(msgspec.json.decode(line, type=Event), "gw-1")
        for event in gateway_events():
            recorder.event_applied(event, "gw-1")
        drive_all(recorder)
        data = recorder.store.collect()
    finally:
        recorder.shutdown()
    return {
        metric.name: [dict(point.attributes) for point in metric.data.data_points]
        for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
    }


def test_every_emitted_series_carries_only_documented_keys(runtime: Runtime) -> None:
    table = documented((runtime.openclaw_pkg / DOC).read_text(encoding="utf-8"))
    series = emitted_series()
    upstream_named = {name: points for name, points in series.items() if name in table and points}
    assert len(upstream_named) > 30, sorted(upstream_named)  # the scenario reached them
    extra = {}
    for name, points in upstream_named.items():
        keys = table[name][1]
        if keys is None:
            continue
        seen = frozenset(key for point in points for key in point) - {ins.GATEWAY}
        if not seen <= keys:
            extra[name] = seen - keys
    assert extra == {}
    # the real run.completed has no channel, and upstream leaves the key out there; the real
    # model.usage has one ("http"): both feed the run duration
    durations = series[ins.RUN_DURATION.name]
    assert {ins.GATEWAY: "gw-1", ins.PROVIDER: "fake", ins.MODEL: "fake-model"} in durations
    assert {ins.GATEWAY: "gw-1", ins.CHANNEL: "http", ins.PROVIDER: "fake", ins.MODEL: "fake-model"} in durations
