"""How the store tells the journal what changed (app/journal/protocol.py, CheckpointTracker)."""

from __future__ import annotations

from typing import Protocol

from app.store.model import Session


class ChangeTracker(Protocol):
    """Told of every change, so that a checkpoint can write only what changed (app/journal/protocol.py)."""

    def before_change(self, session: Session) -> None:
        """`session` is about to change (a checkpoint in progress copies it first)."""

    def changed(self, session: Session) -> None:
        """`session` changed or was created."""

    def removed(self, gateway: str, key: str) -> None:
        """The session stored under (gateway, key) went away (merged or evicted)."""


class _NoTracking:
    def before_change(self, session: Session) -> None:
        return None

    def changed(self, session: Session) -> None:
        return None

    def removed(self, gateway: str, key: str) -> None:
        return None


_NO_TRACKING = _NoTracking()
