"""The session core (README, "Event vocabulary"; docs/design.md): the session model, identity
and aliases, the event appliers, the dedupe window and the store that owns them all.

`from app.store import Store, Session, ...` is the way in; the modules below are its rooms.
"""

from app.store.dedupe import DedupeWindow, dedupe_key
from app.store.model import (
    ACCEPTED,
    DEFAULT_GATEWAY,
    DUPLICATE,
    FUTURE_TOLERANCE_MS,
    IDLE,
    IGNORED,
    MAX_RUNS_PER_SESSION,
    MAX_TOMBSTONES,
    PROCESSING,
    REJECTED,
    TOMBSTONE_MS,
    WAITING,
    Activity,
    ApplyResult,
    Attention,
    GatewayInfo,
    RecoveryCompletion,
    Session,
)
from app.store.store import Store
from app.store.tracking import ChangeTracker

__all__ = [
    "ACCEPTED", "DEFAULT_GATEWAY", "DUPLICATE", "FUTURE_TOLERANCE_MS", "IDLE", "IGNORED",
    "MAX_RUNS_PER_SESSION", "MAX_TOMBSTONES", "PROCESSING", "REJECTED", "TOMBSTONE_MS", "WAITING",
    "Activity", "ApplyResult", "Attention", "ChangeTracker", "DedupeWindow", "GatewayInfo",
    "RecoveryCompletion", "Session", "Store", "dedupe_key",
]
