"""The read model: what the read API, the status page and the gauges show, within a scope.

Every reader goes through `Queries`: the routes of app/http/api.py and app/http/page.py (JSON
for a caller whose token decides the scope), and the live gauges telemetry pulls. The store is
read only through its read API (app/store/store.py). `Queries` is an interface. `LocalQueries`
answers from this process's store; a fleet-wide one can answer the same questions from several.

A scope is the set of gateway ids the caller may see, or None for every gateway. A session of
another gateway is not there at all: unknown, exactly like one that does not exist.

It is a little over 400 lines: the interface and its one implementation sit together so that
every question a reader may ask, and how it is answered, reads in one place.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from app.store import Session
from app.vocabulary import KIND_OF_LABEL, LABEL, SEVERITY
from telemetry.record import GatewayStatus, SessionCount

if TYPE_CHECKING:
    from app.service import Service

Scope = frozenset[str] | None
SortKey = tuple[int, int, str, str]

RECENT_EVENTS = 50  # journal rows shown with one session
OLDEST_SHOWN = 20  # sessions under attention in the attention summary
OVERVIEW_LIMIT = 200  # sessions under attention on the status page
LARGE_LISTING = 20_000  # listings over more sessions than this are filtered and sorted off the loop


def visible(scope: Scope, gateway: str) -> bool:
    return scope is None or gateway in scope


def narrowed(scope: Scope, gateway: str | None) -> Scope:
    """The caller's scope, filtered to one gateway when a page or link asks for it."""
    if gateway is None:
        return scope
    return frozenset({gateway}) if scope is None else scope & {gateway}


class UnknownSession(Exception):
    """No session of that key within the caller's scope."""


class AmbiguousSession(Exception):
    """Several gateways in the caller's scope have a session of that key."""

    def __init__(self, gateways: list[str]) -> None:
        super().__init__(gateways)
        self.gateways = gateways


class Queries(Protocol):
    async def sessions_page(self, scope: Scope, *, attention: str | None, state: str | None,
                            gateway_id: str | None, after: SortKey | None, limit: int,
                            needs_human: bool | None = None,
                            with_keys: bool = False) -> tuple[list[dict[str, Any]], SortKey | None, int]:
        """One page of sessions, most severe first: (items, the next page's key, total);
        `with_keys`: each item carries its `sortKey` (a fleet-wide read merges by it)."""

    def under_attention(self, scope: Scope, *, attention: str | None, reason: str | None, gateway_id: str | None,
                        needs_human: bool | None) -> list[Session]:
        """The sessions a bulk recovery may act on, most severe and oldest first."""

    def resolve(self, scope: Scope, key: str, gateway_id: str | None) -> Session:
        """The one session `key` names within `scope`."""

    async def session_detail(self, scope: Scope, key: str, gateway_id: str | None) -> dict[str, Any]:
        """One session in full, with its recent events and recovery history."""

    def attention_summary(self, scope: Scope) -> dict[str, Any]: ...

    def gateways(self, scope: Scope) -> list[dict[str, Any]]: ...

    def overview(self, scope: Scope, *, with_keys: bool = False) -> dict[str, Any]:
        """What the status page's overview shows; `with_keys`: its items carry their `sortKey`."""

    def session_counts(self) -> Iterable[SessionCount]:
        """For the sessions gauge: by gateway, state and attention (never scoped)."""

    def gateway_statuses(self) -> Iterable[GatewayStatus]: ...


# -- representations ---------------------------------------------------------------------------


def activity_json(session: Session, gateway_now: int) -> dict[str, Any]:
    snapshot = session.snapshot(gateway_now)
    fields = {
        "activeWorkKind": snapshot.active_work_kind,
        "hasActiveEmbeddedRun": snapshot.has_active_embedded_run,
        "activeToolName": snapshot.active_tool_name,
        "activeToolCallId": snapshot.active_tool_call_id,
        "activeToolAgeMs": snapshot.active_tool_age_ms,
        "lastProgressAgeMs": snapshot.last_progress_age_ms,
        "lastProgressReason": snapshot.last_progress_reason,
    }
    return {name: value for name, value in fields.items() if value is not None}


def attention_json(session: Session) -> dict[str, Any] | None:
    attention = session.attention
    if attention is None:
        return None
    return {
        "eventType": attention.event_type,
        "reason": attention.reason,
        "classification": attention.classification,
        "activeWorkKind": attention.active_work_kind,
        "recoveryEligible": attention.recovery_eligible,
        "attentionAgeMs": attention.age_ms,
        "since": attention.since,
    }


