"""A real Prometheus server for tests: Debian's `prometheus` binary on 127.0.0.1, driven by pid.

    prom = PrometheusServer(tmp_path / "prometheus", targets=["127.0.0.1:8123"],
                            rule_files=[REPO / "deploy/rules/openclaw.rules.yml"])
    prom.start()                        # free port, waits for /-/ready (deadline)
    prom.wait_scrapes(3)                # the target is up and was scraped 3+ times
    prom.query('sum(openclaw_monitor_sessions)')   # -> the `result` list of /api/v1/query
    prom.stop()                         # SIGTERM by pid, SIGKILL if it hangs

Everything lives in the given work directory: the generated config (JSON, which is YAML), a
copy of each rule file (the repo's files are never touched), the TSDB and the server's log. The
scrape and rule-evaluation intervals default to 1 s, so a test polls seconds, not minutes.

`PromQLError` carries Prometheus' own error message (a parse error, a bad range...), so a
failing dashboard query is reported the way Prometheus words it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.service_process import free_port, terminate, track, untrack, wait_until

START_DEADLINE_S = 30.0

def prometheus_binary() -> str | None:
    """Debian's package puts it in /usr/bin; None when it is not installed."""
    found = shutil.which("prometheus")
    if found:
        return found
    return "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None


class PromQLError(AssertionError):
    """Prometheus answered a query with an error (its errorType and error are in the message)."""


class PrometheusServer:
    def __init__(self, workdir: Path, *, targets: Sequence[str], rule_files: Iterable[Path] = (),
                 job: str = "openclaw-diagnostics", metrics_path: str = "/metrics",
                 scrape_interval: str = "1s", evaluation_interval: str = "1s",
                 binary: str | None = None, alertmanagers: Sequence[str] = (),
                 external_labels: Mapping[str, str] | None = None,
                 rule_text: Callable[[str], str] | None = None) -> None:
        """`alertmanagers`: where firing alerts go (host:port); `rule_text`: applied to each rule
        file's text as it is copied (a test shortens its `for:` durations there)."""
        self.workdir = Path(workdir)
        self.scrape_targets = list(targets)
        self.rule_sources = [Path(path) for path in rule_files]
        self.job = job
        self.metrics_path = metrics_path
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.binary = binary or prometheus_binary()
        self.alertmanagers = list(alertmanagers)
        self.external_labels = dict(external_labels or {})
        self.rule_text = rule_text
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path = self.workdir / "prometheus.log"
        self.config_path = self.workdir / "prometheus.yml"
        self.started_at: float | None = None  # time.time() when /-/ready first answered
        self._client: httpx.Client | None = None

    # -- configuration -----------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        rules_dir = self.workdir / "rules"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
                **({"external_labels": self.external_labels} if self.external_labels else {}),
            },
            "rule_files": [str(rules_dir / source.name) for source in self.rule_sources],
            "scrape_configs": [{
                "job_name": self.job,
                "metrics_path": self.metrics_path,
                "static_configs": [{"targets": self.scrape_targets}],
            }],
        }
        if self.alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]}
        return config

    def write_config(self) -> None:
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir(parents=True, exist_ok=True)
        for source in self.rule_sources:
            text = source.read_text(encoding="utf-8")
            (rules_dir / source.name).write_text(self.rule_text(text) if self.rule_text else text, encoding="utf-8")
        self.config_path.write_text(json.dumps(self.config(), indent=2))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_DEADLINE_S) -> PrometheusServer:
        if self.binary is None:
            raise RuntimeError("prometheus is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except AssertionError:
                if attempt < 2 and not self.alive and "address already in use" in self.log_text().lower():
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self.port = free_port()
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        track(self.proc)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                code = self.proc.returncode if self.proc is not None else None
                raise AssertionError(f"prometheus exited (code {code}) while starting\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200:
                    self.started_at = time.time()
                    return
            if time.monotonic() >= deadline:
                raise AssertionError(f"prometheus not ready within {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM by pid (a clean TSDB shutdown), SIGKILL if it hangs."""
        if self._client is not None:
            self._client.close()
            self._client = None
        proc = self.proc
        if proc is None:
            return None
        terminate(proc, timeout)
        untrack(proc)
        return proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP API ----------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=15.0)
        return self._client

    def api(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None) -> Any:
        """GET /api/v1/<path>: the `data` of a successful answer, PromQLError otherwise."""
        response = self.client.get(f"/api/v1/{path}", params=params)
        try:
            body = response.json()
        except ValueError:
            raise PromQLError(f"/api/v1/{path}: HTTP {response.status_code} {response.text[:500]}") from None
        if response.status_code != 200 or body.get("status") != "success":
            kind, error = body.get("errorType", response.status_code), body.get("error", response.text[:500])
            raise PromQLError(f"{kind}: {error}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: the result as a list of {metric, value} (scalars become one item)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when the result is empty."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, f"{expr}: {len(result)} series, expected one"
        return float(result[0]["value"][1])

    def series(self, *matchers: str) -> list[dict[str, str]]:
        return self.api("series", [("match[]", m) for m in matchers])

    def label_names(self) -> list[str]:
        return self.api("labels")

    def label_values(self, label: str, *matchers: str) -> list[str]:
        return self.api(f"label/{label}/values", [("match[]", m) for m in matchers])

    def targets(self) -> list[dict[str, Any]]:
        return self.api("targets")["activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    # -- waiting -----------------------------------------------------------------------------

    def wait_scrapes(self, count: int = 3, timeout: float = 20.0) -> None:
        """Every target is up, and `count` scrapes of the job are stored."""
        def scraped() -> bool:
            targets = [t for t in self.targets() if t["labels"].get("job") == self.job]
            if not targets or any(t["health"] != "up" for t in targets):
                return False
            stored = self.value(f'min(sum_over_time(up{{job="{self.job}"}}[5m]))')
            return stored is not None and stored >= count

        wait_until(scraped, timeout=timeout, interval=0.2,
                   what=f"{count} successful scrapes of job {self.job} ({self.scrape_targets})")
