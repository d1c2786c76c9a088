"""The `openclaw-diagnostics` CLI: --help, replay of captures written here and of the real hung
capture, malformed lines, check-config and serve errors (issue 8)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import app, human_ms, safe
from app.replay import ReplayConfig, iso_ms, replay_lines
from app.settings import Settings
from tests.support.paths import REPO, SHARED_DATA

DATA = SHARED_DATA
HUNG = DATA / "openclaw-2026.9.6-gateway-hung-model-call.ndjson"
NORMAL = DATA / "openclaw-2026.9.6-gateway-normal-turns.ndjson"

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z
S = 1_000


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's shell must not change what replay or check-config see."""
    for name in list(os.environ):
        if name.startswith("OPENCLAW_DIAG_"):
            monkeypatch.delenv(name)


runner = CliRunner()


def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)


def write(path: Path, events: list[dict[str, Any] | str]) -> Path:
    lines = [e if isinstance(e, str) else json.dumps(e) for e in events]
    path.write_text("\n".join(lines) + "\n")
    return path


def timeline(stdout: str) -> list[str]:
    """The verdict lines of a text replay (everything before the summary)."""
    lines = stdout.splitlines()
    end = lines.index("Summary") if "Summary" in lines else len(lines)
    return [line for line in lines[:end] if line.strip()]