def usage_json(session: Session) -> dict[str, Any]:
    totals = session.usage or [0.0] * 6
    names = ("input", "output", "cacheRead", "cacheWrite", "total")
    # Absurd amounts can sum to infinity, which neither int() nor JSON can carry: shown as null
    # rather than failing every read that includes the session.
    usage: dict[str, Any] = {name: int(value) if math.isfinite(value) else None for name, value in zip(names, totals)}
    usage["costUsd"] = totals[5] if math.isfinite(totals[5]) else None
    return usage


def sort_key(session: Session, tick_at: int = 0) -> SortKey:
    """Severity, then attention age descending, then key — as a key that does not drift.

    `attention.age_ms` grows with every tick, so a cursor holding an age would skip (or
    repeat) sessions whose age crossed it between two page requests. Every age is refreshed
    on each tick as of the tick's start (`tick_at`), so `tick_at - age_ms` — when the attention
    clock of the session started, in the service's clock — orders exactly like the age,
    and stays put while the session is unchanged.
    """
    attention = session.attention
    first = session.needs_human is not None  # what automation gave up on comes first (docs/design.md)
    if attention is None:
        return (-1 if first else 3, 0, session.key, session.gateway)
    return (-1 if first else SEVERITY[attention.event_type], tick_at - attention.age_ms, session.key, session.gateway)


def filter_sessions(pool: list[Session], attention: str | None, state: str | None,
                    gateway_id: str | None, needs_human: bool | None = None) -> list[Session]:
    wanted = KIND_OF_LABEL.get(attention or "")
    selected = []
    for session in pool:
        if gateway_id is not None and session.gateway != gateway_id:
            continue
        if needs_human is not None and (session.needs_human is not None) != needs_human:
            continue
        if state is not None and session.state != state:
            continue
        current = session.attention
        if attention == "none" and current is not None:
            continue
        if wanted is not None and (current is None or current.event_type != wanted):
            continue
        selected.append(session)
    return selected


def page_of(pool: list[Session], attention: str | None, state: str | None, gateway_id: str | None,
            after: SortKey | None, limit: int, tick_at: int, needs_human: bool | None = None) -> tuple[list[Session], int]:
    """One page in the API's order, and the total; pure over its copy, so it can run off the loop."""
    sessions = filter_sessions(pool, attention, state, gateway_id, needs_human)
    key = functools.partial(sort_key, tick_at=tick_at)
    remaining = sessions if after is None else [s for s in sessions if key(s) > after]
    return heapq.nsmallest(limit + 1, remaining, key=key), len(sessions)


# -- this process's answers ----------------------------------------------------------------------


