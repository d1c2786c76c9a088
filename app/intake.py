"""Accepting decoded events: the dedupe window, one journal record, then telemetry.

The HTTP ingest endpoint (app/http/ingest.py) decodes and authorizes a body; everything that
happens to its valid events after that is here, outside the HTTP package, so any other way in
(a second transport, a replay) goes through the same steps.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from app.decoding import Decoded, Rejection
from app.events import Event
from app.records import events_record
from app.store import (
    ACCEPTED,
    DEFAULT_GATEWAY,
    DUPLICATE,
    IGNORED,
    REJECTED,
    ApplyResult,
    dedupe_key,
)

if TYPE_CHECKING:
    from app.service import Service


def rejected_counts(decoded: Decoded, gateway: str | None) -> Counter[tuple[str, str, str]]:
    # a gateway-bound token decides; else the gateway the event named, if it could be read
    return Counter(
        (gateway or rejection.gateway or DEFAULT_GATEWAY, rejection.type, REJECTED) for rejection in decoded.rejected
    )


async def accept_events(service: Service, decoded: Decoded, home: str | None) -> dict[str, int]:
    """Journal the valid events as one record, and once it is committed and applied, feed
    telemetry. Returns outcome counts.

    An event whose idempotency key the store already holds is a duplicate of a committed one
    and is not journaled again; any other repeat (of an event still being committed, or within
    this body) is journaled and found a duplicate when applied, in journal order
    (app/records.py), so an event is never a "duplicate" of one that was not committed.
    """
    store = service.store
    recorder = service.recorder
    now = service.clock.now_ms()
    per_type: dict[tuple[str, str, str], int] = {}  # plain dicts: a Counter costs on the hot path
    fresh: list[Event] = []
    indexes: list[int] = []
    seen = store.dedupe.seen
    for index, event in decoded.events:
        gateway = event.gatewayId or DEFAULT_GATEWAY
        event.gatewayId = gateway
        key = dedupe_key(gateway, event)
        if key is not None and seen(key, now):
            counted = (gateway, event.type, DUPLICATE)
            per_type[counted] = per_type.get(counted, 0) + 1
        else:
            fresh.append(event)
            indexes.append(index)
    results: list[ApplyResult] = []
    if fresh:
        future = service.journal.submit(events_record(fresh, now))
        assert future is not None
        results = await future
    for index, event, result in zip(indexes, fresh, results):
        gateway = event.gatewayId or DEFAULT_GATEWAY
        outcome = result.outcome
        if outcome == REJECTED:  # refused when applied: the gateway bound (counted with the rest below)
            decoded.rejected.append(Rejection(index, [{
                "loc": ["body", index, "gatewayId"],
                "msg": f"{service.settings.max_gateways} gateways, all with sessions: no room for a new one "
                       "(OPENCLAW_DIAG_MAX_GATEWAYS)",
            }], event.type, gateway))
            continue
        counted = (gateway, event.type, outcome)
        per_type[counted] = per_type.get(counted, 0) + 1
        if outcome != ACCEPTED:
            continue
        if result.clamped:
            recorder.clock_clamped(gateway)
        if event.type == "session.state":
            recorder.session_state(gateway, event.state or "idle", event.reason)
        elif result.forwarder_dropped:
            recorder.forwarder_dropped(gateway, result.forwarder_dropped)
        recorder.event_applied(event, gateway)
    if decoded.rejected:
        for counted, count in rejected_counts(decoded, home).items():
            per_type[counted] = per_type.get(counted, 0) + count
    recorder.events_counted(per_type)
    outcomes = dict.fromkeys((ACCEPTED, DUPLICATE, IGNORED, REJECTED), 0)
    for (_, _, outcome), count in per_type.items():
        outcomes[outcome] += count
    for gateway in {gateway for gateway, _, _ in per_type}:
        service.check_skew(gateway, now)
    service.report_bounds()
    return outcomes
