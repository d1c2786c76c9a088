"""The alert and recording rules (deploy/rules/openclaw.rules.yml) under Prometheus' own tools.

promtool comes from Debian's `prometheus` package (.ci/run installs it); without it the
promtool tests skip and say so. `promtool test rules` runs deploy/rules/openclaw.rules.test.yml,
which shows every alert firing and not firing on synthetic series; the checks below make sure
it keeps doing so for every alert, and that every alert carries what an on-call person needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.support.paths import REPO

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extras: pip install -e '.[test]'")

ROOT = REPO
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
RULES = ROOT / "deploy" / "rules" / "openclaw.rules.yml"
RULE_TESTS = ROOT / "deploy" / "rules" / "openclaw.rules.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
DASHBOARD = ROOT / "grafana" / "dashboards" / "openclaw-sessions.json"

EXPECTED_ALERTS = {
    "OpenClawSessionStuck",
    "OpenClawSessionStuckRateHigh",
    "OpenClawSessionStuckRecoveryFailing",
    "OpenClawSessionsStalled",
    "OpenClawGatewaySilent",
    "OpenClawDiagnosticsExportFailing",
    "OpenClawDiagnosticsNoData",
    "OpenClawSessionNeedsHuman",
    "OpenClawSessionRecoveryIneffective",
    "OpenClawGatewayInMaintenance",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (Debian's `prometheus` package; .ci/run installs it)")
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def recorded() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def expanded_expr(expr: str) -> str:
    """The expression with the recording rules it reads spelled out (one level is all there is)."""
    for name, body in recorded().items():
        expr = expr.replace(name, f"({body})")
    return expr


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


# ---------------------------------------------------------------------------- promtool


def test_promtool_check_config():
    result = run_promtool("check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules():
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path):
    # Guard against a test file that passes whatever the rules say: with the observe_only
    # exclusion removed, the "observe executor never pages" test must fail.
    broken = RULES.read_text(encoding="utf-8").replace('openclaw_action!="observe_only", ', "")
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(broken, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run_promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "OpenClawSessionStuckRecoveryFailing" in result.stdout + result.stderr


# ---------------------------------------------------------------------------- the unit tests' coverage


def test_every_alert_is_tested_firing_and_not_firing():
    doc = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert doc["rule_files"] == [RULES.name]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) == EXPECTED_ALERTS
    assert EXPECTED_ALERTS - firing == set(), "alerts never shown firing"
    assert EXPECTED_ALERTS - silent == set(), "alerts never shown staying silent"


def test_recording_rules_are_tested_through_their_values_or_alerts():
    text = RULE_TESTS.read_text(encoding="utf-8")
    for name in recorded():
        users = [alert for alert, rule in alerts().items() if name in rule["expr"]]
        assert name in text or any(alert in text for alert in users), f"{name} is untested"


# ---------------------------------------------------------------------------- what each alert says


def test_every_alert_has_severity_summary_description_runbook_and_dashboard():
    anchors = runbook_anchors()
    uid = json.loads(DASHBOARD.read_text(encoding="utf-8"))["uid"]
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        notes = rule["annotations"]
        about_sessions = name.startswith(("OpenClawSession", "OpenClawGateway"))
        expected = {"summary", "description", "runbook_url", "dashboard"} | ({"page"} if about_sessions else set())
        assert set(notes) == expected, name
        if about_sessions:  # the service's own page, filtered to the gateway when there is one
            assert notes["page"].startswith("{{ $externalLabels.openclaw_public_url }}/"), name
            assert ("openclaw_gateway" in rule["expr"]) == ("gatewayId={{ $labels.openclaw_gateway | urlquery }}"
                                                           in notes["page"]), name
        assert len(notes["summary"]) < 120, f"{name}: the summary is a one-liner"
        assert len(notes["description"]) > len(notes["summary"]), name
        path, _, anchor = notes["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor == name.lower(), f"{name}: {notes['runbook_url']}"
        assert anchor in anchors, f"{name}: docs/runbook.md has no heading for #{anchor}"
        assert f"/d/{uid}/" in notes["dashboard"], f"{name}: dashboard link is not the OpenClaw dashboard"
        # A per-gateway alert opens the dashboard on its gateway.
        per_gateway = "by (openclaw_gateway" in rule["expr"]
        assert per_gateway == ("var-gateway={{ $labels.openclaw_gateway }}" in notes["dashboard"]), name


def test_runbook_covers_each_alert_with_what_to_do():
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    by_name = {section.splitlines()[0].strip(): section for section in sections[1:]}
    for name in EXPECTED_ALERTS:
        assert name in by_name, f"docs/runbook.md has no '## {name}' section"
        body = by_name[name].lower()
        for part in ("meaning", "impact", "diagnos", "action"):
            assert part in body, f"runbook {name}: no {part} part"


def test_stuck_now_comes_from_the_gauge_and_waits():
    rule = alerts()["OpenClawSessionStuck"]
    expr = expanded_expr(rule["expr"])
    assert "openclaw_monitor_sessions" in expr and 'openclaw_attention="stuck"' in expr
    # The counter backs off per session: a rate alone resolves while a session is still stuck.
    assert "openclaw_session_stuck_total" not in expr
    assert rule.get("for"), "stuck now needs a for: window"


def test_fleet_wide_stuck_rate_reads_the_counter_across_gateways():
    expr = expanded_expr(alerts()["OpenClawSessionStuckRateHigh"]["expr"])
    assert "rate(openclaw_session_stuck_total[" in expr
    assert alerts()["OpenClawSessionStuckRateHigh"]["expr"].startswith("sum("), "fleet-wide: no per-gateway split"


def test_recovery_failing_never_counts_observe_only_outcomes():
    expr = expanded_expr(alerts()["OpenClawSessionStuckRecoveryFailing"]["expr"])
    selectors = re.findall(r"openclaw_session_recovery_completed_total\{([^}]*)\}", expr)
    assert selectors, "the alert does not read recovery completions"
    for matchers in selectors:
        assert 'openclaw_action!="observe_only"' in matchers, matchers
    statuses = {re.search(r'openclaw_status="(\w+)"', m).group(1) for m in selectors}
    assert statuses == {"failed", "released"}
    # "released, yet nothing released": the gateway's released items did not grow (not a label
    # of the upstream-named counter, an instrument of ours)
    assert re.search(r'unless on \(openclaw_gateway\)\s*sum by \(openclaw_gateway\) \(\s*'
                     r'increase\(openclaw_monitor_recovery_released_items_total\{openclaw_status="released"\}', expr), expr


def test_no_data_uses_absent_on_a_series_the_service_always_sends():
    expr = alerts()["OpenClawDiagnosticsNoData"]["expr"]
    assert re.fullmatch(r"absent\(openclaw_monitor_scan_duration_ms_milliseconds_count\)", expr)
    assert alerts()["OpenClawDiagnosticsNoData"]["labels"]["severity"] == "critical"
