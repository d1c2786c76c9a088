"""The bench: every figure of quality.md's performance table, each beside its anchor, in one run.

    python bench/run.py            # the steadier run (~4 min on 2 cores)
    python bench/run.py --quick    # under 90 s on 2 cores

stdout carries only `name value unit` lines, one figure each; progress and details go to stderr.
See bench/README.md for what each figure means and what limits it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import ack_latency, servers  # noqa: E402
from bench.servers import log  # noqa: E402

FIGURES = (
    ("ingest_batch_eps", "events/s"),
    ("anchor_batch_eps", "events/s"),
    ("ingest_batch_ratio", "ratio"),
    ("ingest_single_eps", "events/s"),
    ("anchor_single_eps", "events/s"),
    ("ingest_single_ratio", "ratio"),
    ("scan_100k_cpu_s", "s"),
    ("scan_1m_cpu_s", "s"),
    ("scan_max_stall_ms", "ms"),
    ("bytes_per_session", "B"),
    ("bytes_per_active_session", "B"),
    ("bytes_per_dict_entry", "B"),
    ("scan_baseline_100k_cpu_s", "s"),
    ("export_ratio", "ratio"),
    ("p99_ingest_ms", "ms"),
    ("soak_errors", "requests"),
    ("ack_sessions", "requests"),
    ("p99_ack_checkpoint_ms", "ms"),
    ("p99_ack_eviction_ms", "ms"),
    ("soak_rss_growth_mb", "MB"),
    ("scaleout_anchor_eps", "events/s"),
    ("scaleout_eps_1", "events/s"),
    ("scaleout_eps_2", "events/s"),
    ("scaleout_eps_3", "events/s"),
    ("failover_s", "s"),
    ("restart_1m_s", "s"),
    ("restart_anchor_s", "s"),
    ("restart_ratio", "ratio"),
    ("loop_stall_1m_ms", "ms"),
    ("ack_p99_checkpoint_ms", "ms"),
)
UNITS = dict(FIGURES)
PARTS = ("ingest", "scan", "memory", "soak", "ack", "scaleout", "restart", "stall")
SOAK_S = 60  # quality.md: sustained ingest at the bench rate, no error answers, flat memory
SOAK_WARM_S = 45

BATCH = 100
SESSIONS = 20_000  # session keys the load cycles over
WINDOW_S = 2  # one turn of one server under wrk
P99_RATE = 1_000  # single-event requests/s for p99_ingest_ms: ~1/8 of one worker's capacity here


class Profile:
    def __init__(self, quick: bool) -> None:
        # Ingest: the servers under comparison run side by side and take turns, WINDOW_S each,
        # so every pair of windows sees the same background load (other work on the machine).
        self.windows = 3 if quick else 10
        self.warm_s = 2 if quick else 3
        # 30 s always spans one of the service's 30 s checkpoints (their commit stall is in p99).
        self.p99_s = 5 if quick else 30
        self.scan_candidates = 100_000
        self.scan_tracked = 1_000_000
        self.memory_sessions = 10_000 if quick else 100_000
        self.ack_sessions = 200_000 if quick else 1_000_000
        self.big_sessions = 1_000_000  # restart and stall: a million sessions, --quick too
        self.stall_s = 15 if quick else 60


# -- ingest, single/batch, export and p99 --------------------------------------------------------

@contextlib.contextmanager
def otlp_sink() -> Iterator[tuple[int, Path]]:
    port = servers.free_port()
    count_file = Path(tempfile.mkstemp(prefix="openclaw-bench-otlp-")[1])
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "otlp_sink.py"), str(port), str(count_file)],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        servers.wait_listening(port, proc)
        yield port, count_file
    finally:
        servers.stop(proc)


def _eps(result: servers.WrkResult, events_per_request: int) -> float:
    return result.ok_per_s * events_per_request


def _paced_p99(port: int, seconds: float, prefix: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "paced_client.py"), str(port), str(P99_RATE), str(seconds),
         prefix, servers.TOKEN, str(servers.CONNECTIONS)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout
    return json.loads(out)


class _Tally:
    """One server x workload: requests, seconds and server CPU summed over its windows."""

    def __init__(self, events_per_request: int) -> None:
        self.events = events_per_request
        self.ok = 0
        self.seconds = 0.0
        self.cpu_s = 0.0
        self.window_eps: list[float] = []

    def add(self, result: servers.WrkResult) -> None:
        done = max(0, result.requests - result.errors)
        self.ok += done
        self.seconds += result.seconds
        self.cpu_s += result.server_cpu_s
        self.window_eps.append(done * self.events / result.seconds)

    @property
    def eps(self) -> float:
        return self.ok * self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s / max(1, self.ok * self.events) * 1e6


def run_ingest(profile: Profile, figures: dict[str, float]) -> None:
    tag = f"b{int(time.time())}"
    otlp_env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "openclaw-diagnostics-bench"}
    with contextlib.ExitStack() as stack:
        sink_port, count_file = stack.enter_context(otlp_sink())
        otlp_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
        anchor = stack.enter_context(servers.uvicorn("bench.anchor_app:app"))
        service = stack.enter_context(servers.uvicorn("app.main:app"))
        exporting = stack.enter_context(servers.uvicorn("app.main:app", otlp_env))
        tallies: dict[str, _Tally] = {}

        def turns(cases: dict[str, servers.Server], events: int, warm_s: float) -> None:
            for name, server in cases.items():
                tallies[name] = _Tally(events)
                servers.wrk(server.url, warm_s, f"{tag}-{name}-warm", events, SESSIONS)
            order = list(cases.items())
            for window in range(profile.windows):
                for name, server in order[window % len(order):] + order[:window % len(order)]:  # rotate
                    result = servers.wrk(server.url, WINDOW_S, f"{tag}-{name}-{window}", events, SESSIONS,
                                         server_pid=server.proc.pid)
                    tallies[name].add(result)

        turns({"anchor_batch": anchor, "ingest_batch": service, "export_on": exporting}, BATCH, profile.warm_s)
        turns({"anchor_single": anchor, "ingest_single": service}, 1, 1)
        paced = _paced_p99(service.port, profile.p99_s, f"{tag}-p99")
    received = count_file.read_text().split() if count_file.exists() else []
    count_file.unlink(missing_ok=True)
    log(f"export: the OTLP sink received {received[0] if received else 'nothing'} requests "
        f"({received[1] if len(received) > 1 else 0} bytes)")
    if paced["failures"]:
        log(f"p99: {paced['failures']} non-2xx answers of {paced['requests']}")
    log(f"p99 at {P99_RATE} requests/s: p50 {paced['p50_ms']:.2f} ms, p99 {paced['p99_ms']:.2f} ms, "
        f"max {paced['max_ms']:.2f} ms")
    for name, tally in tallies.items():
        log(f"{name}: {tally.eps:.0f} events/s over {tally.seconds:.0f} s (windows: "
            f"{' '.join(f'{x:.0f}' for x in tally.window_eps)}), server CPU {tally.cpu_us_per_event:.2f} us/event")
    t = tallies
    figures["ingest_batch_eps"] = t["ingest_batch"].eps
    figures["anchor_batch_eps"] = t["anchor_batch"].eps
    figures["ingest_batch_ratio"] = t["ingest_batch"].eps / t["anchor_batch"].eps
    figures["ingest_single_eps"] = t["ingest_single"].eps
    figures["anchor_single_eps"] = t["anchor_single"].eps
    figures["ingest_single_ratio"] = t["ingest_single"].eps / t["anchor_single"].eps
    figures["export_ratio"] = t["export_on"].eps / t["ingest_batch"].eps
    figures["p99_ingest_ms"] = paced["p99_ms"]
    log("cross-check, the same ratios from server CPU per event (steadier on a shared machine): "
        f"batch {t['anchor_batch'].cpu_us_per_event / t['ingest_batch'].cpu_us_per_event:.3f}, "
        f"single {t['anchor_single'].cpu_us_per_event / t['ingest_single'].cpu_us_per_event:.3f}, "
        f"export {t['ingest_batch'].cpu_us_per_event / t['export_on'].cpu_us_per_event:.3f}")


# -- scan and memory (in process) -----------------------------------------------------------------

def _settled(build: Callable[[], object]) -> object:
    """Build with the cyclic GC paused, then collect once: the pass is not charged for setup's GC debt."""
    gc.disable()
    try:
        built = build()
    finally:
        gc.enable()
    gc.collect()
    return built


