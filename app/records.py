"""The records the journal carries, and the one function that applies each of them to the store.

The journal's protocol is log-then-apply (docs/durability.md): a change is built as a record,
appended, committed, and only then applied to the store, in journal order, by `apply` below.
A restart replays the committed records through the same `apply`. So the store holds exactly
what is committed — an event whose commit failed was never applied and its idempotency key
never taken — and a record that depends on the state it meets (a recovery outcome and the
generation guard, an eviction) decides when it is applied, identically live and on replay.

Every record is self-contained: a failed commit leaves a gap in the ids, never a dangling half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from app.events import Event
from app.outcomes import RecoveryOutcome, RecoveryRequest, outcome_from, request_from
from app.store import Attention, Session, Store, dedupe_key
from app.vocabulary import SEED

# Record kinds, as stored in the journal's `kind` column.
EVENTS = "B"  # the accepted events of one ingest request, with their idempotency keys
MEMORY = "M"  # the monitor's memory of one session (attention, backoff)
REQUESTED = "R"  # a recovery requested for one session
COMPLETED = "C"  # what the gateway answered to a recovery request
EVICTED = "X"  # sessions evicted (TTL or the session cap)
APPLIED_STATE = "S"  # history only: a transition this service applied (a recovery); never replayed
VERIFIED = "V"  # what became of an applied recovery: verified or ineffective
NEEDS_HUMAN = "H"  # a session put on the needs-human list (its automatic budget is spent)
DISMISSED = "D"  # an operator took a session off the needs-human list
AUDIT = "A"  # history only: an operator's action, who, why and what came of it; never replayed
MAINTENANCE = "N"  # a gateway's maintenance window began (a window) or ended (None)
LEGACY_EVENT = "E"  # one event per row, as release 0.1 wrote them: replayed, never written

_pack = msgspec.msgpack.encode
_unpack = msgspec.msgpack.decode
_events_decoder = msgspec.json.Decoder(list[Event])
_event_decoder = msgspec.json.Decoder(Event)


@dataclass(slots=True, eq=False)
class Record:
    kind: str
    gateway: str | None  # None: the record spans several gateways
    session: str | None
    at: int | None
    body: bytes
    payload: Any  # `body` decoded: what `apply` reads
    dkey: bytes | None = None  # EVENTS: the idempotency keys, in event order
    id: int = 0  # set by the journal on append
    # resolved by the journal once the record is applied (or failed, if its commit failed)
    waiter: Any = None

    def row(self) -> tuple[int, str, str | None, str | None, int | None, bytes | None, bytes]:
        return (self.id, self.kind, self.gateway, self.session, self.at, self.dkey, self.body)


# -- building records (on the event loop) -------------------------------------------------------


def events_record(events: list[Event], received_at: int) -> Record:
    """`events` already carry their gatewayId (ingest fills in the default)."""
    gateways = {event.gatewayId for event in events}
    keys = [dedupe_key(event.gatewayId or "", event) for event in events]
    return Record(
        EVENTS,
        gateways.pop() if len(gateways) == 1 else None,
        None,
        received_at,
        msgspec.json.encode(events),
        events,
        _pack(keys) if any(key is not None for key in keys) else None,
    )


def memory_record(session: Session, attention: Attention | None, last_stuck_warn_age: int | None,
                  last_long_running_warn_age: int | None, stalled_reported_at: int | None) -> Record:
    payload = [session.generation, attention.to_state() if attention else None,
               last_stuck_warn_age, last_long_running_warn_age, stalled_reported_at]
    return Record(MEMORY, session.gateway, session.key, None, _pack(payload), payload)


def requested_record(session: Session, request: RecoveryRequest) -> Record:
    return Record(REQUESTED, session.gateway, session.key, None, _pack(request), request)


def completed_record(gateway: str, key: str, request: RecoveryRequest, outcome: RecoveryOutcome,
                     now: int, profile: str) -> Record:
    """`profile`: the gateway's classifier profile when the answer came, whose guard applies it
    (kept in the record, so a replay applies it the same way)."""
    payload = [request, outcome, now, profile]
    return Record(COMPLETED, gateway, key, now, _pack(payload), payload)


def verified_record(session: Session, result: str, at: int) -> Record:
    payload = [result, at]
    return Record(VERIFIED, session.gateway, session.key, at, _pack(payload), payload)


def needs_human_record(session: Session, cause: str, at: int) -> Record:
    payload = [cause, at]
    return Record(NEEDS_HUMAN, session.gateway, session.key, at, _pack(payload), payload)


def dismissed_record(session: Session, at: int) -> Record:
    payload = [at]
    return Record(DISMISSED, session.gateway, session.key, at, _pack(payload), payload)


def maintenance_record(gateway: str, window: dict[str, Any] | None, at: int) -> Record:
    payload = [window]
    return Record(MAINTENANCE, gateway, None, at, _pack(payload), payload)


def audit_record(entry: dict[str, Any]) -> Record:
    """One audit entry (`GET /v1/audit`): JSON, read back as it was written."""
    return Record(AUDIT, entry.get("gatewayId"), entry.get("sessionKey"), entry["at"], msgspec.json.encode(entry),
                  entry)


def eviction_record(gateway: str, sessions: list[Session]) -> Record:
    """Sessions of one gateway, each with the time it was last touched when it was chosen."""
    payload = [[session.key, session.touched_at()] for session in sessions]
    return Record(EVICTED, gateway, None, None, _pack(payload), payload)


def applied_state_record(session: Session, reason: str, at: int) -> Record:
    body = {"type": "session.state", "gatewayId": session.gateway, "sessionKey": session.session_key,
            "sessionId": session.session_id, "state": session.state, "reason": reason,
            "queueDepth": session.queue_depth, "ts": at, "appliedByService": True}
    return Record(APPLIED_STATE, session.gateway, session.key, at, msgspec.json.encode(body), None)


# -- reading records back (restore) ----------------------------------------------------------


def from_row(row_id: int, kind: str, gateway: str | None, session: str | None, at: int | None,
             body: bytes) -> Record:
    if kind == EVENTS:
        payload: Any = _events_decoder.decode(body)
    elif kind == LEGACY_EVENT:
        payload = [_event_decoder.decode(body)]
        kind = EVENTS
    elif kind == APPLIED_STATE:
        payload = None
    elif kind == AUDIT:
        payload = msgspec.json.decode(body) if body else None  # None: emptied at the byte budget
    elif kind == EVICTED and not body:  # release 0.1: one session per row, no touch time
        payload = [[session, None]]
    else:
        payload = _unpack(body)
        if kind == MEMORY and len(payload) == 4:  # release 0.1: no generation
            payload = [None, *payload]
        elif kind == COMPLETED and len(payload) == 5:  # release 0.1: [request, outcome, entry, applied, now]
            payload = [payload[0], payload[1], payload[4]]
        if kind == REQUESTED:
            payload = request_from(payload)
        elif kind == COMPLETED:  # before 0.3 no profile: the seed's guard was the only one
            payload = [request_from(payload[0]), outcome_from(payload[1]), payload[2],
                       payload[3] if len(payload) > 3 else SEED]
    return Record(kind, gateway, session, at, body, payload, id=row_id)


def history_events(body: bytes, kind: str, at: int | None, gateway: str, keys: set[str]) -> list[dict[str, Any]]:
    """The events of one history row that belong to a session of `gateway` known by `keys`,
    oldest first."""
    items = msgspec.json.decode(body)
    if kind != EVENTS:
        items = [items]
    items = [e for e in items if e.get("gatewayId") in (gateway, None)
             and (e.get("sessionKey") in keys or e.get("sessionId") in keys)]
    for item in items:
        item["receivedAt"] = at
    return items


def dedupe_keys(dkey: bytes) -> list[tuple[Any, ...] | None]:
    return [tuple(key) if key is not None else None for key in _unpack(dkey)]


# -- applying (live after the commit, and on replay) --------------------------------------------


class EventsInProgress:
    """An EVENTS record applied a slice at a time (the journal yields to the loop in between):
    a 10,000-event request must not hold the loop for its whole apply."""

    def __init__(self, store: Store, record: Record) -> None:
        self.store = store
        self.record = record
        self.results: list[Any] = []

    def step(self, count: int) -> bool:
        """Apply the next `count` events; True once all are applied."""
        events = self.record.payload
        start = len(self.results)
        at = self.record.at or 0
        row = self.record.id
        apply_event = self.store.apply_event
        for event in events[start:start + count]:
            result = apply_event(event, at)
            if result.session is not None:
                result.session.last_row = row  # where its recent events are read back from
            self.results.append(result)
        return len(self.results) >= len(events)


def apply(store: Store, record: Record) -> Any:
    """Apply one committed record; returns what the caller waiting on it needs to know.

    EVENTS: the list of `ApplyResult`s; MEMORY: whether it still applied; REQUESTED: whether
    the recovery is now in flight; COMPLETED: a `RecoveryCompletion`; EVICTED: the sessions
    evicted.
    """
    kind = record.kind
    payload = record.payload
    if kind == EVENTS:
        progress = EventsInProgress(store, record)
        progress.step(len(payload))
        return progress.results
    if kind == EVICTED:
        evicted = []
        gateway = record.gateway or ""
        for key, touched in payload:
            session = store.session(gateway, key)
            # Untouched since it was chosen: an event that came in between keeps it.
            if session is not None and touched in (None, session.touched_at()) and session.inflight is None:
                store.evict(session)
                evicted.append(session)
        return evicted
    if kind == MAINTENANCE:
        (window,) = payload
        return store.set_maintenance(record.gateway or "", window)
    session = store.find(record.gateway or "", record.session or "") if record.session else None
    if kind == APPLIED_STATE:
        if session is not None:
            session.last_row = record.id
        return None
    if kind == AUDIT:
        return record.id  # history only: what the operator is answered with
    if kind == MEMORY:
        generation, attention, stuck_age, long_age, stalled_at = payload
        # A session event in between cleared the memory this record would set: it stays cleared.
        if session is None or generation not in (None, session.generation):
            return False
        store.set_monitor_memory(session, Attention(*attention) if attention else None,
                                 stuck_age, long_age, stalled_at)
        return True
    if kind == REQUESTED:
        return session is not None and store.begin_recovery(session, payload)
    if kind == COMPLETED:
        request, outcome, now, profile = payload
        return store.complete_recovery(session, request, outcome, now, profile)
    if kind == VERIFIED:
        result, at = payload
        return store.finish_verification(session, result, at) if session is not None else None
    if kind == NEEDS_HUMAN:
        cause, at = payload
        return session is not None and store.mark_needs_human(session, cause, at)
    if kind == DISMISSED:
        (at,) = payload
        return session is not None and store.dismiss(session, at)
    raise ValueError(f"unknown journal record kind {kind!r}")

