"""Which session an event belongs to: keys, session ids and run ids, and the aliases that join them."""

from __future__ import annotations

from app.events import Event
from app.store.model import (
    _STATE_RANK,
    FORMER_IDS_KEPT,
    HISTORY_LIMIT,
    IDLE,
    MAX_RUNS_PER_SESSION,
    GatewayInfo,
    Session,
)


class Identity:
    """Finding, creating, linking and merging sessions.

    Part of `Store` (app/store/store.py), which owns the state these methods change.
    """

    def find(self, gateway_id: str, key: str) -> Session | None:
        info = self._gateways.get(gateway_id)
        if info is None:
            return None
        session = info.sessions.get(key)
        if session is None and key in info.aliases:
            session = info.sessions.get(info.aliases[key])
        return session

    def find_all(self, key: str) -> list[Session]:
        found = []
        for gateway_id in self._gateways:
            session = self.find(gateway_id, key)
            if session is not None:
                found.append(session)
        return found

    def _resolve(self, info: GatewayInfo, event: Event, create: bool, ts: int) -> Session | None:
        skey, sid = event.sessionKey, event.sessionId
        sessions = info.sessions
        if skey is not None:
            session = sessions.get(skey)
            if sid is not None and info.aliases.get(sid) != skey:
                session = self._link(info, sid, skey, session, ts)
            if session is None and create:
                session = self._create(info, skey, skey, sid, ts)
            elif session is not None and sid is not None and session.session_id != sid:
                self._change(session)
                if session.session_id is not None:
                    session.former_ids = ((session.former_ids or []) + [session.session_id])[-FORMER_IDS_KEPT:]
                session.session_id = sid
            return session
        if sid is not None:
            session = sessions.get(info.aliases.get(sid, sid))
            if session is None and create:
                session = self._create(info, sid, None, sid, ts)
            return session
        if event.runId is not None:
            key = info.runs.get(event.runId)
            if key is not None:
                return sessions.get(key)
        return None

    def _create(self, info: GatewayInfo, key: str, skey: str | None, sid: str | None, ts: int) -> Session:
        session = Session(info.gateway_id, key, skey, sid, IDLE, 0, 0, ts)
        info.sessions[key] = session
        self._sessionless.pop(info.gateway_id, None)
        if sid is not None and skey is not None:
            info.aliases[sid] = key
        self.session_count += 1
        self._state_counts[(session.gateway, IDLE)] += 1
        self.changed(session)
        return session

    def _link(self, info: GatewayInfo, sid: str, skey: str, target: Session | None, ts: int) -> Session | None:
        """Link sessionId to sessionKey; fold a record known only by the id into the key's."""
        previous_key = info.aliases.get(sid)
        if previous_key is not None and previous_key != skey:
            old = info.sessions.get(previous_key)
            if old is not None and (old.session_id == sid or sid in (old.former_ids or ())):
                self._change(old)
                # re-linked: the old record keeps its history, not the id
                if old.session_id == sid:
                    old.session_id = None
                if old.former_ids and sid in old.former_ids:
                    old.former_ids = [i for i in old.former_ids if i != sid] or None
        info.aliases[sid] = skey
        orphan = info.sessions.get(sid) if sid != skey else None
        if orphan is None or orphan.session_key is not None:
            return target
        if target is None:
            # The id-only record becomes the key's record.
            self._change(orphan)
            del info.sessions[sid]
            self.removed(info.gateway_id, sid)
            orphan.key = skey
            orphan.session_key = skey
            info.sessions[skey] = orphan
            self._rekey_runs(info, orphan)
            return orphan
        self._merge(info, target, orphan)
        return target

    def _merge(self, info: GatewayInfo, target: Session, orphan: Session) -> None:
        self._change(target)
        self.before_change(orphan)
        if (orphan.last_activity, _STATE_RANK[orphan.state]) > (target.last_activity, _STATE_RANK[target.state]):
            self._set_state(target, orphan.state)
        target.last_activity = max(target.last_activity, orphan.last_activity)
        target.queue_depth = max(target.queue_depth, orphan.queue_depth)
        target.generation = max(target.generation, orphan.generation) + 1
        target.last_row = max(target.last_row, orphan.last_row)
        target.active_queued_turn = target.active_queued_turn or orphan.active_queued_turn
        target.clear_monitor_memory()
        if orphan.activity is not None:
            if target.activity is None:
                target.activity = orphan.activity
            else:
                target.activity.merge(orphan.activity)
        if orphan.runs:
            target.runs = {**(target.runs or {}), **orphan.runs}
        if orphan.recoveries:
            merged = (target.recoveries or []) + orphan.recoveries
            merged.sort(key=lambda r: r.get("requestedAt") or 0)
            target.recoveries = merged[-HISTORY_LIMIT:]
        if orphan.gateway_recoveries:
            target.gateway_recoveries = ((target.gateway_recoveries or []) + orphan.gateway_recoveries)[-HISTORY_LIMIT:]
        if target.gateway_verdict is None:
            target.gateway_verdict = orphan.gateway_verdict
        if orphan.usage:
            target.usage = [a + b for a, b in zip(target.usage or [0.0] * 6, orphan.usage)]
        if target.inflight is None:
            target.inflight = orphan.inflight
        target.session_id = orphan.session_id or target.session_id
        self._drop(info, orphan)
        self._rekey_runs(info, target)
        self._reindex(target)

    def _claim_run(self, info: GatewayInfo, session: Session, run_id: str, expires: int | None) -> None:
        """Map runId to this session (None: while the run is active); one session owns a run id."""
        previous_key = info.runs.get(run_id)
        if previous_key is not None and previous_key != session.key:
            previous = info.sessions.get(previous_key)
            if previous is not None and previous.runs and run_id in previous.runs:
                self._change(previous)
                del previous.runs[run_id]
        info.runs[run_id] = session.key
        if session.runs is None:
            session.runs = {}
        runs = session.runs
        runs[run_id] = expires
        if len(runs) > MAX_RUNS_PER_SESSION:
            # Bounded, so no event pays for a long history: the oldest ended run goes first, else
            # the oldest (a gateway runs one or two at a time; dozens open means lost ends).
            dropped = next((r for r, until in runs.items() if until is not None), next(iter(runs)))
            del runs[dropped]
            if info.runs.get(dropped) == session.key:
                del info.runs[dropped]
            self.bounded_evictions["run"] += 1

    def _rekey_runs(self, info: GatewayInfo, session: Session) -> None:
        for run_id in session.runs or ():
            info.runs[run_id] = session.key

    def _expire_runs(self, info: GatewayInfo, session: Session, now: int) -> None:
        runs = session.runs
        if not runs:
            return
        expired = [run_id for run_id, expires in runs.items() if expires is not None and expires < now]
        for run_id in expired:
            del runs[run_id]
            if info.runs.get(run_id) == session.key:
                del info.runs[run_id]
