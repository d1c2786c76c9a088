"""Session ids as they leave the service (app/session_ids.py): a keyed hash by default."""

from __future__ import annotations

import stat

from app.session_ids import KEY_FILE, SessionIds, load_key


def test_the_hash_is_keyed_and_stable() -> None:
    one = SessionIds("hash", lambda: b"key-one")
    assert one.hash("agent:main:telegram:dm:42") == one.hash("agent:main:telegram:dm:42")
    assert len(one.hash("k")) == 16 and int(one.hash("k"), 16) >= 0
    assert SessionIds("hash", lambda: b"key-two").hash("k") != one.hash("k")  # not guessable without the key
    assert one.exported("k") == one.hash("k")
    assert SessionIds("raw", lambda: b"x").exported("k") == "k"
    assert SessionIds("off", lambda: b"x").exported("k") is None


def test_the_key_is_read_only_when_a_hash_is_needed() -> None:
    loads: list[int] = []
    ids = SessionIds("hash", lambda: loads.append(1) or b"k")
    assert loads == [] and ids.exported("a") and ids.hash("b") and loads == [1]


def test_an_unset_key_is_generated_once_and_kept(tmp_path) -> None:
    first = load_key("", tmp_path)
    path = tmp_path / KEY_FILE
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key("", tmp_path) == first and len(first) == 64
    assert load_key("configured", tmp_path) == b"configured"