def json_objects(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def ev(type_: str, at_s: float, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "ts": T0 + int(at_s * S), **fields}


# -- help ----------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("serve", "replay", "sessions", "check-config"):
        assert command in result.stdout
    replay_help = run("replay", "--help")
    assert replay_help.exit_code == 0
    for option in ("--warn-ms", "--abort-ms", "--json", "--tail-ms"):
        assert option in replay_help.stdout


def test_console_script_is_installed() -> None:
    """`openclaw-diagnostics` (pyproject's console script) runs; fall back to the module in a bare checkout."""
    exe = shutil.which("openclaw-diagnostics")
    command = [exe] if exe else [sys.executable, "-m", "app.cli"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "replay" in done.stdout and "check-config" in done.stdout


# -- replay: captures written by the test -------------------------------------------------------------------


def test_healthy_capture_has_no_verdicts(tmp_path: Path) -> None:
    capture = write(tmp_path / "healthy.ndjson", [
        ev("message.queued", 0, sessionKey="agent:main:main", source="cli"),
        ev("run.started", 0.1, sessionKey="agent:main:main", sessionId="sid-1", runId="r1"),
        ev("session.state", 0.2, sessionKey="agent:main:main", sessionId="sid-1", state="processing", queueDepth=0),
        ev("model.call.started", 0.3, sessionKey="agent:main:main", runId="r1", provider="openai", model="gpt-5"),
        ev("run.progress", 4, sessionKey="agent:main:main", runId="r1", reason="stream"),
        ev("model.call.completed", 8, sessionKey="agent:main:main", runId="r1", provider="openai", model="gpt-5"),
        ev("run.completed", 8.1, sessionKey="agent:main:main", runId="r1", outcome="ok"),
        ev("session.state", 8.2, sessionKey="agent:main:main", state="idle", queueDepth=0),
    ])
    result = run("replay", str(capture), "--warn-ms", "30000")
    assert result.exit_code == 0, result.output
    assert timeline(result.stdout) == []
    assert "sessions seen: 1" in result.stdout
    assert "verdicts: 0" in result.stdout
    assert "8 applied" in result.stdout
    assert "still under attention at the end: none" in result.stdout


ORPHANED = [
    # A turn whose tool call never reported its end, then idle with one message queued behind it:
    # the seed fix's case (OpenClaw 286964c) — stale bookkeeping, recoverable.
    ev("session.state", 0, sessionKey="agent:main:orphan", sessionId="sid-o", state="processing"),
    ev("tool.execution.started", 1, sessionKey="agent:main:orphan", sessionId="sid-o", toolName="exec", toolCallId="c1"),
    ev("message.queued", 2, sessionKey="agent:main:orphan", source="telegram", queueDepth=1),
    ev("session.state", 3, sessionKey="agent:main:orphan", state="idle", queueDepth=1),
]


def test_orphaned_activity_is_stuck_with_a_recovery(tmp_path: Path) -> None:
    capture = write(tmp_path / "orphaned.ndjson", ORPHANED)
    result = run("replay", str(capture), "--warn-ms", "30000")
    assert result.exit_code == 0, result.output
    lines = timeline(result.stdout)
    assert len(lines) == 1, result.stdout
    line = lines[0]
    # Ticks every 5 s from the first event; the progress clock (tool start, 1 s) is 34 s old at 35 s.
    assert line.startswith(iso_ms(T0 + 35 * S) + " session.stuck default agent:main:orphan ")
    assert "reason=queued_work_without_active_run class=stale_session_state" in line
    assert "state=idle queue=1 age=34.0s progress=34.0s(tool:exec:started) tool=exec(34.0s)" in line
    assert line.endswith("recovery=requested->skipped/observe_only(no_recovery_target)")
    assert "recoveries requested: 1 (skipped/observe_only 1)" in result.stdout
    assert "session.stuck queued_work_without_active_run: 1" in result.stdout
    assert "stuck default agent:main:orphan queued_work_without_active_run" in result.stdout  # still flagged at the end


def test_orphaned_activity_json(tmp_path: Path) -> None:
    capture = write(tmp_path / "orphaned.ndjson", ORPHANED)
    result = run("replay", str(capture), "--warn-ms", "30000", "--json")
    assert result.exit_code == 0, result.output
    objects = json_objects(result.stdout)
    verdict, summary = objects
    assert verdict["kind"] == "verdict"
    assert verdict["at"] == T0 + 35 * S and verdict["time"] == iso_ms(T0 + 35 * S)
    assert (verdict["eventType"], verdict["reason"], verdict["classification"]) == (
        "session.stuck", "queued_work_without_active_run", "stale_session_state")
    assert (verdict["gatewayId"], verdict["sessionKey"], verdict["sessionId"]) == ("default", "agent:main:orphan", "sid-o")
    assert verdict["ageMs"] == 34 * S and verdict["lastProgressAgeMs"] == 34 * S
    request = verdict["recovery"]
    assert request == {
        "gatewayId": "default", "sessionKey": "agent:main:orphan", "sessionId": "sid-o", "ageMs": 34 * S,
        "queueDepth": 1, "expectedState": "idle", "stateGeneration": request["stateGeneration"],
        "reason": "queued_work_without_active_run", "activeWorkKind": None, "allowActiveAbort": False,
        "requestedAt": T0 + 35 * S,
        "origin": "automatic",
    }
    assert verdict["recoveryOutcome"] == {"status": "skipped", "action": "observe_only",
                                          "outcomeReason": "no_recovery_target"}
    assert summary["kind"] == "summary"
    assert summary["sessionsSeen"] == 1 and summary["verdicts"] == {"session.stuck": 1}
    assert summary["recoveriesRequested"] == 1 and summary["invalidLines"] == 0
    assert (summary["warnMs"], summary["abortMs"], summary["tailMs"]) == (30_000, 300_000, 60_000)


def test_blocked_tool_call_is_stalled_then_abort_eligible(tmp_path: Path) -> None:
    capture = write(tmp_path / "blocked.ndjson", [
        ev("run.started", 0, sessionKey="agent:main:tool", runId="r9"),
        ev("session.state", 0, sessionKey="agent:main:tool", state="processing"),
        ev("tool.execution.started", 0.5, sessionKey="agent:main:tool", runId="r9", toolName="browser",
           toolCallId="call-1"),
    ])
    result = run("replay", str(capture), "--warn-ms", "30000", "--abort-ms", "40000", "--tail-ms", "70000")
    assert result.exit_code == 0, result.output
    lines = timeline(result.stdout)
    assert [line.split(" ")[0] for line in lines] == [iso_ms(T0 + 35 * S), iso_ms(T0 + 65 * S)]
    first, second = lines
    for line in lines:
        assert " session.stalled default agent:main:tool reason=blocked_tool_call class=blocked_tool_call " in line
        assert " work=tool_call tool=browser(" in line
    # Between warn and abort a stalled tool call is observe-only; past abort the active abort is asked for.
    assert "tool=browser(34.5s)" in first and first.endswith("recovery=none")
    assert "tool=browser(1m04s)" in second
    assert second.endswith("recovery=requested[active-abort]->skipped/observe_only(no_recovery_target)")


def _backoff_capture(keepalives: bool) -> list[dict[str, Any]]:
    events = [ev("session.state", 0, sessionKey="agent:main:slow", state="processing")]
    if keepalives:  # the forwarder says it is alive every 30 s: the gateway is never silent
        events += [ev("forwarder.keepalive", t, queued=0, dropped=0) for t in range(30, 601, 30)]
    return events


def test_backoff_schedule_over_a_long_capture(tmp_path: Path) -> None:
    """monitor.md: warn 30 s, 5 s ticks, a processing session with no activity, created on a tick:
    reported at 35 s, 70 s, 140 s, 280 s, 560 s; a recovery requested with each report (observe)."""
    capture = write(tmp_path / "backoff.ndjson", _backoff_capture(keepalives=True))
    result = run("replay", str(capture), "--warn-ms", "30000", "--json")
    assert result.exit_code == 0, result.output
    verdicts = [o for o in json_objects(result.stdout) if o["kind"] == "verdict"]
    assert [(v["at"] - T0) // S for v in verdicts] == [35, 70, 140, 280, 560]
    assert [v["ageMs"] // S for v in verdicts] == [35, 70, 140, 280, 560]
    assert {(v["eventType"], v["reason"]) for v in verdicts} == {("session.stuck", "stale_session_state")}
    assert all(v["recovery"] is not None and v["recoveryOutcome"]["status"] == "skipped" for v in verdicts)
    summary = json_objects(result.stdout)[-1]
    assert summary["recoveriesRequested"] == 5 and summary["verdicts"] == {"session.stuck": 5}

    text = run("replay", str(capture), "--warn-ms", "30000")
    assert [line.split(" ")[0] for line in timeline(text.stdout)] == [
        iso_ms(T0 + t * S) for t in (35, 70, 140, 280, 560)]


def test_silent_gateway_is_reported_without_recovery(tmp_path: Path) -> None:
    """No keepalive: past OPENCLAW_DIAG_GATEWAY_SILENCE_MS (90 s) the verdicts go on, recoveries stop."""
    capture = write(tmp_path / "silent.ndjson", _backoff_capture(keepalives=False))
    result = run("replay", str(capture), "--warn-ms", "30000", "--tail-ms", "300000")
    assert result.exit_code == 0, result.output
    lines = timeline(result.stdout)
    assert [line.split(" ")[0] for line in lines] == [iso_ms(T0 + t * S) for t in (35, 70, 140, 280)]
    assert lines[0].endswith("recovery=requested->skipped/observe_only(no_recovery_target)")
    assert lines[1].endswith("recovery=requested->skipped/observe_only(no_recovery_target)")
    assert "gateway-silent recovery=none" in lines[2] and "gateway-silent recovery=none" in lines[3]


# -- replay: input handling -----------------------------------------------------------------------------------


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    capture = write(tmp_path / "mixed.ndjson", [
        ORPHANED[0],
        "{not json",
        "",
        json.dumps({"type": "session.state", "sessionKey": "x", "state": "bogus", "ts": T0 + 1500}),
        *[json.dumps(e) for e in ORPHANED[1:]],
        json.dumps([1, 2]),
        json.dumps({"type": "tool.execution.started", "ts": T0 + 3500, "toolName": "exec"}),
    ])
    result = run("replay", str(capture), "--warn-ms", "30000")
    assert result.exit_code == 1, result.output
    assert "line 2: skipped:" in result.stderr
    assert "line 4: skipped: state: must be one of idle, processing, waiting" in result.stderr
    assert "line 8: skipped: event must be a JSON object" in result.stderr
    assert "line 9: skipped: sessionKey, sessionId or runId is required" in result.stderr
    assert "line 3" not in result.stderr  # a blank line is not an error
    # The good lines were still applied: the verdict is there.
    assert len(timeline(result.stdout)) == 1 and "session.stuck" in result.stdout
    assert "4 invalid lines skipped" in result.stdout

    as_json = run("replay", str(capture), "--warn-ms", "30000", "--json")
    assert as_json.exit_code == 1
    invalid = [o for o in json_objects(as_json.stdout) if o["kind"] == "invalid"]
    assert [o["line"] for o in invalid] == [2, 4, 8, 9]
    assert invalid[1]["errors"] == [{"loc": ["body", 3, "state"], "msg": "must be one of idle, processing, waiting"}]


def test_stdin_and_gzip(tmp_path: Path) -> None:
    body = "\n".join(json.dumps(e) for e in ORPHANED) + "\n"
    from_stdin = run("replay", "-", "--warn-ms", "30000", input=body)
    assert from_stdin.exit_code == 0, from_stdin.output
    gz = tmp_path / "orphaned.ndjson.gz"
    gz.write_bytes(gzip.compress(body.encode()))
    from_gzip = run("replay", str(gz), "--warn-ms", "30000")
    assert from_gzip.exit_code == 0, from_gzip.output
    plain = run("replay", str(write(tmp_path / "o.ndjson", ORPHANED)), "--warn-ms", "30000")
    assert timeline(from_stdin.stdout) == timeline(from_gzip.stdout) == timeline(plain.stdout)
    assert len(timeline(plain.stdout)) == 1
    gz_stdin = run("replay", "-", "--warn-ms", "30000", input=gzip.compress(body.encode()))
    assert timeline(gz_stdin.stdout) == timeline(plain.stdout)


def test_replay_argument_errors(tmp_path: Path) -> None:
    missing = run("replay", str(tmp_path / "nope.ndjson"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    bad_warn = run("replay", str(write(tmp_path / "o.ndjson", ORPHANED)), "--warn-ms", "10")
    assert bad_warn.exit_code == 2 and "--warn-ms" in bad_warn.stderr and "between 1000 and 86400000" in bad_warn.stderr
    bad_env = run("replay", str(tmp_path / "o.ndjson"), env={"OPENCLAW_DIAG_SCAN_INTERVAL_MS": "soon"})
    assert bad_env.exit_code == 2 and "OPENCLAW_DIAG_SCAN_INTERVAL_MS" in bad_env.stderr


def test_session_keys_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """Keys come from the network: escape sequences and newlines are printed as escapes."""
    key = "agent:\x1b[2J\x1b]0;pwned\x07evil\nnext"
    capture = write(tmp_path / "evil.ndjson", [ev("session.state", 0, sessionKey=key, state="processing")])
    result = run("replay", str(capture), "--warn-ms", "30000", "--tail-ms", "40000")
    lines = timeline(result.stdout)
    assert len(lines) == 1
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "agent:\\x1b[2J\\x1b]0;pwned\\x07evil\\x0anext" in lines[0]


# -- replay: the real hung capture ---------------------------------------------------------------------


@pytest.mark.skipif(not HUNG.exists(), reason="real captures not available")
def test_real_hung_capture_flags_hang2() -> None:
    result = run("replay", str(HUNG), "--warn-ms", "30000", "--json")
    assert result.exit_code == 0, result.output  # every line of a real capture is valid
    objects = json_objects(result.stdout)
    verdicts = [o for o in objects if o["kind"] == "verdict"]
    assert verdicts, result.stdout
    assert {v["sessionKey"] for v in verdicts} == {"agent:main:hang2"}  # the probes were healthy turns
    first = verdicts[0]
    assert (first["eventType"], first["reason"], first["classification"], first["activeWorkKind"]) == (
        "session.stalled", "active_work_without_progress", "stalled_agent_run", "model_call")
    assert first["lastProgressReason"] == "model_call:started"
    assert 30_000 < first["lastProgressAgeMs"] <= 35_000  # within one tick of the warn threshold
    # Stalled between warn and abort (default 300 s) is observe-only: no recovery requested.
    assert all(v["recovery"] is None for v in verdicts)
    summary = objects[-1]
    assert summary["invalidLines"] == 0 and summary["sessionsSeen"] == 3
    assert summary["underAttentionAtEnd"] == []  # the run ended at the agent timeout

    text = run("replay", str(HUNG), "--warn-ms", "30000")
    assert " session.stalled default agent:main:hang2 reason=active_work_without_progress " in text.stdout


@pytest.mark.skipif(not HUNG.exists(), reason="real captures not available")
def test_real_hung_capture_under_the_2026_9_profile_agrees_with_the_gateways_own_verdicts() -> None:
    """The capture holds the gateway's own verdicts (its QA thresholds: warn 30 s, abort 60 s, a
    30 s tick). Replayed with the same thresholds under `--profile openclaw-2026.9`, ours say
    what it said, no later than one scan interval + 3 s after it (ours tick every 5 s)."""
    result = run("replay", str(HUNG), "--warn-ms", "30000", "--abort-ms", "60000",
                 "--profile", "openclaw-2026.9", "--json")
    assert result.exit_code == 0, result.output
    ours = [o for o in json_objects(result.stdout) if o["kind"] == "verdict"]
    assert all(v["classifierProfile"] == "openclaw-2026.9" for v in ours)
    theirs = [json.loads(line) for line in HUNG.read_text().splitlines()
              if json.loads(line)["type"] in ("session.long_running", "session.stalled", "session.stuck")]
    assert [(t["type"], t["reason"]) for t in theirs] == [
        ("session.long_running", "active_model_call_without_progress"),
        ("session.stalled", "active_work_without_progress")]
    assert [(v["eventType"], v["reason"]) for v in ours][:2] == [
        ("session.long_running", "active_model_call_without_progress"),
        ("session.stalled", "active_work_without_progress")]
    long_running, stalled = ours[0], next(v for v in ours if v["eventType"] == "session.stalled")
    # ours turned long_running before theirs was reported and held it until stalled, which came
    # after their long_running and no later than their stalled + one scan + 3 s
    assert long_running["at"] <= theirs[0]["ts"] < stalled["at"] <= theirs[1]["ts"] + 5_000 + 3_000
    assert {v["eventType"] for v in ours} <= {"session.long_running", "session.stalled"}  # never stuck
    # past the abort threshold the 2026.9 rule asks for an active abort of the model call
    assert stalled["recovery"]["allowActiveAbort"] is True
    assert stalled["recovery"]["activeWorkKind"] == "model_call"


@pytest.mark.skipif(not NORMAL.exists(), reason="real captures not available")
def test_real_normal_capture_is_quiet() -> None:
    result = run("replay", str(NORMAL), "--warn-ms", "30000")
    assert result.exit_code == 0, result.output
    assert timeline(result.stdout) == []


def test_replay_lines_helper_matches_the_cli(tmp_path: Path) -> None:
    verdicts, invalid, summary = replay_lines([json.dumps(e) for e in ORPHANED],
                                              ReplayConfig(Settings(stuck_session_warn_ms=30_000, stuck_session_abort_ms=300_000)))
    assert invalid == [] and len(verdicts) == 1 and verdicts[0].at == T0 + 35 * S
    assert summary.ended_at == T0 + 3 * S + 60 * S


# -- check-config and serve ---------------------------------------------------------------------------------


def test_check_config_prints_effective_settings_and_derived_abort() -> None:
    result = run("check-config", env={"OPENCLAW_DIAG_STUCK_SESSION_WARN_MS": "200000",
                                      "OPENCLAW_DIAG_INGEST_TOKENS": "s3cret,other=gw-1"})
    assert result.exit_code == 0, result.output
    assert "OPENCLAW_DIAG_STUCK_SESSION_WARN_MS" in result.stdout and "200000" in result.stdout
    assert "(derived) abort threshold" in result.stdout and "600000" in result.stdout
    assert "max(300000, 3 * warn)" in result.stdout
    assert "2 tokens (redacted), 1 bound to a gateway" in result.stdout
    assert "s3cret" not in result.stdout and "other" not in result.stdout

    explicit = run("check-config", "--json", env={"OPENCLAW_DIAG_STUCK_SESSION_WARN_MS": "30000",
                                                  "OPENCLAW_DIAG_STUCK_SESSION_ABORT_MS": "1000"})
    body = json.loads(explicit.stdout)
    assert body["derived"]["abortMs"] == 30_000  # set: max(warn, value)
    assert body["OPENCLAW_DIAG_STUCK_SESSION_ABORT_MS"] == 1000
    assert body["OPENCLAW_DIAG_INGEST_TOKENS"] == "(none: the API is unauthenticated)"
    default = json.loads(run("check-config", "--json").stdout)
    assert default["derived"]["abortMs"] == 360_000 and default["OPENCLAW_DIAG_PORT"] == 8080


@pytest.mark.parametrize(("env", "variable"), [
    ({"OPENCLAW_DIAG_STUCK_SESSION_WARN_MS": "500"}, "OPENCLAW_DIAG_STUCK_SESSION_WARN_MS"),
    ({"OPENCLAW_DIAG_STUCK_SESSION_WARN_MS": "often"}, "OPENCLAW_DIAG_STUCK_SESSION_WARN_MS"),
    ({"OPENCLAW_DIAG_PORT": "0"}, "OPENCLAW_DIAG_PORT"),
    ({"OPENCLAW_DIAG_SCAN_INTERVAL_MS": "x"}, "OPENCLAW_DIAG_SCAN_INTERVAL_MS"),
    ({"OPENCLAW_DIAG_RECOVERY_MODE": "webhook"}, "OPENCLAW_DIAG_RECOVERY_WEBHOOK_URL"),
    ({"OPENCLAW_DIAG_RECOVERY_MODE": "fix-it"}, "OPENCLAW_DIAG_RECOVERY_MODE"),
])
def test_check_config_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    result = run("check-config", env=env)
    assert result.exit_code == 2
    assert variable in result.stderr
    assert result.stdout == ""


def test_serve_refuses_an_invalid_environment_naming_the_variable() -> None:
    result = run("serve", env={"OPENCLAW_DIAG_STUCK_SESSION_WARN_MS": "999"})
    assert result.exit_code == 2
    assert "OPENCLAW_DIAG_STUCK_SESSION_WARN_MS" in result.stderr


def test_serve_refuses_a_locked_data_dir(tmp_path: Path) -> None:
    from app.journal import acquire_lock

    fd = acquire_lock(tmp_path)
    try:
        result = run("serve", env={"OPENCLAW_DIAG_DATA_DIR": str(tmp_path)})
    finally:
        os.close(fd)
    assert result.exit_code == 1
    assert "another openclaw-diagnostics process owns the data directory" in result.stderr


# -- formatting ------------------------------------------------------------------------------------------------


def test_human_ms_and_safe() -> None:
    assert [human_ms(v) for v in (None, 250, 1500, 65_000, 7_380_000, 2 * 86_400_000 + 3_600_000)] == [
        "-", "250ms", "1.5s", "1m05s", "2h03m", "2d01h"]
    assert safe("agent:main:main") == "agent:main:main"
    assert safe("a\x1bb\u202ec") == "a\\x1bb\\u202ec"
    assert safe(None) == "-"