def run_scan(profile: Profile, figures: dict[str, float]) -> None:
    from bench import inprocess

    try:
        import uvloop

        runner: Callable[..., object] = uvloop.run
    except ImportError:
        import asyncio

        runner = asyncio.run
    now = time.time_ns() // 1_000_000
    stalls = []
    for tracked, name in ((profile.scan_candidates, "scan_100k_cpu_s"), (profile.scan_tracked, "scan_1m_cpu_s")):
        store = _settled(lambda: inprocess.build_scan_store(profile.scan_candidates, tracked, now))
        result = runner(inprocess.scan_store(store, now))
        log(f"scan {result.candidates} candidates of {result.tracked}: first pass {result.first_cpu_s:.3f} CPU-s, "
            f"steady pass {result.cpu_s:.3f} CPU-s, baseline {result.baseline_cpu_s:.3f} CPU-s, "
            f"worst stall {result.max_stall_ms:.2f} ms (loop CPU; wall clock per pass "
            f"{' '.join(f'{x:.2f}' for x in result.wall_stalls_ms)} ms), {result.recoveries} recovery requests")
        figures[name] = result.cpu_s
        if tracked == profile.scan_candidates:
            figures["scan_baseline_100k_cpu_s"] = result.baseline_cpu_s
        stalls.append(result.max_stall_ms)
        if tracked == profile.scan_tracked:
            started = time.perf_counter()
            gc.collect()
            log(f"scan: one full gc.collect() with {tracked} sessions alive takes "
                f"{(time.perf_counter() - started) * 1000:.0f} ms (a loop stall whenever it lands)")
        del store, result
        gc.collect()
    figures["scan_max_stall_ms"] = max(stalls)


