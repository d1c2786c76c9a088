"""Profiles of the two hot paths with py-spy (sampling; `pip install py-spy`, not a project dependency).

    python bench/profile.py ingest-batch|ingest-single|scan [--seconds N] [--out DIR]

ingest-*: the service under the bench's wrk load, py-spy attached to the uvicorn process.
scan:     a process that builds the 100k-candidate store and runs monitor passes under py-spy.
Writes DIR/<name>.txt (collapsed stacks, flamegraph input) and prints the top functions by
self time and by total time (stderr-free summary on stdout).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402

SCAN_SCRIPT = """
import asyncio, gc, sys, time
sys.path.insert(0, {root!r})
from app.clock import ManualClock
from bench import inprocess
now = time.time_ns() // 1_000_000
gc.disable(); store = inprocess.build_scan_store(100_000, 100_000, now); gc.enable(); gc.collect()
monitor = inprocess._monitor(store, ManualClock(now), inprocess.NullRecovery())
async def passes():
    await monitor.tick(now)
    time.sleep(0.5)  # marker: passes start after this
    for i in range(1, {passes}):
        monitor.clock.now = now + i * inprocess.SCAN_INTERVAL_MS
        await monitor.tick(monitor.clock.now)
asyncio.run(passes())
"""


def _function(frame: str) -> str:
    """`name (file:line)` -> `name (file)`: aggregate a function's lines."""
    head, _, rest = frame.rpartition(":")
    return head + ")" if rest.endswith(")") and rest[:-1].isdigit() else frame


def summarize(collapsed: Path, top: int, focus: str | None = None) -> str:
    """Top functions by self and total samples, for the event-loop thread and the others apart."""
    threads: dict[str, tuple[collections.Counter[str], collections.Counter[str]]] = {}
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")]
        if focus and not any(focus in f for f in frames):
            continue
        thread = "thread" if frames[0].startswith("thread (") else None
        frames = frames[1:] if thread else frames
        group = "loop" if any("Runner.run" in f or "asyncio_run" in f or "run_until_complete" in f
                              for f in frames) else "other threads"
        self_time, total_time = threads.setdefault(group, (collections.Counter(), collections.Counter()))
        counts[group] += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            total_time[frame] += count
    samples = sum(counts.values())
    lines = [f"{samples} samples" + (f" in stacks through {focus!r}" if focus else "") + ": "
             + ", ".join(f"{group} {100 * c / samples:.1f}%" for group, c in counts.items())]
    for group, (self_time, total_time) in threads.items():
        lines.append(f"== {group}: self (% of all samples) ==")
        lines += [f"{100 * c / samples:5.1f}%  {f}" for f, c in self_time.most_common(top)]
        lines.append(f"== {group}: total ==")
        lines += [f"{100 * c / samples:5.1f}%  {f}" for f, c in total_time.most_common(top)]
    return "\n".join(lines)


def profile_ingest(events_per_request: int, seconds: int, out: Path, rate: int, gil: bool) -> Path:
    target = out / f"ingest-{'batch' if events_per_request > 1 else 'single'}.txt"
    with servers.uvicorn("app.main:app") as service:
        servers.wrk(service.url, 2, f"prof-w{time.time_ns()}", events_per_request)
        load = threading.Thread(target=servers.wrk, args=(service.url, seconds + 3, f"prof-{time.time_ns()}",
                                                          events_per_request))
        load.start()
        time.sleep(1)
        subprocess.run(["py-spy", "record", "-p", str(service.proc.pid), "-d", str(seconds), "-r", str(rate),
                        "--format", "raw", "-o", str(target), "--threads", *(["--gil"] if gil else [])], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load.join()
    return target


def profile_scan(passes: int, out: Path, rate: int) -> Path:
    target = out / "scan.txt"
    script = SCAN_SCRIPT.format(root=str(ROOT), passes=passes)
    subprocess.run(["py-spy", "record", "-r", str(rate), "--format", "raw", "-o", str(target), "--",
                    sys.executable, "-c", script], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("ingest-batch", "ingest-single", "scan"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--rate", type=int, default=250, help="samples/s")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (ingest)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "openclaw-bench-profiles")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "scan":
        collapsed = profile_scan(args.passes, args.out, args.rate)
        print(summarize(collapsed, args.top, focus="tick (app/monitor.py"))
    else:
        collapsed = profile_ingest(100 if args.what == "ingest-batch" else 1, args.seconds, args.out, args.rate,
                                   args.gil)
        print(summarize(collapsed, args.top))
    print(f"collapsed stacks: {collapsed}")


if __name__ == "__main__":
    main()
