"""The scale-out part of the bench: events/s through HAProxy over 1, 2 and 3 instances on the
PostgreSQL journal, beside one instance on the embedded SQLite journal, and the failover time.

    python bench/run.py --parts scaleout

Figures (all from the same run):

- `scaleout_anchor_eps`: batched bodies of 100 events into ONE instance on the SQLite journal,
  directly (no proxy): what one process does without PostgreSQL and HAProxy in the way.
- `scaleout_eps_1`, `_2`, `_3`: the same load through HAProxy (consistent hash on
  `X-OpenClaw-Gateway`) over 1, 2, 3 instances sharing a PostgreSQL journal, a fresh database each.
- `failover_s`: 3 instances, 24 gateways each with a stuck session; kill -9 of the instance that
  owns the most, then the seconds until every one of its gateways' stuck sessions is flagged by
  a survivor (polled every 50 ms).

The load is wrk (-t2 -c32) with bench/wrk_events.lua in its per-gateway mode: every request on
one of 64 gateways (the header and every event's gatewayId), so the hash spreads it over the
instances. Non-2xx answers
(e.g. 503 gateway_moving, which wrk does not retry) are not counted as events.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import servers
from bench.servers import WrkResult, log

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "scaleout-token"
BATCH = 100
GATEWAYS = 64
WARM_S = 2
WINDOW_S = 5
THREADS = 2
CONNECTIONS = 32
FAILOVER_GATEWAYS = 24
WARN_MS = 1000
SCAN_MS = 500
POLL_S = 0.05
LOCAL = {"X-OpenClaw-Fleet": "local"}

FIGURES = (
    ("scaleout_anchor_eps", "events/s"),
    ("scaleout_eps_1", "events/s"),
    ("scaleout_eps_2", "events/s"),
    ("scaleout_eps_3", "events/s"),
    ("failover_s", "s"),
)



def _wrk(base_url: str, seconds: float, prefix: str) -> WrkResult:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(ROOT / "bench" / "wrk_events.lua"), f"{base_url}/v1/events", "--", prefix, str(BATCH), "20000",
           TOKEN, "per-gateway", str(GATEWAYS)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = servers._REQS.search(out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    requests = int(match.group(1))
    elapsed = float(match.group(2)) * servers._UNIT[match.group(3)]
    errors = 0
    if m := servers._NON2XX.search(out):
        errors += int(m.group(1))
    if m := servers._SOCKERR.search(out):
        errors += sum(int(g) for g in m.groups())
    if errors:
        log(f"scaleout wrk {prefix}: {errors} non-2xx/socket errors of {requests} requests (not counted)")
    return WrkResult(requests, elapsed, errors)


def _settings(journal_url: str | None, n: int, port: int, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"ingest_tokens": TOKEN, "instance_id": f"i{n}",
                                "instance_url": f"http://127.0.0.1:{port}", **extra}
    if journal_url:
        settings["journal_url"] = journal_url
    return settings


@contextlib.contextmanager
def _fleet(root: Path, journal_url: str | None, size: int, proxied: bool,
           **extra: Any) -> Iterator[tuple[str, list[Any]]]:
    """`size` serve processes (and HAProxy in front when `proxied`): (base URL, instances)."""
    from tests.support.haproxy import HAProxy
    from tests.support.service_process import ServiceProcess, free_port

    ports = [free_port() for _ in range(size)]
    instances = [ServiceProcess(root / f"i{n}", _settings(journal_url, n, port, **extra), log_dir=root / "logs",
                                token=TOKEN, name=f"i{n}", fast_monitor=False)
                 for n, port in enumerate(ports)]
    proxy = None
    try:
        for n, instance in enumerate(instances):
            instance.spawn(ports[n])
        for instance in instances:
            instance.wait_ready(60)
        if proxied:
            proxy = HAProxy(root / "haproxy", [(f"i{n}", "127.0.0.1", port) for n, port in enumerate(ports)])
            proxy.start()
            proxy.wait_until(up={f"i{n}" for n in range(size)})
            yield proxy.url, instances
        else:
            yield instances[0].url, instances
    finally:
        if proxy is not None:
            proxy.stop()
        for instance in instances:
            instance.stop()


def _load(url: str, tag: str, instances: list[Any]) -> float:
    _wrk(url, WARM_S, f"{tag}-warm")
    cpu_before = [servers.cpu_seconds(i.proc.pid) for i in instances]
    result = _wrk(url, WINDOW_S, tag)
    cpu = [servers.cpu_seconds(i.proc.pid) - b for i, b in zip(instances, cpu_before)]
    eps = result.ok_per_s * BATCH
    log(f"scaleout {tag}: {eps:.0f} events/s ({result.requests - result.errors} bodies of {BATCH} acked in "
        f"{result.seconds:.1f} s), instance CPU {' '.join(f'{c / result.seconds:.2f}' for c in cpu)} cores")
    return eps


def _post(client: httpx.Client, gateway: str, events: list[dict[str, Any]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = client.post("/v1/events", json=events, headers={"X-OpenClaw-Gateway": gateway})
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code == 202:
                return
            last = response.text
            if response.status_code != 503:
                raise RuntimeError(f"{gateway}: {response.status_code} {last}")
        time.sleep(0.1)
    raise RuntimeError(f"{gateway}: not acknowledged within {timeout} s: {last}")


def _stuck_where(instances: list[Any]) -> dict[str, list[int]]:
    """gateway -> the live instances whose own store flags its `stuck` session as stuck."""
    found: dict[str, list[int]] = {}
    for n, instance in enumerate(instances):
        if not instance.alive:
            continue
        try:
            response = instance.client.get("/v1/sessions", params={"limit": 1000}, headers=LOCAL)
        except httpx.HTTPError:
            continue
        if response.status_code != 200:
            continue
        for item in response.json()["items"]:
            if item.get("sessionKey") == "stuck" and (item.get("attention") or {}).get("eventType") == "session.stuck":
                found.setdefault(item["gatewayId"], []).append(n)
    return found


def _owners(instances: list[Any]) -> dict[str, int]:
    owners: dict[str, int] = {}
    for n, instance in enumerate(instances):
        response = instance.client.get("/v1/sessions", params={"limit": 1000}, headers=LOCAL)
        response.raise_for_status()
        for item in response.json()["items"]:
            owners[item["gatewayId"]] = n
    return owners


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


def _failover(root: Path, journal_url: str) -> float:
    from tests.support.service_process import now_ms

    gateways = [f"fo-{n:02d}" for n in range(FAILOVER_GATEWAYS)]
    with _fleet(root, journal_url, 3, True, stuck_session_warn_ms=WARN_MS, scan_interval_ms=SCAN_MS) as (url, inst):
        with httpx.Client(base_url=url, timeout=10.0, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for gateway in gateways:
                _post(client, gateway, [
                    {"type": "forwarder.keepalive", "gatewayId": gateway, "ts": now_ms()},
                    {"type": "session.state", "gatewayId": gateway, "sessionKey": "stuck", "state": "processing",
                     "ts": now_ms() - 5000},
                ])
        _wait(lambda: len(_stuck_where(inst)) == len(gateways), 30, "every gateway's stuck session flagged")
        owners = _owners(inst)
        counts = [sum(1 for o in owners.values() if o == n) for n in range(3)]
        victim = max(range(3), key=lambda n: counts[n])
        moved = sorted(g for g, o in owners.items() if o == victim and g in gateways)
        log(f"failover: gateways per instance {counts}; kill -9 of i{victim} (pid {inst[victim].proc.pid}), "
            f"which owns {len(moved)}")
        killed_at = time.monotonic()
        inst[victim].kill()
        _wait(lambda: (lambda s: all(g in s for g in moved))(_stuck_where(inst)), 60,
              "the victim's stuck sessions flagged by a survivor")
        failover_s = time.monotonic() - killed_at
        where = _stuck_where(inst)
        log(f"failover: {failover_s:.2f} s until all {len(moved)} of its gateways were flagged stuck again by "
            f"survivors ({sorted({n for g in moved for n in where.get(g, [])})}); no load during the failover")
        return failover_s


def run(figures: dict[str, float]) -> None:
    from tests.support.postgres import fresh_database, provide_server

    log(f"scaleout: 2-core caveat: on {__import__('os').cpu_count()} cores the instances, PostgreSQL, "
        "HAProxy and wrk all share the same cores, so these figures show the cost of the proxy and the "
        "shared journal, not scaling beyond one machine")
    log(f"scaleout: wrk -t{THREADS} -c{CONNECTIONS}, {WARM_S} s warm-up + {WINDOW_S} s measured per "
        f"configuration, bodies of {BATCH} events over {GATEWAYS} gateways; failover with "
        f"OPENCLAW_DIAG_STUCK_SESSION_WARN_MS={WARN_MS}, OPENCLAW_DIAG_SCAN_INTERVAL_MS={SCAN_MS}, polled every "
        f"{POLL_S * 1000:.0f} ms")
    root = Path(tempfile.mkdtemp(prefix="openclaw-bench-scaleout-"))
    tag = f"so{int(time.time())}"
    try:
        with _fleet(root / "anchor", None, 1, False) as (url, inst):
            figures["scaleout_anchor_eps"] = _load(url, f"{tag}-anchor-sqlite", inst)
        with provide_server() as admin_url:
            for size in (1, 2, 3):
                with fresh_database(admin_url) as db, _fleet(root / f"pg{size}", db, size, True) as (url, inst):
                    figures[f"scaleout_eps_{size}"] = _load(url, f"{tag}-pg-{size}", inst)
            with fresh_database(admin_url) as db:
                figures["failover_s"] = _failover(root / "failover", db)
    finally:
        shutil.rmtree(root, ignore_errors=True)
