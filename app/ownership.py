"""Which gateways this instance serves (docs/scale-out.md).

One instance (the embedded journal) serves every gateway: `EveryGateway`. Several instances
(the PostgreSQL journal) each serve the gateways whose advisory lock they hold, and
`SharedOwnership` keeps that set:

- **Claim on first contact.** The first event for a gateway takes its lock and loads its
  sessions; if another instance holds it, that instance is asked to hand it over and the caller
  answers `503 gateway_moving` (the forwarder retries; HAProxy's consistent hash brings the
  retry back here).
- **Hand over when asked**: stop taking the gateway's events, wait for those already accepted,
  forget it (its series too), unlock. The new owner replays the journal past the last checkpoint.
- **Adopt the orphans.** A gateway whose lock nobody holds on two looks one scan interval apart
  (its owner died, and it went quiet too) is taken, so its silence is still reported.
- **Lose with the connection.** When the journal's connection drops, its locks are gone: the
  journal forgets those gateways (`PostgresJournal._lost`), and their series go with them.

The store then holds only this instance's gateways, so the monitor scans only those, and a
gateway that moved is nobody's "silent" gateway here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.journal.postgres import PostgresJournal

log = logging.getLogger("openclaw.diagnostics.ownership")

RETRY_AFTER_S = 1  # what a 503 gateway_moving asks the forwarder to wait


# what a listener is told: ("arrived" | "left", gateway)
Listener = Callable[[str, str], None]


class EveryGateway:
    """One instance: every gateway is this one's."""

    shared = False

    def __init__(self) -> None:
        self.listeners: list[Listener] = []  # nothing ever arrives or leaves

    def owns(self, gateway: str) -> bool:
        return True

    def moving(self, gateway: str) -> bool:
        return False

    async def claim(self, gateway: str, *, ask: bool = True) -> bool:
        return True

    def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class SharedOwnership:
    """Several instances: the gateways whose lock this instance's journal connection holds."""

    shared = True

    def __init__(self, journal: PostgresJournal, *, interval_ms: int) -> None:
        self.journal = journal
        self.interval_s = interval_ms / 1000
        # told when a gateway becomes this instance's or stops being it (its series stop, its
        # changes are published by its new owner)
        self.listeners: list[Listener] = []
        self._moving: set[str] = set()
        self._claims: dict[str, asyncio.Task[bool]] = {}
        self._seen_free: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._adopter: asyncio.Task[None] | None = None
        journal.on_handover = self._handover_asked
        journal.on_lost = self._lost

    def owns(self, gateway: str) -> bool:
        return self.journal.owns(gateway) and gateway not in self._moving

    def moving(self, gateway: str) -> bool:
        return gateway in self._moving

    async def claim(self, gateway: str, *, ask: bool = True) -> bool:
        """True once the gateway is this instance's (taken and loaded); False: it is moving, or
        another instance holds it (and, with `ask`, was asked to let it go)."""
        if gateway in self._moving:
            return False
        if self.journal.owns(gateway):
            return True
        task = self._claims.get(gateway)
        if task is None:
            task = self._claims[gateway] = asyncio.ensure_future(self._take(gateway))
            task.add_done_callback(lambda _, g=gateway: self._claims.pop(g, None))
        if await asyncio.shield(task):
            return True
        if ask:
            await asyncio.to_thread(self.journal.ask_handover, gateway)
        return False

    async def _take(self, gateway: str) -> bool:
        taken = await self.journal.take(gateway)
        if taken:
            self._tell("arrived", gateway)
        return taken

    def _tell(self, kind: str, gateway: str) -> None:
        for listener in self.listeners:
            listener(kind, gateway)

    def _handover_asked(self, gateway: str) -> None:
        if gateway in self._moving or gateway in self._claims:
            return
        self._moving.add(gateway)
        task = asyncio.ensure_future(self._release(gateway))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, gateway: str) -> None:
        try:
            await self.journal.release(gateway)
            log.info("handed a gateway over")
        except Exception:  # the lock stays; the next request for it asks again
            log.exception("handing a gateway over failed")
        finally:
            self._moving.discard(gateway)
            self._tell("left", gateway)

    def _lost(self, gateways: list[str]) -> None:
        for gateway in gateways:
            self._tell("left", gateway)

    # -- adoption and the registry's heartbeat ---------------------------------------------------

    def start(self) -> None:
        self._adopter = asyncio.create_task(self._adopt_loop(), name="openclaw-adopt")

    async def aclose(self) -> None:
        if self._adopter is not None:
            self._adopter.cancel()
            await asyncio.gather(self._adopter, return_exceptions=True)
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)

    async def _adopt_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.adopt_once()
            except Exception as exc:  # PostgreSQL away: the next pass tries again
                log.warning("looking for orphaned gateways failed: %s", exc)

    async def adopt_once(self) -> list[str]:
        """One look: take the gateways that were free on the last look too; returns them."""
        await asyncio.to_thread(self.journal.heartbeat)
        free = set(await asyncio.to_thread(self.journal.free_gateways))
        due = sorted(free & self._seen_free)
        self._seen_free = free - set(due)
        adopted = []
        for gateway in due:
            if await self.claim(gateway, ask=False):
                adopted.append(gateway)
        if adopted:
            log.info("adopted %d gateways nobody held", len(adopted))
        return adopted
