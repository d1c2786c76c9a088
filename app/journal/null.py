"""A journal that keeps nothing: for `replay`, benchmarks and in-process tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from app import records
from app.journal.interface import READY, JournalStatus
from app.records import Record
from app.store import Store


class NullJournal:
    """A journal that keeps nothing and commits at once: for `replay`, benchmarks and in-process tests.

    Records are applied as they are submitted, through the same `records.apply` as the real
    journal; durability is the real Journal's business and is tested against it.
    """

    tracker = None  # nothing is checkpointed

    def __init__(self, store: Store | None = None) -> None:
        self.store = store  # or bound by open(), as the service does with any journal
        self.applied_upto = 0
        self.on_taken: Callable[[], None] = lambda: None  # it never checkpoints anything

    def open(self, store: Store) -> bool:
        self.store = store
        return False  # nothing to restore

    def status(self) -> JournalStatus:
        return READY

    def submit(self, record: Record, *, wait: bool = True) -> asyncio.Future[Any] | None:
        self.applied_upto += 1
        record.id = self.applied_upto
        result = records.apply(self.store, record)
        if not wait:
            return None
        future = asyncio.get_running_loop().create_future()
        future.set_result(result)
        return future

    async def checkpoint(self, now: int) -> int:
        return 0

    def load_gateway(self, gateway: str) -> int:
        return self.store.session_count_of(gateway)

    async def forget_gateway(self, gateway: str) -> int:
        return self.store.forget_gateway(gateway)

    def recent_events(self, gateway: str, keys: Iterable[str], newest_row: int,
                      limit: int = 50) -> list[dict[str, Any]]:
        return []

    def audit(self, before: int | None, limit: int, scope: frozenset[str] | None) -> list[tuple[int, dict[str, Any]]]:
        return []

    def close(self) -> None:
        return None
