"""`openclaw-diagnostics sessions` against the real running service (a uvicorn subprocess)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app
from tests.support.service_process import keepalive, now_ms, post_events, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "cli-test-token"
runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENCLAW_DIAG_"):
            monkeypatch.delenv(name)


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["sessions", *args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def service(module_service_factory: Any) -> Any:
    svc = module_service_factory({"ingest_tokens": f"{TOKEN},bound-token=gw-2"}, token=TOKEN, name="cli-sessions")
    now = now_ms()
    post_events(svc.client, [
        keepalive("gw-1"),  # ts = now: the gateway's clock is right, old stamps are old
        # processing for 20 s with no activity at all: stuck / stale_session_state
        {"type": "session.state", "gatewayId": "gw-1", "sessionKey": "agent:main:old", "state": "processing",
         "ts": now - 20_000},
        # processing for 8 s, a model call started 8 s ago that never answered: stalled
        {"type": "run.started", "gatewayId": "gw-1", "sessionKey": "agent:main:model", "runId": "r1", "ts": now - 8_000},
        {"type": "session.state", "gatewayId": "gw-1", "sessionKey": "agent:main:model", "state": "processing",
         "ts": now - 8_000},
        {"type": "model.call.started", "gatewayId": "gw-1", "sessionKey": "agent:main:model", "runId": "r1",
         "provider": "openai", "model": "gpt-5", "ts": now - 8_000},
        # processing for 4 s: stuck too, but younger than agent:main:old
        {"type": "session.state", "gatewayId": "gw-1", "sessionKey": "agent:main:young", "state": "processing",
         "ts": now - 4_000},
        # a quiet idle session: listed last, no attention
        {"type": "message.queued", "gatewayId": "gw-1", "sessionKey": "agent:main:quiet", "source": "cli",
         "queueDepth": 0, "ts": now},
    ])
    wait_until(lambda: [s["sessionKey"] for s in svc.sessions() if s["attention"]] ==
               ["agent:main:old", "agent:main:young", "agent:main:model"],
               timeout=15, what="the monitor to flag three sessions")
    return svc


def test_table_in_the_api_order(service: Any) -> None:
    result = cli("--url", service.url, env={"OPENCLAW_DIAG_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:3] == ["attention", "gateway", "session"]
    rows = [line for line in lines[1:] if "agent:main:" in line]
    keys = [next(word for word in row.split() if word.startswith("agent:main:")) for row in rows]
    assert keys == ["agent:main:old", "agent:main:young", "agent:main:model", "agent:main:quiet"]
    assert rows[0].split()[:2] == ["stuck", "gw-1"] and "stale_session_state" in rows[0]
    assert rows[2].split()[0] == "stalled" and "active_work_without_progress" in rows[2] and "model_call" in rows[2]
    assert rows[3].split()[0] == "-"
    assert "skipped/observe_only (no_recovery_target)" in rows[0]  # observe mode: asked, nobody to act
    assert lines[-1] == "4 sessions"


def test_filter_json_and_limit(service: Any) -> None:
    stuck = cli("--url", service.url, "--attention", "stuck", "--json", env={"OPENCLAW_DIAG_TOKEN": TOKEN})
    assert stuck.exit_code == 0, stuck.output
    items = [json.loads(line) for line in stuck.stdout.splitlines()]
    assert [i["sessionKey"] for i in items] == ["agent:main:old", "agent:main:young"]
    assert all(i["attention"]["eventType"] == "session.stuck" for i in items)
    # The token may come from the ingest token list (its first entry); pages are followed.
    limited = cli("--url", service.url, "--limit", "3", env={"OPENCLAW_DIAG_INGEST_TOKENS": f"{TOKEN},x=gw"})
    assert limited.exit_code == 0, limited.output
    assert "agent:main:quiet" not in limited.stdout and limited.stdout.splitlines()[-1] == "3 of 4 sessions"


def test_url_from_host_and_port(service: Any) -> None:
    result = cli("--json", env={"OPENCLAW_DIAG_TOKEN": TOKEN, "OPENCLAW_DIAG_HOST": "0.0.0.0",
                                "OPENCLAW_DIAG_PORT": str(service.port)})
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4


def test_errors_are_plain_messages(service: Any) -> None:
    no_token = cli("--url", service.url)
    assert no_token.exit_code == 1 and "requires a token: set OPENCLAW_DIAG_TOKEN" in no_token.stderr
    wrong = cli("--url", service.url, env={"OPENCLAW_DIAG_TOKEN": "nope"})
    assert wrong.exit_code == 1 and "was refused" in wrong.stderr
    from tests.support.service_process import free_port

    down = cli("--url", f"http://127.0.0.1:{free_port()}", env={"OPENCLAW_DIAG_TOKEN": TOKEN})
    assert down.exit_code == 1 and "cannot reach the service" in down.stderr


def test_serve_runs_the_service(tmp_path: Any) -> None:
    """`openclaw-diagnostics serve` (the README's run command) serves on OPENCLAW_DIAG_HOST/PORT and
    stops cleanly on SIGTERM."""
    import shutil
    import signal
    import subprocess
    import sys

    import httpx

    from tests.support.service_process import REPO, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_DIAG_", "OTEL_"))}
    env.update({"OPENCLAW_DIAG_DATA_DIR": str(tmp_path / "data"), "OPENCLAW_DIAG_PORT": str(port),
                "OPENCLAW_DIAG_HOST": "127.0.0.1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    exe = shutil.which("openclaw-diagnostics")
    command = [exe] if exe else [sys.executable, "-m", "app.cli"]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, "serve"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()["status"] == "ready"

        wait_until(ready, timeout=30, what="serve to be ready")
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM).
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