class LocalQueries:
    """Answers from this process's store, journal and monitor."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store

    def session_json(self, session: Session) -> dict[str, Any]:
        gateway_now = self.service.gateway_now(session.gateway)
        recoveries = session.recoveries or []
        return {
            "gatewayId": session.gateway,
            "sessionKey": session.session_key,
            "sessionId": session.session_id,
            # the hash exported log records carry in place of the key (app/session_ids.py)
            "sessionHash": self.service.session_ids.hash(session.session_key or session.session_id or session.key),
            "state": session.state,
            "queueDepth": session.queue_depth,
            "generation": session.generation,
            "lastActivityAt": session.last_activity,
            "ageMs": max(0, gateway_now - session.last_activity),
            "activity": activity_json(session, gateway_now),
            "attention": attention_json(session),
            "gatewayVerdict": session.gateway_verdict,
            "lastRecovery": recoveries[-1] if recoveries else None,
            "recoveryInFlight": session.inflight is not None,
            # an applied recovery waiting for the gateway's evidence, and the needs-human list
            "verifying": dict(session.verifying) if session.verifying else None,
            "needsHuman": session.needs_human,
            "usage": usage_json(session),
        }

    def _pool(self, scope: Scope, attention: str | None, gateway_id: str | None,
              needs_human: bool | None = None) -> list[Session]:
        """The sessions a listing looks at, copied on the loop (a C-level copy per gateway map)."""
        store = self.store
        if gateway_id is not None and not visible(scope, gateway_id):
            return []
        if (attention is not None and attention != "none") or needs_human:
            return [s for s in store.considered() if visible(scope, s.gateway)]  # only these carry attention
        if gateway_id is not None:
            return store.sessions_of(gateway_id)
        if scope is None:
            return list(store.iter_sessions())
        return [session for gateway in scope for session in store.sessions_of(gateway)]

    async def sessions_page(self, scope: Scope, *, attention: str | None, state: str | None,
                            gateway_id: str | None, after: SortKey | None, limit: int,
                            needs_human: bool | None = None,
                            with_keys: bool = False) -> tuple[list[dict[str, Any]], SortKey | None, int]:
        tick_at = self.service.monitor.last_tick_at or 0
        pool = self._pool(scope, attention, gateway_id, needs_human)
        args = (pool, attention, state, gateway_id, after, limit, tick_at, needs_human)
        # A million sessions take a second to sort: never on the loop that serves ingest.
        page, total = await asyncio.to_thread(page_of, *args) if len(pool) > LARGE_LISTING else page_of(*args)
        next_key = sort_key(page[limit - 1], tick_at) if len(page) > limit else None
        items = [self.session_json(s) for s in page[:limit]]
        if with_keys:  # for a fleet-wide read, which merges instances' pages in this order
            for item, session in zip(items, page):
                item["sortKey"] = list(sort_key(session, tick_at))
        return items, next_key, total

    def under_attention(self, scope: Scope, *, attention: str | None, reason: str | None, gateway_id: str | None,
                        needs_human: bool | None) -> list[Session]:
        """The sessions under attention (or on the needs-human list) that match, most severe and
        oldest first: what a bulk recovery may act on."""
        wanted = KIND_OF_LABEL.get(attention or "")
        found = [
            s for s in self.store.considered()
            if visible(scope, s.gateway) and (s.attention is not None or s.needs_human is not None)
            and (gateway_id is None or s.gateway == gateway_id)
            and (wanted is None or (s.attention is not None and s.attention.event_type == wanted))
            and (reason is None or (s.attention is not None and s.attention.reason == reason))
            and (needs_human is None or (s.needs_human is not None) == needs_human)
        ]
        tick_at = self.service.monitor.last_tick_at or 0
        return sorted(found, key=lambda s: sort_key(s, tick_at))

    def resolve(self, scope: Scope, key: str, gateway_id: str | None) -> Session:
        """The one session `key` names within `scope` (by key or session id); UnknownSession or
        AmbiguousSession (several gateways have it) otherwise."""
        store = self.store
        if gateway_id is not None:
            found = [s for s in [store.find(gateway_id, key)] if s is not None]
        else:
            found = store.find_all(key)
        found = [s for s in found if visible(scope, s.gateway)]
        if not found:
            raise UnknownSession(key)
        if len(found) > 1:
            raise AmbiguousSession([s.gateway for s in found])
        return found[0]

    async def session_detail(self, scope: Scope, key: str, gateway_id: str | None) -> dict[str, Any]:
        session = self.resolve(scope, key, gateway_id)
        # Everything in memory is read in one go, before the journal read below yields the loop: a
        # recovery completing meanwhile must not show up in the history of a state it has not changed.
        item = self.session_json(session)
        recoveries = list(reversed(session.recoveries or []))
        gateway_recoveries = list(reversed(session.gateway_recoveries or []))
        keys = {session.key, session.session_key, session.session_id}
        item["recentEvents"] = await asyncio.to_thread(
            self.service.journal.recent_events, session.gateway, [k for k in keys if k], session.last_row,
            RECENT_EVENTS,
        )
        item["recoveries"] = recoveries
        item["gatewayRecoveries"] = gateway_recoveries
        return item

    def _under_attention(self, scope: Scope) -> list[Session]:
        """Under attention now, or on the needs-human list (the page shows those first)."""
        return [s for s in self.store.considered()
                if (s.attention is not None or s.needs_human is not None) and visible(scope, s.gateway)]

    def attention_summary(self, scope: Scope) -> dict[str, Any]:
        by_type: Counter[str] = Counter()
        by_reason: Counter[tuple[str, str]] = Counter()
        per_gateway: dict[str, Counter[str]] = defaultdict(Counter)
        flagged = self._under_attention(scope)
        under = [s for s in flagged if s.attention is not None]
        for session in under:
            attention = session.attention
            assert attention is not None
            by_type[attention.event_type] += 1
            by_reason[(attention.event_type, attention.reason)] += 1
            per_gateway[session.gateway][attention.event_type] += 1
        oldest = heapq.nlargest(OLDEST_SHOWN, under, key=lambda s: s.attention.age_ms if s.attention else 0)
        return {
            "total": len(under),
            # what automation gave up on: for a person (README, "Actions")
            "needsHuman": [self.session_json(s) for s in flagged if s.needs_human is not None][:OLDEST_SHOWN],
            "byEventType": dict(by_type),
            "byReason": [{"eventType": kind, "reason": reason, "count": n}
                         for (kind, reason), n in sorted(by_reason.items())],
            "perGateway": {gateway: dict(counts) for gateway, counts in per_gateway.items()},
            "oldest": [self.session_json(s) for s in oldest],
        }

    def gateways(self, scope: Scope) -> list[dict[str, Any]]:
        service = self.service
        now = service.clock.now_ms()
        items = [
            {
                "gatewayId": info.gateway_id,
                "firstHeardAt": info.first_heard,
                "lastHeardAt": info.last_heard,
                "eventsAccepted": info.events_accepted,
                "silent": service.is_silent(info, now),
                "clockSkewMs": info.skew_ms,
                "sessions": self.store.session_count_of(info.gateway_id),
                "forwarderQueued": info.forwarder_queued,
                "forwarderDropped": info.forwarder_dropped,
                "gatewayVersion": info.gateway_version,
                "profile": service.monitor.profile_of(info),
                "maintenance": info.maintenance if info.in_maintenance(now) else None,
            }
            for info in self.store.gateway_infos() if visible(scope, info.gateway_id)
        ]
        items.sort(key=lambda g: g["gatewayId"])
        return items

    def overview(self, scope: Scope, *, with_keys: bool = False) -> dict[str, Any]:
        """Counts, the sessions under attention (most severe, oldest first), gateways. Walks only
        the sessions the monitor considers, never every session."""
        service = self.service
        settings = service.settings
        now = service.clock.now_ms()
        under = self._under_attention(scope)
        counts = Counter(LABEL[s.attention.event_type] for s in under if s.attention is not None)
        by_state: Counter[str] = Counter()
        for gateway, state, count in self.store.sessions_by_state():
            if visible(scope, gateway):
                by_state[state] += count
        gateways = [
            {
                "gatewayId": gateway["gatewayId"],
                "silent": gateway["silent"],
                "lastHeardAgoMs": max(0, now - gateway["lastHeardAt"]),
                "clockSkewMs": gateway["clockSkewMs"],
                "sessions": gateway["sessions"],
                "eventsAccepted": gateway["eventsAccepted"],
                "forwarderQueued": gateway["forwarderQueued"],
                "gatewayVersion": gateway["gatewayVersion"],
                "profile": gateway["profile"],
                "maintenance": gateway["maintenance"],
            }
            for gateway in self.gateways(scope)
        ]
        monitor = service.monitor
        return {
            "now": now,
            "counts": {label: counts[label] for label in ("stuck", "stalled", "long_running")},
            "underAttention": len(under),
            "items": [self._overview_item(s, with_keys) for s in heapq.nsmallest(OVERVIEW_LIMIT, under, key=sort_key)],
            "sessions": {"total": sum(by_state.values()),
                         "byState": {k: by_state[k] for k in ("processing", "waiting", "idle")}},
            "gateways": gateways,
            "monitor": {
                "running": monitor.running,
                "lastTickAgoMs": max(0, now - monitor.last_tick_at) if monitor.last_tick_at else None,
                "warnMs": settings.warn_ms,
                "abortMs": settings.abort_ms,
                "scanIntervalMs": settings.scan_interval_ms,
                "recoveryMode": settings.recovery_mode,
            },
        }

    def _overview_item(self, session: Session, with_keys: bool) -> dict[str, Any]:
        item = self.session_json(session)
        if with_keys:
            item["sortKey"] = list(sort_key(session))
        return item

    def session_counts(self) -> Iterable[SessionCount]:
        # (gateway, state, attention label, reason, on the needs-human list) -> sessions
        under: Counter[tuple[str, str, str, str | None, bool]] = Counter()
        oldest: dict[tuple[str, str, str, str | None, bool], int] = {}
        for session in self.store.considered():
            attention = session.attention
            needs_human = session.needs_human is not None
            if attention is None and not needs_human:
                continue
            key = (session.gateway, session.state, LABEL[attention.event_type] if attention else "none",
                   attention.reason if attention else None, needs_human)
            under[key] += 1
            if attention is not None:
                oldest[key] = max(oldest.get(key, 0), attention.age_ms)
        flagged: Counter[tuple[str, str]] = Counter()
        now = self.service.clock.now_ms()
        quiet = {info.gateway_id for info in self.store.gateway_infos() if info.in_maintenance(now)}
        rows = []
        for key, count in under.items():
            gateway, state, label, reason, needs_human = key
            flagged[(gateway, state)] += count
            rows.append(SessionCount(gateway, state, label, reason, count, oldest.get(key), needs_human,
                                     gateway in quiet))
        for gateway, state, count in self.store.sessions_by_state():
            rest = count - flagged[(gateway, state)]
            if rest > 0 or count:
                rows.append(SessionCount(gateway, state, "none", None, max(0, rest), maintenance=gateway in quiet))
        return rows

    def gateway_statuses(self) -> Iterable[GatewayStatus]:
        service = self.service
        now = service.clock.now_ms()
        return [
            GatewayStatus(info.gateway_id, service.is_silent(info, now), info.skew_ms, info.forwarder_queued,
                          info.in_maintenance(now))
            for info in self.store.gateway_infos()
        ]
