"""The bench: every figure of quality.md's performance table, each beside its anchor, in one run.

    python bench/run.py            # the steadier run (3 interleaved rounds, ~5 min)
    python bench/run.py --quick    # one round, under 90 s on 2 cores

stdout carries only `name value unit` lines, one figure each; progress and details go to stderr.
See bench/README.md for what each figure means and what limits it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import servers  # noqa: E402
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
)
UNITS = dict(FIGURES)
PARTS = ("ingest", "scan", "memory")

BATCH = 100
SESSIONS = 20_000  # session keys the load cycles over
P99_RATE = 1_000  # single-event requests/s for p99_ingest_ms: ~1/8 of one worker's capacity here


class Profile:
    def __init__(self, quick: bool) -> None:
        self.rounds = 1 if quick else 3
        self.warm_s = 2 if quick else 3
        self.measure_s = 5 if quick else 10
        self.p99_s = 5 if quick else 15
        self.scan_candidates = 100_000
        self.scan_tracked = 1_000_000
        self.memory_sessions = 10_000 if quick else 100_000


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


def run_ingest(profile: Profile, figures: dict[str, float]) -> None:
    keys = ("anchor_batch", "ingest_batch", "export_on", "anchor_single", "ingest_single")
    samples: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    p99: list[float] = []
    wired = importlib.util.find_spec("telemetry.setup") is not None
    if not wired:
        log("export: telemetry.setup is missing, so the service runs the no-op recorder with or "
            "without OTLP: export_ratio measures nothing yet")

    def measure(server: servers.Server, key: str, events: int, prefix: str, warm_s: float) -> None:
        servers.wrk(server.url, warm_s, f"{prefix}-warm", events, SESSIONS)
        result = servers.wrk(server.url, profile.measure_s, prefix, events, SESSIONS, server_pid=server.proc.pid)
        samples[key].append(_eps(result, events))
        cpu[key].append(result.cpu_us_per(events))

    for rnd in range(profile.rounds):
        tag = f"r{rnd}-{int(time.time())}"
        with servers.uvicorn("bench.anchor_app:app") as anchor:
            measure(anchor, "anchor_batch", BATCH, f"{tag}-ab", profile.warm_s)
            measure(anchor, "anchor_single", 1, f"{tag}-as", 1)
        with servers.uvicorn("app.main:app") as service:
            measure(service, "ingest_batch", BATCH, f"{tag}-ib", profile.warm_s)
            measure(service, "ingest_single", 1, f"{tag}-is", 1)
            paced = _paced_p99(service.port, profile.p99_s, f"{tag}-p")
            if paced["failures"]:
                log(f"p99: {paced['failures']} non-2xx answers of {paced['requests']}")
            log(f"p99 at {P99_RATE}/s: p50 {paced['p50_ms']:.2f} ms, p99 {paced['p99_ms']:.2f} ms, "
                f"max {paced['max_ms']:.2f} ms")
            p99.append(paced["p99_ms"])
        with otlp_sink() as (sink_port, count_file):
            env = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_SERVICE_NAME": "openclaw-diagnostics-bench",
            }
            with servers.uvicorn("app.main:app", env) as service:
                measure(service, "export_on", BATCH, f"{tag}-ob", profile.warm_s)
        received = count_file.read_text().split() if count_file.exists() else []
        count_file.unlink(missing_ok=True)
        log(f"export: the OTLP sink received {received[0] if received else 'nothing'} requests "
            f"({received[1] if len(received) > 1 else 0} bytes)")
        log(f"round {rnd + 1}/{profile.rounds} events/s: "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items()))
        log(f"round {rnd + 1}/{profile.rounds} server CPU us/event: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in cpu.items()))

    def ratio(num: str, den: str) -> float:
        # The median of each round's own ratio: each pair measured within a minute of each other.
        return statistics.median(n / d for n, d in zip(samples[num], samples[den]))

    med = {k: statistics.median(v) for k, v in samples.items()}
    figures["ingest_batch_eps"] = med["ingest_batch"]
    figures["anchor_batch_eps"] = med["anchor_batch"]
    figures["ingest_batch_ratio"] = ratio("ingest_batch", "anchor_batch")
    figures["ingest_single_eps"] = med["ingest_single"]
    figures["anchor_single_eps"] = med["anchor_single"]
    figures["ingest_single_ratio"] = ratio("ingest_single", "anchor_single")
    figures["export_ratio"] = ratio("export_on", "ingest_batch")  # off: the plain service's batch run
    figures["p99_ingest_ms"] = statistics.median(p99)
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    log(f"cross-check, server CPU per event: batch anchor/service "
        f"{cmed['anchor_batch'] / cmed['ingest_batch']:.3f}, single {cmed['anchor_single'] / cmed['ingest_single']:.3f}, "
        f"export off/on {cmed['ingest_batch'] / cmed['export_on']:.3f}")


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
    log(f"memory over {result.sessions} sessions: idle {result.idle:.0f} B, active {result.active:.0f} B, "
        f"dict entry {result.dict_entry:.0f} B")
    figures["bytes_per_session"] = result.idle
    figures["bytes_per_active_session"] = result.active
    figures["bytes_per_dict_entry"] = result.dict_entry


# -- entry point ----------------------------------------------------------------------------------

def _format(value: float, unit: str) -> str:
    if unit == "events/s":
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
    args = parser.parse_args(argv)
    profile = Profile(args.quick)
    if args.scan_candidates:
        profile.scan_candidates = args.scan_candidates
    if args.scan_tracked:
        profile.scan_tracked = args.scan_tracked
    if args.memory_sessions:
        profile.memory_sessions = args.memory_sessions
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    figures: dict[str, float] = {}
    failed = False
    for part, run in (("ingest", run_ingest), ("scan", run_scan), ("memory", run_memory)):
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
