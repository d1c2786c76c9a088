"""Outbound notifications: the changes of app/changes.py POSTed to the operator's targets
(`OPENCLAW_DIAG_NOTIFY`; README, "Notifications"), for those who run the service without
Prometheus and Alertmanager.

Each target gets its own bounded queue and its own sender task, so a slow or dead target delays
nobody else, and nothing here is on the path of ingest or the scan: the feed hands changes over
on the event loop and returns at once. A failed delivery is retried with backoff
(RETRY_FIRST_S doubling to RETRY_MAX_S) up to MAX_ATTEMPTS times, then dropped; a full queue
drops its oldest change. Both are counted (`openclaw.monitor.notify.failures`, by reason) and
shown per target in `/readyz`. Addresses come only from the operator's setting; no redirect is
followed.

Signing (a target with a `secret`): `X-OpenClaw-Timestamp: <epoch seconds>` and
`X-OpenClaw-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`, so a receiver can
check both who sent it and that it is fresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

import httpx
import msgspec

from app.formatting import human_ms
from app.vocabulary import CHANGE_EVENTS

if TYPE_CHECKING:  # the settings read this module's parse_targets: it stays light
    from app.changes import Change, ChangeFeed, Subscription
    from app.clock import Clock

log = logging.getLogger("openclaw.diagnostics.notify")

QUEUE = 1_000  # changes waiting per target
MAX_ATTEMPTS = 6
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0
TIMEOUT_S = 5.0


class NotifyTarget(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    format: Literal["json", "slack"] = "json"
    secret: str | None = None
    events: list[str] | None = None  # None: every event


def parse_targets(text: str) -> list[NotifyTarget]:
    """`OPENCLAW_DIAG_NOTIFY` as JSON: a list of targets. Raises ValueError saying what is wrong."""
    if not text.strip():
        return []
    try:
        targets = msgspec.json.decode(text, type=list[NotifyTarget])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a JSON list of targets ({exc})") from None
    for index, target in enumerate(targets):
        if not target.url.startswith(("http://", "https://")):
            raise ValueError(f"target {index}: url must be http(s)")
        unknown = set(target.events or ()) - set(CHANGE_EVENTS)
        if unknown:
            raise ValueError(f"target {index}: unknown events {', '.join(sorted(unknown))} (known: {', '.join(CHANGE_EVENTS)})")
    return targets


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


_TITLES = {
    "attention.opened": "{label} session", "attention.changed": "{label} now", "attention.cleared": "No longer {previous}",
    "recovery.requested": "Recovery requested", "recovery.completed": "Recovery {status}",
    "recovery.verified": "Recovery verified", "recovery.ineffective": "Recovery ineffective",
    "session.needs_human": "Needs a human",
    "maintenance.began": "Maintenance began", "maintenance.ended": "Maintenance ended",
    "gateway.silent": "Gateway silent", "gateway.back": "Gateway back",
}
_LABELS = {"session.stuck": "stuck", "session.stalled": "stalled", "session.long_running": "long-running"}


def slack_body(change: Change, public_url: str) -> dict[str, Any]:
    """A readable message (Slack's incoming-webhook `text`, mrkdwn) with a link to the session."""
    data = change.data
    label = _LABELS.get(data.get("eventType", ""), "")
    previous = _LABELS.get((data.get("previous") or {}).get("eventType", ""), "under attention")
    title = _TITLES[change.event].format(label=label.capitalize() or "A", previous=previous,
                                         status=data.get("status", ""))
    parts = [f"*{title}* on gateway `{change.gateway}`"]
    key = data.get("sessionKey") or data.get("sessionId")
    if key:
        parts.append(f"session `{key}`")
    reason = data.get("reason") or data.get("outcomeReason")
    if reason:
        parts.append(f"reason `{reason}`")
    if data.get("ageMs") is not None:
        parts.append(f"for {human_ms(data['ageMs'])}")
    text = " · ".join(parts)
    if public_url:
        if key and data.get("sessionKey"):
            link = f"{public_url}/ui/session?" + urlencode({"gatewayId": change.gateway, "sessionKey": data["sessionKey"]})
        else:
            link = f"{public_url}/?" + urlencode({"gatewayId": change.gateway})
        text += f" · <{link}|open>"
    return {"text": text}


class TargetQueue:
    """One target's pending changes and what became of its deliveries."""

    def __init__(self, index: int, target: NotifyTarget) -> None:
        self.index = index
        self.target = target
        self.pending: deque[Change] = deque()
        self.ready = asyncio.Event()
        self.delivered = 0
        self.failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_delivered_at: int | None = None

    def wants(self, change: Change) -> bool:
        return self.target.events is None or change.event in self.target.events

    def health(self) -> dict[str, Any]:
        return {"target": self.index, "format": self.target.format, "queued": len(self.pending),
                "delivered": self.delivered, "failures": self.failures, "dropped": self.dropped,
                "lastError": self.last_error, "lastDeliveredAt": self.last_delivered_at}


class Notifier:
    def __init__(self, feed: ChangeFeed, targets: list[NotifyTarget], *, clock: Clock, recorder: Any,
                 public_url: str = "", client: httpx.AsyncClient | None = None) -> None:
        self.feed = feed
        self.clock = clock
        self.recorder = recorder
        self.public_url = public_url.rstrip("/")
        self.queues = [TargetQueue(i, target) for i, target in enumerate(targets)]
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self.queues:
            return
        # subscribed now, not when the task first runs: nothing published in between is missed
        subscription = self.feed.subscribe(None)
        self._tasks.append(asyncio.create_task(self._distribute(subscription), name="openclaw-notify"))
        for queue in self.queues:
            self._tasks.append(asyncio.create_task(self._send(queue), name=f"openclaw-notify-{queue.index}"))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    def health(self) -> list[dict[str, Any]]:
        return [queue.health() for queue in self.queues]

    # -- taking changes off the feed -----------------------------------------------------------

    async def _distribute(self, subscription: Subscription) -> None:
        last_id: int | None = None
        try:
            while True:
                try:
                    change = await subscription.next(60.0)
                except TimeoutError:
                    continue
                if change is None:  # fell behind: pick up again from the backlog
                    subscription = self.feed.subscribe(None)
                    missed, _ = self.feed.since(last_id, None)
                    for old in missed:
                        self.enqueue(old)
                        last_id = old.id
                    continue
                if last_id is None or change.id > last_id:
                    self.enqueue(change)
                    last_id = change.id
        finally:
            self.feed.unsubscribe(subscription)

    def enqueue(self, change: Change) -> None:
        """Hand a change to every target that wants it (a full queue drops its oldest)."""
        for queue in self.queues:
            if not queue.wants(change):
                continue
            if len(queue.pending) >= QUEUE:
                queue.pending.popleft()
                queue.dropped += 1
                self._failed(queue, "queue_full", "queue full: the oldest change was dropped")
            queue.pending.append(change)
            queue.ready.set()

    # -- delivering ----------------------------------------------------------------------------

    async def _send(self, queue: TargetQueue) -> None:
        while True:
            await queue.ready.wait()
            while queue.pending:
                change = queue.pending[0]
                await self._deliver(queue, change)
                if queue.pending and queue.pending[0] is change:
                    queue.pending.popleft()
            queue.ready.clear()

    async def _deliver(self, queue: TargetQueue, change: Change) -> None:
        target = queue.target
        body = msgspec.json.encode(slack_body(change, self.public_url) if target.format == "slack"
                                   else change.as_json())
        delay = RETRY_FIRST_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            headers = {"Content-Type": "application/json", "User-Agent": "openclaw-diagnostics"}
            if target.secret:
                timestamp = self.clock.now_ms() // 1000
                headers["X-OpenClaw-Timestamp"] = str(timestamp)
                headers["X-OpenClaw-Signature"] = sign(target.secret, timestamp, body)
            try:
                response = await self._client.post(target.url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    queue.delivered += 1
                    queue.last_delivered_at = self.clock.now_ms()
                    return
                reason, error = "http_status", f"HTTP {response.status_code}"
            except httpx.TimeoutException:
                reason, error = "timeout", f"no answer within {TIMEOUT_S:g} s"
            except httpx.HTTPError as exc:
                reason, error = "connection", type(exc).__name__
            self._failed(queue, reason, error)
            if attempt < MAX_ATTEMPTS:
                await self.clock.sleep_until(self.clock.now_ms() + int(delay * 1000))
                delay = min(RETRY_MAX_S, delay * 2)
        queue.dropped += 1
        self._failed(queue, "gave_up", f"dropped after {MAX_ATTEMPTS} attempts")

    def _failed(self, queue: TargetQueue, reason: str, error: str) -> None:
        queue.failures += 1
        queue.last_error = error
        self.recorder.notify_failed(reason)
        log.warning("notification target %d: %s", queue.index, error)  # never its URL: it may hold a secret
