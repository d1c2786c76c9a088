"""The telemetry contract held against upstream's own documentation: the installed
`openclaw@2026.9.6` package's `docs/gateway/opentelemetry/model-calls-and-metrics.md` lists every
instrument with its type and attribute keys. The table is read from that file, never from our
output; for each instrument we emit under an upstream name, the type and the keys (beside our
one extra, `openclaw.gateway`) must be the documented ones.

What is not as upstream yet is listed in NOT_YET, and the test holds the differences to exactly
that list: a fix must remove its entry, a regression adds one.
"""

from __future__ import annotations

import re

from telemetry import instruments as ins
from tests.support.gateway_harness import Runtime

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
