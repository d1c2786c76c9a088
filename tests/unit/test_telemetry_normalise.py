"""Attribute values normalised as the 2026.9.6 package's `normalizeDiagnosticValue` and
`normalizeDiagnosticLane` (its `dist/diagnostic-runtime-*.mjs`) do it: trimmed, the charset
`[A-Za-z0-9_.:-]{1,120}`, values naming an agent session fall back, lanes keep their prefix."""

from __future__ import annotations

import pytest

from telemetry.store import normalise_lane, normalise_value


@pytest.mark.parametrize(("raw", "expected"), [
    ("telegram", "telegram"),
    ("  telegram ", "telegram"),
    ("agent:main:telegram:direct:42", "unknown"),
    ("AGENT:main", "unknown"),
    ("cron:agent:main", "unknown"),
    ("openai-completions", "openai-completions"),
    ("has space", "unknown"),
    ("x" * 121, "unknown"),
    (2, 2),
    (True, "true"),
    (None, None),
    ("", None),
])
def test_values(raw, expected) -> None:
    assert normalise_value(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("main", "main"),
    ("session:agent:main:abc", "session"),
    ("workboard:board-1:card-9", "workboard"),
    (" cron:nightly ", "cron"),
    ("agent:main", "unknown"),
    ("bad lane:x", "unknown"),
    (None, None),
])
def test_lanes(raw, expected) -> None:
    assert normalise_lane(raw) == expected

