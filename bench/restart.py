"""Restart time with a million sessions (`--parts restart`): kill -9, start again, time to ready.

A real `python -m app.cli serve` is filled with SESSIONS idle sessions (one `session.state`
each, every event with its own `eventId`, in bodies of 1,000: bench/ack_latency.py's fill), so
the journal holds a full dedupe window (1M idempotency keys, DEDUPE_MAX_KEYS) in its history
rows. Once a checkpoint covers them all, TAIL_REQUESTS bodies of 100 mixed events
(bench/workload.py) go in after it: the tail a restart replays. Then:

- `restart_1m_s`: from `kill -9` of that process to `/readyz` answering 200 from a new one on
  the same data directory (polled every 10 ms; interpreter start and imports included).
- `restart_anchor_s`: every row that restore reads — checkpoint sessions and meta, the dedupe
  window's journal rows, the tail — read with the journal's own connection settings
  (`app.journal.sqlite._connect`) and decoded with the same decoders (msgpack for session bodies
  and dedupe keys, `records.from_row` for the tail), nothing applied.
- `restart_ratio`: the two divided (goal <= 3).

On stderr: where the time went, from the same restore repeated in this process on the same
files with its phases timed (checkpoint read + sessions rebuilt, dedupe rebuilt, tail
replayed, the post-restore `gc.collect()` + `gc.freeze()`), and a bare `import app.main`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import servers
from bench.ack_latency import _fill
from bench.servers import ROOT, log
from bench.workload import body as workload_body

SESSIONS = 1_000_000
TAIL_REQUESTS = 200  # bodies of 100 mixed events after the last checkpoint
TAIL_BATCH = 100
CHECKPOINT_MS = 10_000


def _env(data_dir: Path, port: int, sessions: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENCLAW_DIAG_"))}
    env.update({
        "OPENCLAW_DIAG_DATA_DIR": str(data_dir),
        "OPENCLAW_DIAG_HOST": "127.0.0.1",
        "OPENCLAW_DIAG_PORT": str(port),
        "OPENCLAW_DIAG_INGEST_TOKENS": servers.TOKEN,
        "OPENCLAW_DIAG_CHECKPOINT_INTERVAL_MS": str(CHECKPOINT_MS),
        "OPENCLAW_DIAG_MAX_SESSIONS": str(2 * sessions + 100_000),
        "OTEL_SDK_DISABLED": "false",
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    })
    return env


def _serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> tuple[float, float]:
    """(monotonic time the port first accepted a connection, monotonic time /readyz said 200)."""
    deadline = time.monotonic() + timeout
    listening = float("nan")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode} before ready")
            try:
                response = client.get("/readyz")
            except httpx.TransportError:
                time.sleep(0.01)
                continue
            if listening != listening:  # nan: first answer of any kind
                listening = time.monotonic()
            if response.status_code == 200:
                return listening, time.monotonic()
            time.sleep(0.01)
    raise RuntimeError(f"/readyz not 200 after {timeout}s")


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _checkpoint_upto(data_dir: Path) -> int:
    path = data_dir / "checkpoint.db"
    if not path.exists():
        return 0
    with contextlib.closing(_ro(path)) as conn:
        try:
            row = conn.execute("SELECT v FROM meta WHERE k = 'upto'").fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0]) if row else 0


def _journal_max_id(data_dir: Path) -> int:
    with contextlib.closing(_ro(data_dir / "journal.db")) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()[0]


def _send_tail(port: int, tag: str) -> None:
    headers = {"Authorization": f"Bearer {servers.TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:
        for i in range(TAIL_REQUESTS):
            response = client.post("/v1/events", content=workload_body(i * TAIL_BATCH, TAIL_BATCH, tag))
            if response.status_code != 202:
                raise RuntimeError(f"tail answered {response.status_code}: {response.text[:200]}")


# -- the anchor: read and decode what restore reads, apply nothing ------------------------------

def anchor(data_dir: Path) -> tuple[float, dict[str, float]]:
    """Seconds to read every row the restore reads, with its settings and decoders; and counts."""
    from app import records
    from app.journal.protocol import unpack
    from app.journal.sqlite import _connect
    from app.store.model import DEDUPE_MAX_AGE_MS, DEDUPE_MAX_KEYS

    counts: dict[str, float] = {}
    started = time.perf_counter()
    conn = _connect(data_dir / "journal.db")
    ckpt = _connect(data_dir / "checkpoint.db")
    try:
        meta = dict(ckpt.execute("SELECT k, v FROM meta"))
        upto = int(meta.get("upto") or 0)
        if meta.get("checkpoints"):
            unpack(meta["checkpoints"])
        if meta.get("gateways"):
            unpack(meta["gateways"])
        sessions = 0
        for (body,) in ckpt.execute("SELECT body FROM sessions"):
            unpack(body)
            sessions += 1
        t_sessions = time.perf_counter()
        horizon = time.time_ns() // 1_000_000 - DEDUPE_MAX_AGE_MS
        rows = keys = 0
        for kind, dkey, at in conn.execute(
            "SELECT kind, dkey, at FROM journal WHERE kind IN ('B', 'E') AND dkey IS NOT NULL AND id <= ? "
            "AND at >= ? ORDER BY id DESC", (upto, horizon),
        ):
            found = [tuple(unpack(dkey))] if kind == records.LEGACY_EVENT else records.dedupe_keys(dkey)
            rows += 1
            keys += len(found)
            if keys >= DEDUPE_MAX_KEYS:
                break
        t_dedupe = time.perf_counter()
        conn.execute("SELECT coalesce(min(id), 1) - 1 FROM journal").fetchone()
        tail = tail_events = 0
        for row in conn.execute(
            "SELECT id, kind, gateway, session, at, body FROM journal WHERE id > ? ORDER BY id", (upto,)
        ):
            record = records.from_row(*row)
            tail += 1
            if record.kind == records.EVENTS:
                tail_events += len(record.payload)
        conn.execute("SELECT coalesce(max(id), 0) FROM journal").fetchone()
    finally:
        ckpt.close()
        conn.close()
    ended = time.perf_counter()
    counts.update(sessions=sessions, dedupe_rows=rows, dedupe_keys=keys, tail_rows=tail, tail_events=tail_events,
                  upto=upto, sessions_s=t_sessions - started, dedupe_s=t_dedupe - t_sessions,
                  tail_s=ended - t_dedupe)
    return ended - started, counts


# -- where the restart's time goes: the same restore in process, its phases timed ---------------

def breakdown(data_dir: Path) -> dict[str, float]:
    """Journal.open on a Store as Service.open does, then its gc.collect() + gc.freeze(), timed
    by phase. Runs on a copy of the data directory (the open starts a writer that compacts)."""
    from app import records
    from app.journal.sqlite import Journal
    from app.store import Store

    journal = Journal(data_dir)
    store = Store(tracker=journal.tracker)
    marks: dict[str, float] = {}
    restore, restore_dedupe, apply = journal._restore, journal._restore_dedupe, records.apply
    tail = [0.0, 0]

    def timed_restore(*args: Any) -> bool:
        marks["restore_start"] = time.perf_counter()
        try:
            return restore(*args)
        finally:
            marks["restore_end"] = time.perf_counter()

    def timed_dedupe(*args: Any) -> None:
        marks["dedupe_start"] = time.perf_counter()
        try:
            restore_dedupe(*args)
        finally:
            marks["dedupe_end"] = time.perf_counter()

    def timed_apply(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return apply(*args)
        finally:
            tail[0] += time.perf_counter() - t
            tail[1] += 1

    journal._restore = timed_restore  # type: ignore[method-assign]
    journal._restore_dedupe = timed_dedupe  # type: ignore[method-assign]
    records.apply = timed_apply  # type: ignore[assignment]
    opened = time.perf_counter()
    try:
        journal.open(store)
    finally:
        records.apply = apply  # type: ignore[assignment]
    open_end = time.perf_counter()
    gc.collect()
    gc.freeze()
    gc_end = time.perf_counter()
    sessions = store.session_count
    journal.close()
    gc.unfreeze()
    del store, journal
    gc.collect()
    return {
        "open_s": open_end - opened,
        "lock_schema_s": marks["restore_start"] - opened,
        "checkpoint_s": marks["dedupe_start"] - marks["restore_start"],
        "dedupe_s": marks["dedupe_end"] - marks["dedupe_start"],
        "tail_s": marks["restore_end"] - marks["dedupe_end"],
        "tail_apply_s": tail[0],
        "tail_rows": tail[1],
        "writer_start_s": open_end - marks["restore_end"],
        "gc_freeze_s": gc_end - open_end,
        "sessions": sessions,
    }


def _import_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import app.main, app.cli, uvicorn"], cwd=ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    return time.perf_counter() - started


def run(sessions: int, figures: dict[str, float]) -> None:
    tag = f"r{int(time.time())}"
    data_dir = Path(tempfile.mkdtemp(prefix="openclaw-bench-restart-"))
    port = servers.free_port()
    env = _env(data_dir, port, sessions)
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = _serve(env)
        _wait_ready(port, proc)
        fill_s = _fill(port, sessions, tag)
        filled_upto = _journal_max_id(data_dir)
        log(f"restart: {sessions} sessions filled in {fill_s:.1f} s; waiting for a checkpoint past row {filled_upto}")
        deadline = time.monotonic() + 10 * CHECKPOINT_MS / 1000 + 120
        while _checkpoint_upto(data_dir) < filled_upto:
            if time.monotonic() > deadline:
                raise RuntimeError("no checkpoint covered the fill")
            time.sleep(0.05)
        tail_started = time.monotonic()
        _send_tail(port, tag)
        log(f"restart: tail of {TAIL_REQUESTS} x {TAIL_BATCH} events sent in {time.monotonic() - tail_started:.1f} s "
            f"after the checkpoint at row {_checkpoint_upto(data_dir)}; kill -9")
        killed = time.monotonic()
        _kill9(proc)
        proc = _serve(env)
        listening, ready = _wait_ready(port, proc)
        restart_s = ready - killed
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        _kill9(proc)  # no final checkpoint: the files stay as the restart found them (plus its first moments)
        proc = None
        log(f"restart: ready {restart_s:.2f} s after kill -9 (first HTTP answer at {listening - killed:.2f} s), "
            f"{answer['sessions']} sessions restored")
        anchor_s, counts = anchor(data_dir)
        log(f"restart anchor: {anchor_s:.2f} s — {counts['sessions']:.0f} checkpoint sessions read+unpacked in "
            f"{counts['sessions_s']:.2f} s, {counts['dedupe_rows']:.0f} dedupe rows / {counts['dedupe_keys']:.0f} keys "
            f"in {counts['dedupe_s']:.2f} s, tail {counts['tail_rows']:.0f} rows / {counts['tail_events']:.0f} events "
            f"(from_row) in {counts['tail_s']:.2f} s (replay point {counts['upto']:.0f})")
        copy = Path(tempfile.mkdtemp(prefix="openclaw-bench-restart-copy-"))
        try:
            for name in os.listdir(data_dir):
                if name != "lock":
                    shutil.copy2(data_dir / name, copy / name)
            parts = breakdown(copy)
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        import_s = _import_s()
        log(f"restart breakdown (the same restore in this process): Journal.open {parts['open_s']:.2f} s = "
            f"lock+schema {parts['lock_schema_s']:.3f} + checkpoint read & sessions rebuilt "
            f"{parts['checkpoint_s']:.2f} + dedupe window rebuilt {parts['dedupe_s']:.2f} + tail "
            f"{parts['tail_s']:.2f} ({parts['tail_rows']:.0f} records, apply {parts['tail_apply_s']:.2f}) + writer "
            f"start {parts['writer_start_s']:.3f} ({parts['sessions']:.0f} sessions after it); then gc.collect()+freeze {parts['gc_freeze_s']:.2f} s; "
            f"`python -c 'import app.main, app.cli, uvicorn'` {import_s:.2f} s; the rest of the "
            f"{restart_s:.2f} s (process start, settings, uvicorn, monitor start, polling) "
            f"{restart_s - parts['open_s'] - parts['gc_freeze_s'] - import_s:.2f} s")
        figures["restart_1m_s"] = restart_s
        figures["restart_anchor_s"] = anchor_s
        figures["restart_ratio"] = restart_s / anchor_s
    finally:
        if proc is not None:
            _kill9(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
