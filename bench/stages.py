"""Per-event cost of each stage of the ingest hot path, in process (a profile aid, not a figure).

    python bench/stages.py [--batches N]

Feeds the bench's own 100-event bodies (bench/workload.py) through the same calls the ingest
route makes, one stage at a time, and prints microseconds per event for each, beside the
anchor's `orjson.loads`. What the HTTP server and the journal's writer thread cost is not here:
bench/run.py measures the whole path, bench/profile.py shows where its time goes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import orjson  # noqa: E402

from app import records  # noqa: E402
from app.decoding import decode_json  # noqa: E402
from app.store import ACCEPTED, DEFAULT_GATEWAY, DUPLICATE, Store  # noqa: E402
from bench.workload import body  # noqa: E402
from telemetry.record import Recorder  # noqa: E402


def _recorder() -> Recorder:
    try:
        from telemetry.setup import build_recorder
    except ImportError:
        return Recorder()
    return build_recorder(env={})


def _stages(n: int, per: int, tag: str, recorder: Recorder) -> dict[str, float]:
    bodies = [body(i * per, per, tag) for i in range(n)]
    events = n * per
    results: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        out = fn()
        results[name] = (time.perf_counter() - started) / events * 1e6
        return out

    timed("anchor: orjson.loads", lambda: [orjson.loads(b) for b in bodies])
    timed("msgspec typed decode only", lambda: [msgspec.json.decode(b) for b in bodies])
    decoded = timed("decode_json (typed decode + check_event)", lambda: [decode_json(b) for b in bodies])
    store = Store()
    now = time.time_ns() // 1_000_000
    flat = [event for d in decoded for _, event in d.events]
    for event in flat:
        event.gatewayId = event.gatewayId or DEFAULT_GATEWAY
    applied = timed("Store.apply_event", lambda: [store.apply_event(e, now) for e in flat])
    outcomes = Counter(r.outcome for r in applied)
    assert outcomes[DUPLICATE] == 0, outcomes
    bodies_events = [[event for _, event in d.events] for d in decoded]

    def record() -> None:
        for events in bodies_events:
            records.events_record(events, now)

    timed("records.events_record (one row per body: encode + keys + index)", record)

    def telemetry() -> None:
        for event, result in zip(flat, applied):
            if result.outcome != ACCEPTED:
                continue
            gateway = event.gatewayId
            if event.type == "session.state":
                recorder.session_state(gateway, event.state or "idle", event.reason)
            recorder.event_applied(event, gateway)

    timed(f"recorder ({type(recorder).__name__}) per event", telemetry)

    def counting() -> None:
        for d in decoded:
            outcomes: Counter[str] = Counter()
            per_type: Counter[tuple[str, str, str]] = Counter()
            for _, event in d.events:
                outcomes[ACCEPTED] += 1
                per_type[(event.gatewayId, event.type, ACCEPTED)] += 1
            recorder.events_counted(per_type)

    timed("apply_events' per-event Counters + events_counted", counting)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=100, help="events per body")
    parser.add_argument("--repeat", type=int, default=5, help="runs; each stage's best is kept")
    args = parser.parse_args()
    recorder = _recorder()
    best: dict[str, float] = {}
    for rep in range(args.repeat):
        for name, us in _stages(args.batches, args.events, f"stages{rep}", recorder).items():
            best[name] = min(us, best.get(name, us))
    width = max(len(k) for k in best)
    print(f"{args.batches * args.events} events in {args.batches} bodies of {args.events}, best of {args.repeat}")
    for name, us in best.items():
        print(f"{name:<{width}}  {us:6.2f} us/event")
    path_total = sum(v for k, v in best.items() if not k.startswith(("anchor", "msgspec")))
    print(f"{'sum of the service stages':<{width}}  {path_total:6.2f} us/event")


if __name__ == "__main__":
    main()
