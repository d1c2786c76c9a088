"""Durations, times and untrusted text as people read them: one module for the status page and
the console script.

Two ways of writing a duration, on purpose: `human_ms` is the status page's (`4m 05s`), and
app/http/static/app.js writes the same strings with its own `human` (keep the two equal; the
browser test in tests/e2e/test_page_browser.py compares them); `compact_ms` is the terminal's
(`4m05s`, tenths of a second under a minute), for `replay` timelines and `sessions` tables
(app/cli.py). Likewise `stamp_ms` is the page's time of day, which app.js writes with `stamp`,
and `iso_ms` the ISO 8601 time of replay's verdicts.

`safe` is for the terminal only: session keys, tool names and reasons come from the network, so
control characters are shown as escapes, never emitted. HTML needs none of it: the page's
template autoescapes and app.js only ever sets `textContent`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def human_ms(ms: int | float | None, *, compact: bool = False) -> str:
    """850ms, 35s, 4m 05s, 2h 03m, 3d 4h; an en dash when absent (app.js `human`).

    `compact` is for the terminal's columns: 35.2s, 4m05s, 2h03m, 3d04h; '-' when absent.
    """
    if ms is None:
        return "-" if compact else "–"
    ms = max(0, int(ms))
    if ms < 1_000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s" if compact else f"{ms // 1000}s"
    seconds, sep = ms // 1000, "" if compact else " "
    if seconds < 3_600:
        return f"{seconds // 60}m{sep}{seconds % 60:02d}s"
    if seconds < 86_400:
        return f"{seconds // 3600}h{sep}{seconds % 3600 // 60:02d}m"
    hours = seconds % 86400 // 3600
    return f"{seconds // 86400}d{sep}{hours:02d}h" if compact else f"{seconds // 86400}d {hours}h"


def compact_ms(ms: int | float | None) -> str:
    return human_ms(ms, compact=True)


def stamp_ms(ms: int | None) -> str:
    """Epoch ms as `2026-11-25 03:04:54Z`; an en dash when absent (app.js `stamp`)."""
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def iso_ms(ms: int) -> str:
    """Epoch ms as ISO 8601 in UTC to the millisecond: `2026-11-25T03:04:54.120Z`."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def safe(value: Any) -> str:
    """Printable text for the terminal: session keys come from the network, so control
    characters (escape sequences, newlines, bidi overrides) are shown as escapes, never emitted."""
    if value is None:
        return "-"
    text = str(value)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "".join(out)
