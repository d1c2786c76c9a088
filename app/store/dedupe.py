"""The dedupe window: which idempotency keys were already committed, bounded in count and age.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from app.events import Event
from app.store.model import DEDUPE_BUCKET_MS, DEDUPE_MAX_AGE_MS, DEDUPE_MAX_KEYS

EVICT_PER_ADD = 4  # old keys let go per key added, at most: the window catches up within a few adds


class DedupeWindow:
    """The last 1,000,000 idempotency keys, at most an hour old.

    A million keys must stay cheap: the window keeps each key's hash (SipHash on strings, seeded
    per process: not collidable from outside; the window is rebuilt from the journal on start),
    maps it to the start of the one-second bucket it arrived in (one shared int per bucket), and
    lets the oldest keys go when the count or the age says so — a few per add, never a whole
    bucket at once: one bucket can hold 80,000 keys, and dropping them in one call stalled the
    loop for ~28 ms (bench/stall.py). `seen` checks the age itself, so a key past the hour that
    is still held answers "not seen".
    """

    __slots__ = ("_seen", "_buckets", "_count", "max_keys", "max_age_ms")

    def __init__(self, max_keys: int = DEDUPE_MAX_KEYS, max_age_ms: int = DEDUPE_MAX_AGE_MS) -> None:
        self._seen: dict[int, int] = {}
        self._buckets: deque[tuple[int, deque[int]]] = deque()
        self._count = 0
        self.max_keys = max_keys
        self.max_age_ms = max_age_ms

    def seen(self, key: Any, now: int) -> bool:
        at = self._seen.get(hash(key))
        return at is not None and now - at <= self.max_age_ms

    def add(self, key: Any, now: int) -> None:
        digest = hash(key)
        buckets = self._buckets
        # the newest bucket while it lasts: this runs for every event with a key
        if buckets and buckets[-1][0] + DEDUPE_BUCKET_MS > now:
            bucket_start, members = buckets[-1]
        else:
            bucket_start, members = self._bucket(now)
        self._seen[digest] = bucket_start
        members.append(digest)
        self._count += 1
        if self._count > self.max_keys or buckets[0][0] + DEDUPE_BUCKET_MS <= now - self.max_age_ms:
            self._let_go(now, EVICT_PER_ADD)

    def extend(self, keys: list[Any], at: int) -> None:
        """Keys that arrived together (one journal row, on restore, oldest rows first): one
        bucket and one dict update for all of them, then the bounds applied in full."""
        digests = [hash(key) for key in keys if key is not None]
        if not digests:
            return
        bucket_start, members = self._bucket(at)
        self._seen.update(dict.fromkeys(digests, bucket_start))
        members.extend(digests)
        self._count += len(digests)
        self._let_go(at, None)

    def _bucket(self, at: int) -> tuple[int, deque[int]]:
        """The one-second bucket a key arriving `at` goes in (the newest, made if need be)."""
        buckets = self._buckets
        start = at - at % DEDUPE_BUCKET_MS
        if not buckets or buckets[-1][0] < start:
            buckets.append((start, deque()))
        return buckets[-1]

    def _let_go(self, now: int, budget: int | None) -> None:
        """Drop the oldest keys while the window is over its count or holds keys past its age:
        at most `budget` of them (None: as many as that takes)."""
        buckets, seen = self._buckets, self._seen
        horizon = now - self.max_age_ms
        while buckets and budget != 0 and (self._count > self.max_keys
                                           or buckets[0][0] + DEDUPE_BUCKET_MS <= horizon):
            old_start, old_members = buckets[0]
            if not old_members:
                buckets.popleft()
                continue
            old = old_members.popleft()
            self._count -= 1
            if budget is not None:
                budget -= 1
            if seen.get(old) == old_start:  # not added again since, in a newer bucket
                del seen[old]

    def discard(self, key: Any) -> None:
        """Forget one key (the window's count is settled when its bucket entry is let go)."""
        self._seen.pop(hash(key), None)

    def __len__(self) -> int:
        return len(self._seen)


def dedupe_key(gateway: str, event: Event) -> tuple[Any, ...] | None:
    if event.eventId is not None:
        return (gateway, event.eventId)
    if event.seq is not None and event.ts is not None:
        return (gateway, event.seq, event.ts)
    return None