def run_memory(profile: Profile, figures: dict[str, float]) -> None:
    from bench import inprocess

    result = inprocess.run_memory(profile.memory_sessions)
    log(f"memory over {result.sessions} sessions: idle after one agent turn {result.idle:.0f} B "
        f"(idle known from one state event: {result.fresh_idle:.0f} B), active {result.active:.0f} B, "
        f"dict entry {result.dict_entry:.0f} B")
    figures["bytes_per_session"] = result.idle
    figures["bytes_per_active_session"] = result.active
    figures["bytes_per_dict_entry"] = result.dict_entry


# -- entry point ----------------------------------------------------------------------------------

def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_soak(profile: Profile, figures: dict[str, float]) -> None:
    """Batched ingest for SOAK_S seconds: every answer a 2xx, resident memory flat after warm-up.

    Sessions cycle over SESSIONS keys and the warm-up sends more than a million events (the
    dedupe window's cap: every event has its own eventId), so the store and the window reach their
    steady size first; what the RSS does after that would be a leak.
    """
    tag = f"s{int(time.time())}"
    with servers.uvicorn("app.main:app") as service:
        servers.wrk(service.url, SOAK_WARM_S, f"{tag}-warm", BATCH, SESSIONS)
        before = _rss_mb(service.proc.pid)
        result = servers.wrk(service.url, SOAK_S, f"{tag}-soak", BATCH, SESSIONS, server_pid=service.proc.pid)
        after = _rss_mb(service.proc.pid)
    log(f"soak: {result.requests} requests of {BATCH} events in {result.seconds:.0f} s "
        f"({_eps(result, BATCH):.0f} events/s), {result.errors} errors, RSS {before:.0f} -> {after:.0f} MB")
    figures["soak_errors"] = result.errors
    figures["soak_rss_growth_mb"] = after - before


def run_ack(profile: Profile, figures: dict[str, float]) -> None:
    ack_latency.run(profile.ack_sessions, figures)
    figures["ack_p99_checkpoint_ms"] = figures["p99_ack_checkpoint_ms"]  # the name quality.md asks for


def run_restart(profile: Profile, figures: dict[str, float]) -> None:
    from bench import restart  # kill -9 and restart a real `app.cli serve` with 1M sessions

    restart.run(profile.big_sessions, figures)


def run_stall(profile: Profile, figures: dict[str, float]) -> None:
    from bench import stall  # the loop probe in a real uvicorn process under batched ingest

    stall.run(profile.big_sessions, profile.stall_s, figures)


def run_scaleout(profile: Profile, figures: dict[str, float]) -> None:
    from bench import scaleout  # HAProxy + PostgreSQL: see bench/scaleout.py

    scaleout.run(figures)


def _format(value: float, unit: str) -> str:
    if unit in ("events/s", "requests"):
        return f"{value:.0f}"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "B":
        return f"{value:.1f}"
    if unit == "s":
        return f"{value:.4f}"
    return f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round (under 90 s on 2 cores)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--scan-candidates", type=int, help="candidate sessions in both scan passes (100000)")
    parser.add_argument("--scan-tracked", type=int, help="tracked sessions in the second pass (1000000)")
    parser.add_argument("--memory-sessions", type=int, help="sessions created per memory figure")
    parser.add_argument("--big-sessions", type=int, help="sessions filled for the restart and stall parts (1000000)")
    args = parser.parse_args(argv)
    profile = Profile(args.quick)
    if args.scan_candidates:
        profile.scan_candidates = args.scan_candidates
    if args.scan_tracked:
        profile.scan_tracked = args.scan_tracked
    if args.memory_sessions:
        profile.memory_sessions = args.memory_sessions
    if args.big_sessions:
        profile.big_sessions = args.big_sessions
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    figures: dict[str, float] = {}
    failed = False
    if args.quick and args.parts == parser.get_default("parts"):
        parts.remove("soak")  # a minute of its own: the default run only
        parts.remove("ack")  # two minutes of its own: the default run, or --parts ack
        parts.remove("scaleout")  # HAProxy + PostgreSQL: the default run, or --parts scaleout
        parts.remove("restart")  # a million sessions filled: the default run, or --parts restart
        parts.remove("stall")  # a million sessions filled: the default run, or --parts stall
    for part, run in (("ingest", run_ingest), ("scan", run_scan), ("memory", run_memory), ("soak", run_soak),
                      ("ack", run_ack), ("scaleout", run_scaleout), ("restart", run_restart),
                      ("stall", run_stall)):
        if part not in parts:
            continue
        t0 = time.monotonic()
        try:
            run(profile, figures)
        except Exception as exc:  # report the other parts' figures all the same
            failed = True
            log(f"{part} failed: {exc!r}")
        log(f"{part}: {time.monotonic() - t0:.1f} s")
    for name, unit in FIGURES:
        if name in figures:
            print(f"{name} {_format(figures[name], unit)} {unit}", flush=True)
    log(f"done in {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
