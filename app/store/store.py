"""The store: owns every gateway's sessions and the indexes over them, and offers a read API.

It is a deterministic state machine. Each mutation takes its times as arguments (the receive
time of an event, the gateway-clock time of a monitor decision), so replaying the journal after a
crash rebuilds exactly the same state. It never reads a clock and does no I/O; the journal and
the monitor call it. Its methods are spread over app/store/identity.py, app/store/appliers.py
and app/store/recoveries.py, one idea each; the state and the read API are here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from app.store.appliers import EventAppliers
from app.store.dedupe import DedupeWindow
from app.store.identity import Identity
from app.store.model import (
    IDLE,
    MAX_GATEWAYS,
    GatewayInfo,
    Session,
    _intern,
)
from app.store.recoveries import RecoveryMemory
from app.store.tracking import _NO_TRACKING, ChangeTracker


class Store(Identity, EventAppliers, RecoveryMemory):
    """All gateways and their sessions, the candidate index and the dedupe window."""

    def __init__(self, *, max_clock_skew_ms: int = 60_000, tracker: ChangeTracker | None = None,
                 max_gateways: int = MAX_GATEWAYS) -> None:
        self.max_clock_skew_ms = max_clock_skew_ms
        self.max_gateways = max_gateways
        self._gateways: dict[str, GatewayInfo] = {}
        # gateways with no session, least recently heard first: the ones the bound evicts
        self._sessionless: dict[str, None] = {}
        self._candidates: set[Session] = set()
        self.dedupe = DedupeWindow()
        self.session_count = 0
        # (gateway, state) -> sessions, kept current so the sessions gauge never walks the map
        self._state_counts: Counter[tuple[str, str]] = Counter()
        # what a bound dropped to stay within it, by structure (gateway, run, tombstone), for
        # openclaw.monitor.bounded.evicted
        self.bounded_evictions: Counter[str] = Counter()
        tracker = tracker or _NO_TRACKING
        self.before_change = tracker.before_change
        self.changed = tracker.changed
        self.removed = tracker.removed

    def gateway(self, gateway_id: str, received_at: int) -> GatewayInfo | None:
        """The gateway, created if new; None when the bound is reached and every gateway has
        sessions (a new one is refused rather than an existing one's sessions dropped)."""
        info = self._gateways.get(gateway_id)
        if info is None:
            if len(self._gateways) >= self.max_gateways:
                if not self._sessionless:
                    return None  # the event is rejected (gateway_limit), and counted as such
                oldest = next(iter(self._sessionless))
                del self._sessionless[oldest]
                del self._gateways[oldest]
                self.bounded_evictions["gateway"] += 1
            gateway_id = _intern(gateway_id)
            info = self._gateways[gateway_id] = GatewayInfo(gateway_id, received_at, received_at)
            self._sessionless[gateway_id] = None
        elif gateway_id in self._sessionless:
            self._sessionless[gateway_id] = self._sessionless.pop(gateway_id)  # heard: to the back
        return info

    def restore_gateway(self, info: GatewayInfo) -> None:
        self._gateways[info.gateway_id] = info
        if not info.sessions:
            self._sessionless[info.gateway_id] = None

    # -- reading: everything outside the store reads through these ---------------------------

    def iter_sessions(self) -> Iterator[Session]:
        for info in self._gateways.values():
            yield from info.sessions.values()

    def gateway_info(self, gateway_id: str) -> GatewayInfo | None:
        return self._gateways.get(gateway_id)

    def gateway_infos(self) -> list[GatewayInfo]:
        """Every gateway, as a list: safe to hold across an await while events arrive."""
        return list(self._gateways.values())

    def session(self, gateway_id: str, key: str) -> Session | None:
        """The session stored under exactly this key (no alias lookup: that is `find`)."""
        info = self._gateways.get(gateway_id)
        return info.sessions.get(key) if info is not None else None

    def sessions_of(self, gateway_id: str) -> list[Session]:
        info = self._gateways.get(gateway_id)
        return list(info.sessions.values()) if info is not None else []

    def session_count_of(self, gateway_id: str) -> int:
        info = self._gateways.get(gateway_id)
        return len(info.sessions) if info is not None else 0

    def holds(self, session: Session) -> bool:
        """Whether `session` is still the one stored under its key (not merged away or evicted)."""
        info = self._gateways.get(session.gateway)
        return info is not None and info.sessions.get(session.key) is session

    def considered(self) -> list[Session]:
        """The sessions the monitor looks at (busy, queued, or with a verdict or recovery to keep)."""
        return list(self._candidates)

    def is_considered(self, session: Session) -> bool:
        return session in self._candidates

    @property
    def considered_count(self) -> int:
        return len(self._candidates)

    def sessions_by_state(self) -> list[tuple[str, str, int]]:
        """(gateway, state, sessions), kept current so that no reader walks the sessions."""
        return [(gateway, state, count) for (gateway, state), count in list(self._state_counts.items())]

    def _set_state(self, session: Session, state: str) -> None:
        if state != session.state:
            self._state_counts[(session.gateway, session.state)] -= 1
            self._state_counts[(session.gateway, state)] += 1
            session.state = state

    def _change(self, session: Session) -> None:
        self.before_change(session)
        self.changed(session)

    def _reindex(self, session: Session) -> None:
        if session.is_candidate():
            self._candidates.add(session)
        else:
            self._candidates.discard(session)
            session.attention = None

    def evict(self, session: Session) -> None:
        info = self._gateways.get(session.gateway)
        if info is None or info.sessions.get(session.key) is not session:
            return
        self._drop(info, session)

    def _drop(self, info: GatewayInfo, session: Session) -> None:
        self.before_change(session)
        del info.sessions[session.key]
        self.session_count -= 1
        self._state_counts[(session.gateway, session.state)] -= 1
        self._candidates.discard(session)
        for sid in (session.session_id, *(session.former_ids or ())):
            if sid is not None and info.aliases.get(sid) == session.key:
                del info.aliases[sid]
        for run_id in session.runs or ():
            if info.runs.get(run_id) == session.key:
                del info.runs[run_id]
        if not info.sessions:
            self._sessionless[info.gateway_id] = None
        self.removed(info.gateway_id, session.key)

    def evictable(self, now_of: Callable[[GatewayInfo], int], ttl_ms: int, limit: int) -> list[Session]:
        """Idle, queue 0, no activity markers, unchanged for ttl_ms (gateway clock): at most `limit`.

        Each gateway's sessions are kept in order of their last event, so this walks only the
        old end of each map and stops at the first session that is still fresh, or after
        `limit` visits. Every session it visits is moved behind the fresh ones: one that may not
        go (work queued, a recovery in flight) is not visited again until newer traffic has
        passed it, and one chosen is not chosen twice while its eviction is being committed.
        So a walk costs what it visits, never what stays.
        """
        found: list[Session] = []
        visits = 0
        for info in self._gateways.values():
            horizon = now_of(info) - ttl_ms
            sessions = info.sessions
            visited = []
            for session in sessions.values():
                if session.touched_at() >= horizon or visits >= limit:
                    break
                visits += 1
                visited.append(session)
                if (
                    session.state == IDLE
                    and session.queue_depth == 0
                    and session.inflight is None
                    and (session.activity is None or not session.activity.has_markers())
                ):
                    found.append(session)
            for session in visited:
                sessions[session.key] = sessions.pop(session.key)
            if visits >= limit:
                break
        return found

    def least_recently_active(self, count: int) -> list[Session]:
        """For the session cap: the oldest idle sessions first, then the oldest of the rest."""
        idle: list[Session] = []
        busy: list[Session] = []
        for info in self._gateways.values():
            for session in info.sessions.values():
                if session.inflight is not None:
                    continue
                (idle if session.state == IDLE else busy).append(session)
                if len(idle) >= count:
                    break
        idle.sort(key=Session.touched_at)
        busy.sort(key=Session.touched_at)
        return (idle + busy)[:count]

    def forget_gateway(self, gateway_id: str) -> int:
        """Drop a gateway and its sessions from memory (not a change: nothing is reported)."""
        info = self._gateways.pop(gateway_id, None)
        self._sessionless.pop(gateway_id, None)
        if info is None:
            return 0
        for session in info.sessions.values():
            self._candidates.discard(session)
            self._state_counts[(gateway_id, session.state)] -= 1
        self.session_count -= len(info.sessions)
        return len(info.sessions)

    def restore_session(self, session: Session) -> None:
        info = self._gateways.get(session.gateway)
        if info is None:
            info = self._gateways[session.gateway] = GatewayInfo(session.gateway, 0, 0)
        info.sessions[session.key] = session
        self._sessionless.pop(session.gateway, None)
        self.session_count += 1
        self._state_counts[(session.gateway, session.state)] += 1
        for former in session.former_ids or ():
            info.aliases.setdefault(former, session.key)
        if session.session_id is not None and session.session_key is not None:
            info.aliases[session.session_id] = session.key
        for run_id in session.runs or ():
            info.runs[run_id] = session.key
        if session.is_candidate():
            self._candidates.add(session)
