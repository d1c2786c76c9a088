"""What every journal backend offers the service (docs/durability.md).

The embedded SQLite journal (`app/journal.py`) is one backend; a networked one (PostgreSQL, for
several instances) implements the same interface. The store knows none of them: it reports its
changes to the backend's `tracker` (`app.store.ChangeTracker`), and every change reaches it as
a committed record applied by `app.records.apply`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from app.records import Record
from app.store import ChangeTracker, Store


class JournalError(Exception):
    """A record was not committed: nothing of it was applied or acknowledged."""


@dataclass(frozen=True, slots=True)
class JournalStatus:
    ready: bool
    code: str | None = None  # journal_unavailable | journal_full
    reason: str | None = None
    retry_after_s: int = 0


READY = JournalStatus(True)


class JournalBackend(Protocol):
    tracker: ChangeTracker | None
    applied_upto: int  # the id of the last record applied to the store
    on_taken: Callable[[], None]  # called once a checkpoint has taken what it will write

    def open(self, store: Store) -> bool:
        """Restore the store from what is committed; True if anything was restored."""

    def status(self) -> JournalStatus:
        """Whether a commit can succeed now, and if not why and when to try again."""

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None:
        """Queue a record; its future resolves with `records.apply`'s answer once the record is
        committed and applied, or fails with JournalError (nothing of it applied)."""

    async def checkpoint(self, now: int) -> int:
        """Persist what changed, with the replay point it is exact for; how many sessions."""

    def load_gateway(self, gateway: str) -> int:
        """Restore one gateway's sessions into the store (it just became this instance's)."""

    async def forget_gateway(self, gateway: str) -> int:
        """Checkpoint, then drop one gateway's sessions from memory (it moved elsewhere)."""

    def recent_events(self, gateway: str, keys: Iterable[str], newest_row: int,
                      limit: int = 50) -> list[dict[str, Any]]:
        """A session's recent events, newest first, from its newest journal record
        (`Session.last_row`) back (blocking: call from a thread)."""

    def audit(self, before: int | None, limit: int, scope: frozenset[str] | None) -> list[tuple[int, dict[str, Any]]]:
        """Operators' actions (id, entry), newest first, older than `before`, within `scope`
        (blocking: call from a thread)."""

    def close(self) -> None: ...
