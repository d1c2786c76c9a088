"""How session identifiers leave the service (docs/telemetry.md, "Session ids").

A session key such as `agent:main:telegram:dm:<user id>` names a person, and upstream strips
session ids from every span and log record. `OPENCLAW_DIAG_EXPORT_SESSION_IDS` decides what our
log records and the stuck span carry: `hash` (the default: a keyed SHA-256 prefix, which nobody
can reverse by guessing keys without the deployment's key), `raw`, or `off`. The read API and the
status page show the same hash beside the key (`sessionHash`), so an operator who sees a hash in
a log can find the session.

The key is `OPENCLAW_DIAG_SESSION_HASH_KEY`, or, unset, one generated on first start and kept in
the data directory beside the journal (`session-hash.key`), so hashes stay the same across
restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Literal

Mode = Literal["hash", "raw", "off"]
KEY_FILE = "session-hash.key"
HASH_HEX_CHARS = 16  # 64 bits: unique enough to find a session, short enough to read


class SessionIds:
    """`key` is read on the first hash: a replay or a test that never exports an id never
    creates a key file."""

    def __init__(self, mode: Mode, key: Callable[[], bytes]) -> None:
        self.mode = mode
        self._load_key = key
        self._key: bytes | None = None

    def hash(self, value: str) -> str:
        if self._key is None:
            self._key = self._load_key()
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]

    def exported(self, value: str) -> str | None:
        """What a log record or span carries for this id: its hash, itself, or nothing."""
        if self.mode == "raw":
            return value
        if self.mode == "hash":
            return self.hash(value)
        return None


def load_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, or the one kept in `data_dir` (written, owner-only, on first use)."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    # created exclusively: two processes starting on one data directory keep the first key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return key
