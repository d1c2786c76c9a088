"""What changes, as a feed: the change stream's source (`GET /v1/stream`, app/http/stream.py)
and the outbound notifier's (app/notify.py).

`ChangeFeed` numbers each change, keeps a bounded backlog for readers that come back with the
last id they saw, and hands every change to its live subscribers, each with its own bounded
queue (a reader that falls behind is cut off and resumes from the backlog, it never slows the
service). `ChangeWatcher` turns what the monitor and the recovery coordinator tell their
listeners into changes: a session's attention opened, changed or cleared; a recovery requested,
completed, verified or ineffective; a session that needs a human; a gateway gone silent or back. It runs on the event loop, like they do.

The ids start from the service's clock at start-up (times 1000), so they keep growing across
restarts and an id from before a restart is simply older than the backlog: the reader is told to
reload (`reset`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.clock import Clock
from app.queries import Scope, visible
from app.store import GatewayInfo, Session, Store
from app.vocabulary import (
    ATTENTION_CHANGED,
    ATTENTION_CLEARED,
    ATTENTION_OPENED,
    GATEWAY_BACK,
    GATEWAY_SILENT,
    MAINTENANCE_BEGAN,
    MAINTENANCE_ENDED,
    RECOVERY_COMPLETED,
    RECOVERY_INEFFECTIVE,
    RECOVERY_REQUESTED,
    RECOVERY_VERIFIED,
    SESSION_NEEDS_HUMAN,
    VERIFIED,
)

BACKLOG = 10_000  # changes kept for readers that resume
SUBSCRIBER_QUEUE = 1_000  # changes a live reader may be behind before it is cut off



@dataclass(frozen=True, slots=True)
class Change:
    id: int
    event: str  # one of CHANGE_EVENTS (app/vocabulary.py)
    gateway: str
    at: int  # service time, ms
    data: dict[str, Any]  # JSON-ready: what a reader needs to act on it

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "gatewayId": self.gateway, "at": self.at, **self.data}


@dataclass(eq=False)
class Subscription:
    scope: Scope
    queue: asyncio.Queue[Change | None] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE))
    cut: bool = False  # fell behind: its reader resumes from the backlog

    async def next(self, timeout: float) -> Change | None:
        """The next change; None when the subscription ended (cut off, or the feed closed).
        Raises TimeoutError when nothing came within `timeout` seconds."""
        return await asyncio.wait_for(self.queue.get(), timeout)


class ChangeFeed:
    def __init__(self, clock: Clock, *, backlog: int = BACKLOG) -> None:
        self.clock = clock
        self._next_id = clock.now_ms() * 1000
        self._backlog: deque[Change] = deque(maxlen=backlog)
        self._subscriptions: set[Subscription] = set()
        self.published = 0

    def publish(self, event: str, gateway: str, data: dict[str, Any]) -> Change:
        self._next_id += 1
        change = Change(self._next_id, event, gateway, self.clock.now_ms(), data)
        self._backlog.append(change)
        self.published += 1
        for subscription in list(self._subscriptions):
            if not visible(subscription.scope, gateway):
                continue
            try:
                subscription.queue.put_nowait(change)
            except asyncio.QueueFull:
                self._cut(subscription)
        return change

    def since(self, last_id: int | None, scope: Scope) -> tuple[list[Change], bool]:
        """The changes after `last_id` that `scope` may see, and whether the backlog still holds
        everything after it (False: the reader missed changes and must reload its picture)."""
        if last_id is None:
            return [], True
        oldest = self._backlog[0].id if self._backlog else self._next_id + 1
        complete = oldest <= last_id + 1 <= self._next_id + 1  # nothing between, and not from elsewhere
        return [c for c in self._backlog if c.id > last_id and visible(scope, c.gateway)], complete

    def subscribe(self, scope: Scope) -> Subscription:
        subscription = Subscription(scope)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def close(self) -> None:
        """Ends every subscription (the service is stopping)."""
        for subscription in list(self._subscriptions):
            self._cut(subscription)

    def _cut(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        subscription.cut = True
        while True:  # make room for the end marker
            try:
                subscription.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                subscription.queue.get_nowait()


class ChangeWatcher:
    """Listens to the monitor and the coordinator (their `listeners`) and publishes changes.

    Attention opened and changed come from the monitor's verdicts as it makes them; cleared is
    noticed at the end of each tick for every session that had attention and has none any more
    (an event that sent it idle clears it in the store, where the monitor does not look). The
    gateways' silence is compared tick to tick."""

    def __init__(self, feed: ChangeFeed, store: Store, *, is_silent: Callable[[GatewayInfo, int], bool],
                 session_hash: Callable[[str | None], str | None]) -> None:
        self.feed = feed
        self.store = store
        self.is_silent = is_silent
        self.session_hash = session_hash
        self._open: dict[tuple[str, str], dict[str, Any]] = {}  # (gateway, key) -> what was published
        self._silent: set[str] | None = None  # None until the first tick has looked

    def on_monitor(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "attention_changed":
            self._attention(payload)
        elif kind == "recovery":
            self.feed.publish(RECOVERY_REQUESTED, payload["gatewayId"], self._recovery_fields(payload))
        elif kind == "recovery_verified":
            event = RECOVERY_VERIFIED if payload["result"] == VERIFIED else RECOVERY_INEFFECTIVE
            self.feed.publish(event, payload["gatewayId"], self._recovery_fields(payload))
        elif kind == "needs_human":
            self.feed.publish(SESSION_NEEDS_HUMAN, payload["gatewayId"], self._recovery_fields(payload))
        elif kind in ("maintenance_began", "maintenance_ended"):
            event = MAINTENANCE_BEGAN if kind == "maintenance_began" else MAINTENANCE_ENDED
            self.feed.publish(event, payload["gatewayId"], {"reason": payload["reason"], "window": payload["window"]})
        elif kind == "tick":
            self._tick(payload["now"])

    def on_coordinator(self, kind: str, entry: dict[str, Any]) -> None:
        if kind == "recovery_completed":
            self.feed.publish(RECOVERY_COMPLETED, entry["gatewayId"], self._recovery_fields(entry))

    def _attention(self, payload: dict[str, Any]) -> None:
        key = (payload["gatewayId"], payload["key"])
        fields = {
            "sessionKey": payload["sessionKey"],
            "sessionId": payload["sessionId"],
            "sessionHash": self.session_hash(payload["sessionKey"] or payload["sessionId"]),
            "eventType": payload["eventType"],
            "reason": payload["reason"],
            "classification": payload["classification"],
            "activeWorkKind": payload["activeWorkKind"],
            "state": payload["state"],
            "ageMs": payload["ageMs"],
            "classifierProfile": payload["classifierProfile"],
        }
        previous = self._open.get(key)
        if previous is None:
            event = ATTENTION_OPENED
        else:
            event = ATTENTION_CHANGED
            fields["previous"] = {"eventType": previous["eventType"], "reason": previous["reason"]}
        self._open[key] = fields
        self.feed.publish(event, key[0], fields)

    def _tick(self, now: int) -> None:
        if self._silent is None:  # the first tick: what a restart restored is known, not new
            self._silent = {info.gateway_id for info in self.store.gateway_infos() if self.is_silent(info, now)}
            self._known(self.store.considered())
        for key, fields in list(self._open.items()):
            session = self.store.session(*key)
            if session is None or session.attention is None:
                del self._open[key]
                self.feed.publish(ATTENTION_CLEARED, key[0], {
                    "sessionKey": fields["sessionKey"], "sessionId": fields["sessionId"],
                    "sessionHash": fields["sessionHash"],
                    "previous": {"eventType": fields["eventType"], "reason": fields["reason"]},
                    "state": session.state if session is not None else None,
                    "evicted": session is None,
                })
        silent = {info.gateway_id for info in self.store.gateway_infos() if self.is_silent(info, now)}
        for gateway in sorted(silent - self._silent):
            self.feed.publish(GATEWAY_SILENT, gateway, {})
        for gateway in sorted(self._silent - silent):
            if self.store.gateway_info(gateway) is not None:  # an evicted gateway did not come back
                self.feed.publish(GATEWAY_BACK, gateway, {})
        self._silent = silent

    def on_ownership(self, kind: str, gateway: str) -> None:
        """A gateway came to this instance or left it (app/ownership.py). Neither is news: its
        open attention and its silence were published by the instance that had it, which
        publishes nothing more for it (a gateway's sessions leaving is no `attention.cleared`),
        and this one publishes what changes from now on."""
        if kind == "left":
            for key in [key for key in self._open if key[0] == gateway]:
                del self._open[key]
            if self._silent is not None:
                self._silent.discard(gateway)
        elif kind == "arrived" and self._silent is not None:  # before the first tick, it adopts all
            self._known(self.store.sessions_of(gateway))
            info = self.store.gateway_info(gateway)
            if info is not None and self.is_silent(info, self.feed.clock.now_ms()):
                self._silent.add(gateway)

    def _known(self, sessions: Iterable[Session]) -> None:
        """Attention the sessions already had when they came (restored, or taken over)."""
        for session in sessions:
            attention = session.attention
            if attention is not None and (session.gateway, session.key) not in self._open:
                self._open[(session.gateway, session.key)] = {
                    "sessionKey": session.session_key, "sessionId": session.session_id,
                    "sessionHash": self.session_hash(session.session_key or session.session_id),
                    "eventType": attention.event_type, "reason": attention.reason,
                }

    def _recovery_fields(self, entry: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in entry.items() if k != "gatewayId"}
        fields["sessionHash"] = self.session_hash(entry.get("sessionKey") or entry.get("sessionId"))
        return fields

