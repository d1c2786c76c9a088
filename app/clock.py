"""What time it is. The service's one clock, and the manual one that replay, benchmarks and
tests drive: everything that needs the time takes a `Clock`, so that nothing reads the system
clock behind its caller's back (the store takes its times as arguments and reads none)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_until(self, at_ms: int) -> None: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_until(self, at_ms: int) -> None:
        delay = (at_ms - self.now_ms()) / 1000
        await asyncio.sleep(max(0.0, delay))


class ManualClock:
    """Time that moves only when told to (`now` is set, or `sleep_until` reached): no sleep ever
    waits, so a replay of hours of events runs in seconds and a test decides every instant."""

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, at_ms: int) -> None:
        self.now = max(self.now, at_ms)
