"""A real Alertmanager for tests.

    receiver = WebhookReceiver().start()   # tests/support/webhook_receiver.py
    am = AlertmanagerServer(tmp_path / "am", config_text=..., webhook_url=receiver.url).start()
    am.address                             # "127.0.0.1:<port>": what Prometheus' alerting targets
    receiver.wait_for(lambda n: ...)       # a notification (Alertmanager's webhook JSON) that matches
    am.stop()

Debian's `prometheus-alertmanager` is started through the stack's own entrypoint
(deploy/alertmanager-entrypoint.sh), so the test renders the configuration exactly as the
compose service does: the given configuration text is the "shipped file", and the entrypoint
puts `webhook_url` in place of its placeholder address. Clustering is off (one instance).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.paths import REPO
from tests.support.service_process import free_port, terminate, track, untrack

ENTRYPOINT = REPO / "deploy" / "alertmanager-entrypoint.sh"
START_DEADLINE_S = 30.0

def alertmanager_binary() -> str | None:
    """Debian's `prometheus-alertmanager` package; None when it is not installed."""
    return shutil.which("prometheus-alertmanager")


def amtool_binary() -> str | None:
    return shutil.which("amtool")


class AlertmanagerServer:
    def __init__(self, workdir: Path, *, config_text: str, webhook_url: str) -> None:
        self.workdir = Path(workdir)
        self.config_text = config_text
        self.webhook_url = webhook_url
        self.binary = alertmanager_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path = self.workdir / "alertmanager.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = START_DEADLINE_S) -> AlertmanagerServer:
        if self.binary is None:
            raise RuntimeError("prometheus-alertmanager is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        source = self.workdir / "alertmanager.yml"
        source.write_text(self.config_text, encoding="utf-8")
        self.port = free_port()
        env = dict(os.environ, ALERTMANAGER_BIN=self.binary, ALERTMANAGER_CONFIG_SOURCE=str(source),
                   ALERTMANAGER_CONFIG_RENDERED=str(self.workdir / "rendered.yml"),
                   OPENCLAW_ALERT_WEBHOOK_URL=self.webhook_url)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", str(ENTRYPOINT), f"--web.listen-address={self.address}", "--cluster.listen-address=",
                 f"--storage.path={self.workdir / 'data'}", "--log.level=debug"],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        track(self.proc)  # a crashed test run must not leave an Alertmanager behind
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited ({self.proc.returncode}) while starting\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200:
                    return self
            if time.monotonic() >= deadline:
                raise AssertionError(f"alertmanager not ready within {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)

    def rendered(self) -> str:
        return (self.workdir / "rendered.yml").read_text(encoding="utf-8")

    def alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager holds now (API v2), inhibited ones included, with their status."""
        return httpx.get(f"{self.url}/api/v2/alerts", timeout=5.0).json()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 15.0)
            untrack(self.proc)
