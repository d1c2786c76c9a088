"""app/formatting.py: the page's and the terminal's durations, the two ways of writing a time,
and what `safe` does to text from the network."""

from __future__ import annotations

from app.formatting import compact_ms, human_ms, iso_ms, safe, stamp_ms

T = 1_795_921_494_120  # 2026-11-29 03:04:54.120 UTC


def test_the_two_durations_agree_on_where_a_unit_starts() -> None:
    values = (None, 0, 999, 1_000, 59_000, 60_000, 3_599_999, 3_600_000, 86_399_999, 86_400_000, -5)
    assert [human_ms(v) for v in values] == [
        "–", "0ms", "999ms", "1s", "59s", "1m 00s", "59m 59s", "1h 00m", "23h 59m", "1d 0h", "0ms"]
    assert [compact_ms(v) for v in values] == [
        "-", "0ms", "999ms", "1.0s", "59.0s", "1m00s", "59m59s", "1h00m", "23h59m", "1d00h", "0ms"]


def test_times() -> None:
    assert stamp_ms(T) == "2026-11-29 03:04:54Z"
    assert stamp_ms(None) == "–"
    assert iso_ms(T) == "2026-11-29T03:04:54.120Z"


def test_safe_escapes_control_characters_only() -> None:
    assert safe("agent:main:<b> ü") == "agent:main:<b> ü"
    assert safe("a\nb\x1b[31m\u202e\U000e0001") == "a\\x0ab\\x1b[31m\\u202e\\U000e0001"
