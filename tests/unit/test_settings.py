"""Settings: defaults, derived thresholds, errors that name the variable, and the README table."""

from __future__ import annotations

import pytest

from app.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from tests.support.paths import REPO

README = REPO / "README.md"


def test_defaults_match_the_spec():
    s = load_settings()
    assert (s.warn_ms, s.abort_ms, s.scan_interval_ms, s.stalled_report_interval_ms) == (120_000, 360_000, 5_000, 30_000)
    assert (s.gateway_silence_ms, s.session_idle_ttl_ms, s.max_sessions) == (90_000, 1_800_000, 1_000_000)
    assert (s.host, s.port, s.recovery_mode) == ("127.0.0.1", 8080, "observe")


@pytest.mark.parametrize(("warn", "abort", "expected"), [
    ("30000", None, 300_000), ("200000", None, 600_000), ("30000", "10000", 30_000), ("30000", "400000", 400_000),
])
def test_abort_threshold_is_derived(monkeypatch, warn, abort, expected):
    monkeypatch.setenv("OPENCLAW_DIAG_STUCK_SESSION_WARN_MS", warn)
    if abort is not None:
        monkeypatch.setenv("OPENCLAW_DIAG_STUCK_SESSION_ABORT_MS", abort)
    assert load_settings().abort_ms == expected


def test_warn_is_floored(monkeypatch):
    monkeypatch.setenv("OPENCLAW_DIAG_STUCK_SESSION_WARN_MS", "1500.9")
    assert load_settings().warn_ms == 1500


@pytest.mark.parametrize("value", ["999", "86400001", "soon", "nan", "inf"])
def test_bad_warn_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("OPENCLAW_DIAG_STUCK_SESSION_WARN_MS", value)
    with pytest.raises(SettingsError, match="OPENCLAW_DIAG_STUCK_SESSION_WARN_MS"):
        load_settings()


@pytest.mark.parametrize(("name", "value"), [("PORT", "http"), ("RECOVERY_MODE", "fix-it"), ("SCAN_INTERVAL_MS", "0")])
def test_other_bad_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(SettingsError, match=ENV_PREFIX + name):
        load_settings()


def test_webhook_mode_needs_a_url(monkeypatch):
    monkeypatch.setenv("OPENCLAW_DIAG_RECOVERY_MODE", "webhook")
    with pytest.raises(SettingsError, match="RECOVERY_WEBHOOK_URL"):
        load_settings()


def test_tokens_may_be_bound_to_a_gateway(monkeypatch):
    monkeypatch.setenv("OPENCLAW_DIAG_INGEST_TOKENS", "alpha, beta=gw-2 ,")
    assert load_settings().tokens() == {"alpha": None, "beta": frozenset({"gw-2"})}


def test_every_setting_is_documented_in_the_readme():
    readme = README.read_text()
    missing = [ENV_PREFIX + name.upper() for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in readme]
    assert not missing
