"""The journal: what was acknowledged is committed, and the store holds exactly that
(docs/durability.md).

- `interface.py`: what the service needs of a journal backend;
- `protocol.py`: the protocol every durable backend shares (group commits, log-then-apply,
  retries, copy-on-write checkpoints);
- `sqlite.py`: the embedded backend (the default: one instance, a data directory);
- `postgres.py`: the PostgreSQL backend (`OPENCLAW_DIAG_JOURNAL_URL`: several instances, and
  the gateway ownership that lets them share one fleet);
- `null.py`: keeps nothing (replay, benchmarks, in-process tests).
"""

from app.journal.interface import READY, JournalBackend, JournalError, JournalStatus
from app.journal.null import NullJournal
from app.journal.sqlite import DataDirLocked, Journal, acquire_lock

__all__ = ["READY", "DataDirLocked", "Journal", "JournalBackend", "JournalError", "JournalStatus", "NullJournal",
           "acquire_lock"]
