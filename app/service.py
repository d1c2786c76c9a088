"""The service's core, wired: store, journal, monitor, recovery and telemetry, opened and closed
together. It knows nothing of HTTP; app/main.py puts an HTTP face on it (app/http/).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import sys
from collections import Counter

from app.actions import Actions
from app.changes import ChangeFeed, ChangeWatcher
from app.clock import Clock, SystemClock
from app.journal import Journal, JournalBackend, JournalError
from app.journal.postgres import PostgresJournal
from app.monitor import Monitor, MonitorConfig
from app.notify import Notifier, parse_targets
from app.ownership import EveryGateway, SharedOwnership
from app.queries import LocalQueries, Queries
from app.recovery import Executor, ObserveExecutor, RecoveryCoordinator, WebhookExecutor
from app.session_ids import SessionIds, load_key
from app.settings import Settings
from app.store import GatewayInfo, Store
from app.webhook_address import AddressBook
from telemetry.record import LiveSources, Recorder
from telemetry.setup import build_recorder

SWITCH_INTERVAL_S = 0.001  # see Service.open

log = logging.getLogger("openclaw.diagnostics")

SKEW_WARNING_EVERY_MS = 600_000


def recorder_for(settings: Settings, session_ids: SessionIds | None = None) -> Recorder:
    return build_recorder(gateway_attribute=settings.gateway_attribute,
                          cardinality_limit=settings.metric_cardinality_limit,
                          session_ids=session_ids.exported if session_ids is not None else None,
                          metric_name_prefix=settings.metric_name_prefix)


def build_journal(settings: Settings) -> JournalBackend:
    """The embedded SQLite journal, or with OPENCLAW_DIAG_JOURNAL_URL the shared PostgreSQL one."""
    if settings.shared:
        return PostgresJournal(settings.journal_url, instance_id=settings.instance_name,
                               instance_url=settings.instance_address, retention_ms=settings.journal_retention_ms)
    return Journal(settings.data_dir, max_bytes=settings.journal_max_bytes,
                   retention_ms=settings.journal_retention_ms, max_rows=settings.journal_max_rows)


def build_executor(settings: Settings) -> Executor:
    if settings.recovery_mode == "webhook":
        addresses = AddressBook(settings.recovery_webhook_url, settings.recovery_webhook_token,
                                settings.recovery_webhook_urls, settings.recovery_webhook_tokens,
                                settings.recovery_gateways)
        return WebhookExecutor(addresses, settings.recovery_timeout_ms)
    return ObserveExecutor()


class Service:
    """Everything the running service owns: store, journal, recovery, monitor, telemetry.

    Built the same way wherever the core runs: `serve` (app/main.py), `replay` (app/replay.py),
    the benchmarks and the tests. What differs is passed in: the clock (a `ManualClock` outside
    `serve`), the journal (`NullJournal` where nothing is kept), the recovery executor and the
    telemetry recorder. `open()` restores and starts it; `open(background=False)` leaves the
    monitor's ticks and the checkpoints to the caller, as replay and tests drive time themselves.
    """

    def __init__(self, settings: Settings, *, clock: Clock | None = None, recorder: Recorder | None = None,
                 journal: JournalBackend | None = None, executor: Executor | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.journal: JournalBackend = journal or build_journal(settings)
        # what session ids look like outside: on log records and spans, and as the API's sessionHash
        # (several instances share one key, kept in PostgreSQL, so a hash survives a failover)
        self.session_ids = SessionIds(settings.export_session_ids, self._session_hash_key)
        self.recorder = recorder or recorder_for(settings, self.session_ids)
        self.tokens = settings.tokens()  # who may send events
        self.reading_tokens = settings.reading_tokens()  # who may read, and which gateways
        self.operator_entries = settings.operator_entries()  # who may act (named, for the audit log)
        # which gateways are this instance's: all of them, or those whose lock it holds
        self.ownership: EveryGateway | SharedOwnership = (
            SharedOwnership(self.journal, interval_ms=settings.scan_interval_ms)
            if isinstance(self.journal, PostgresJournal) else EveryGateway())
        self.store = Store(max_clock_skew_ms=settings.max_clock_skew_ms, tracker=self.journal.tracker,
                           max_gateways=settings.max_gateways)
        self.coordinator = RecoveryCoordinator(
            self.store, self.journal, self.recorder, executor or build_executor(settings),
            now_ms=self.clock.now_ms, concurrency=settings.recovery_concurrency,
            timeout_ms=settings.recovery_timeout_ms + 1_000, profile_setting=settings.classifier_profile,
        )
        self.monitor = Monitor(self.store, MonitorConfig.from_settings(settings), clock=self.clock,
                               journal=self.journal, recovery=self.coordinator, recorder=self.recorder)
        self.queries: Queries = LocalQueries(self)
        # what changes, for the change stream and the notifier (app/changes.py)
        self.changes = ChangeFeed(self.clock)
        watcher = ChangeWatcher(self.changes, self.store, is_silent=self.is_silent,
                                session_hash=lambda value: self.session_ids.hash(value) if value else None)
        self.monitor.listeners.append(watcher.on_monitor)
        self.coordinator.listeners.append(watcher.on_coordinator)
        self.ownership.listeners.append(watcher.on_ownership)
        self.ownership.listeners.append(
            lambda kind, gateway: self.recorder.gateway_moved(gateway) if kind == "left" else None)
        self.actions = Actions(self)  # what an operator may do (app/actions.py)
        self.notifier = Notifier(self.changes, parse_targets(settings.notify), clock=self.clock,
                                 recorder=self.recorder, public_url=settings.public_url)
        self._checkpointer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._switch_interval: float | None = None
        self._skew_warned: dict[str, int] = {}
        self._bounds_reported: Counter[str] = Counter()

    async def open(self, *, background: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        restored = await asyncio.to_thread(self.journal.open, self.store)
        if restored:
            # Events may have been missed while the service was down: no recovery for one warn.
            self.monitor.warm_until = self.clock.now_ms() + self.settings.warn_ms
        interrupted = await self.coordinator.complete_interrupted()
        if restored:
            # A restored store is millions of long-lived objects: keep the cyclic GC from
            # walking them all again (a full collection would stall the loop for ~0.5 s).
            gc.collect()
            gc.freeze()
        if restored:
            log.info("restored %d sessions (%d recoveries interrupted)", self.store.session_count, interrupted)
        self.recorder.bind(LiveSources(sessions=self.queries.session_counts, gateways=self.queries.gateway_statuses))
        if not background:
            return
        # The journal's writer thread needs the GIL a dozen times per group commit (every SQLite
        # call gives it back). While the loop is busy with CPU-bound work (decoding a large body,
        # applying a batch), each time it waits the interpreter's switch interval: at the default
        # 5 ms one commit took ~100 ms, and a paced client's p99 grew to 5 s while another sent
        # bodies of 10,000 invalid events (bench/attacks.py, bad_batches). At 1 ms: 0.2 s, with
        # no loss of throughput (0.5 ms: 40 ms, but single-event ingest ran 25% slower).
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.monitor.start()
        self.ownership.start()
        self.notifier.start()
        # A checkpoint takes one new list of every session it will write (hundreds of thousands):
        # left in the young generations, each of their collections would walk it while the
        # checkpoint runs (20-50 ms a collection with 650k; bench/README.md, "stall"). Out of
        # the collector's sight at once, as everything is after each checkpoint (below).
        self.journal.on_taken = gc.freeze
        self._checkpointer = asyncio.create_task(self._checkpoint_loop(), name="openclaw-checkpoint")

    def stopping(self) -> None:
        """A stop signal arrived (app/cli.py's server; callable from a signal handler): open
        change streams end now rather than when the graceful stop cuts them."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.changes.close)

    async def close(self) -> None:
        self.changes.close()  # open change streams end
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            await asyncio.gather(self._checkpointer, return_exceptions=True)
        await self.monitor.stop()
        await self.ownership.aclose()
        await self.notifier.aclose()  # what is still queued is not sent: the stream's backlog has it
        await self.actions.aclose()  # a paced bulk recovery not yet asked is not asked
        await self.coordinator.aclose()  # a recovery still running completes as interrupted
        try:
            await self._checkpoint()
        finally:
            await asyncio.to_thread(self.journal.close)
            self.recorder.shutdown()
            if self._switch_interval is not None:
                sys.setswitchinterval(self._switch_interval)

    async def _checkpoint(self) -> None:
        await self.journal.checkpoint(self.clock.now_ms())

    async def _checkpoint_loop(self) -> None:
        interval = self.settings.checkpoint_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._checkpoint()
            except JournalError:
                continue  # logged by the journal; what it took is the next checkpoint's to write
            # The store is millions of long-lived objects: a full cyclic collection walking them
            # all stalls the loop for ~0.5-1 s per million sessions (bench/ack_latency.py). After
            # the young generations are collected, what survives is moved out of the collector's
            # sight; the sessions have no reference cycles, and evicted ones are still freed by
            # reference counting.
            gc.collect(1)
            gc.freeze()

    def _session_hash_key(self) -> bytes:
        settings = self.settings
        if isinstance(self.journal, PostgresJournal) and not settings.session_hash_key:
            return self.journal.shared_key("session_hash_key", lambda: secrets.token_hex(32).encode())
        return load_key(settings.session_hash_key, settings.data_dir)

    # -- views the API and telemetry share ---------------------------------------------------

    def gateway_now(self, gateway_id: str) -> int:
        now = self.clock.now_ms()
        info = self.store.gateway_info(gateway_id)
        return info.now(now) if info else now

    def check_skew(self, gateway_id: str, now: int) -> None:
        """Log (at most every 10 minutes per gateway) a clock skew beyond the allowed one."""
        info = self.store.gateway_info(gateway_id)
        if info is None or abs(info.skew_ms) <= self.settings.max_clock_skew_ms:
            return
        if now - self._skew_warned.get(gateway_id, -SKEW_WARNING_EVERY_MS) < SKEW_WARNING_EVERY_MS:
            return
        self._skew_warned[gateway_id] = now
        log.warning("gateway %r: clock skew %d ms (events arrive that much later than their ts); "
                    "ages are taken in the gateway's clock", gateway_id, info.skew_ms)

    def report_bounds(self) -> None:
        """What the store's bounds dropped since the last report, to telemetry."""
        evictions = self.store.bounded_evictions
        if evictions == self._bounds_reported:
            return
        for structure, count in evictions.items():
            self.recorder.bounded_evicted(structure, count - self._bounds_reported[structure])
        self._bounds_reported = Counter(evictions)

    def is_silent(self, info: GatewayInfo, now: int) -> bool:
        return now - info.last_heard > self.settings.gateway_silence_ms
