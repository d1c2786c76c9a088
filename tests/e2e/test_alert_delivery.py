"""Alerts reach a person: the shipped rules and Alertmanager configuration, end to end.

What runs, all on 127.0.0.1, all real processes:
- the service (warn 5 s, a scan every 100 ms, a gateway silent after 1 s);
- Debian's `prometheus`, scraping the service's /metrics every second and evaluating a copy of
  deploy/rules/openclaw.rules.yml in which only the `for:` durations are shortened (to 2 s);
  its external label `openclaw_public_url` is the service's address, as the stack sets it;
- Debian's `prometheus-alertmanager`, started through the stack's own entrypoint
  (deploy/alertmanager-entrypoint.sh) with a copy of deploy/alertmanager.yml in which only
  `group_wait` and `group_interval` are shortened (to 1 s), its webhook pointed at
- a local HTTP receiver, standing in for the person.

Gateway `gw-live` keeps sending keepalives and has one stuck session; gateway `gw-quiet` sends
one keepalive and one processing session, then nothing: it goes silent (1 s) before its session
becomes stuck (5 s), so its stuck alert arrives while its silence alert fires, and is inhibited.

If either binary is missing the module is skipped, except under CI=true, where that fails
(.ci/run installs both).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.alertmanager_server import (
    AlertmanagerServer,
    alertmanager_binary,
    amtool_binary,
)
from tests.support.prometheus_server import PrometheusServer, prometheus_binary
from tests.support.service_process import (
    REPO,
    ServiceProcess,
    keepalive,
    now_ms,
    post_events,
    wait_until,
)
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

RULES = REPO / "deploy" / "rules" / "openclaw.rules.yml"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager.yml"
WARN_MS = 5_000
STUCK_KEY = "agent:main:telegram:direct:4711"
QUIET_KEY = "agent:main:quiet"


def _require(binary: str | None, package: str) -> None:
    if binary is None:
        message = f"Debian's `{package}` is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def shortened(text: str, replacements: dict[str, str]) -> str:
    """The shipped text with only the given durations changed (each must be there to change)."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in the shipped file any more"
        text = text.replace(old, new)
    return text


@dataclass
class Stack:
    service: ServiceProcess
    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    receiver: WebhookReceiver
    started: dict[str, float]  # when each scenario's session was sent (time.time())

    def context(self) -> str:
        return (f"\n--- alertmanager ---\n{self.alertmanager.log_tail(20)}"
                f"\n--- prometheus ---\n{self.prometheus.log_tail(10)}\n--- service ---\n{self.service.log_tail(10)}")


def alerts_in(notification: dict[str, Any], name: str, gateway: str) -> list[dict[str, Any]]:
    return [a for a in notification.get("alerts", [])
            if a["labels"].get("alertname") == name and a["labels"].get("openclaw_gateway") == gateway]


@pytest.fixture(scope="module")
def stack(module_service_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require(prometheus_binary(), "prometheus")
    _require(alertmanager_binary(), "prometheus-alertmanager")
    root = tmp_path_factory.mktemp("alerts")
    service = module_service_factory({"stuck_session_warn_ms": WARN_MS, "scan_interval_ms": 100,
                                      "gateway_silence_ms": 1_000}, name="alerting")
    receiver = WebhookReceiver().start()
    alertmanager = AlertmanagerServer(
        root / "alertmanager", webhook_url=receiver.url,
        config_text=shortened(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"),
                              {"group_wait: 30s": "group_wait: 1s", "group_interval: 5m": "group_interval: 1s"}),
    )
    prometheus = PrometheusServer(
        root / "prometheus", targets=[f"127.0.0.1:{service.port}"], rule_files=[RULES],
        alertmanagers=[], external_labels={"openclaw_public_url": service.url},
        rule_text=lambda text: shortened(text, {"for: 5m": "for: 2s", "for: 10m": "for: 2s"}),
    )
    stop = threading.Event()

    def forwarder() -> None:  # gw-live's plugin: a keepalive every 300 ms
        while not stop.wait(0.3):
            post_events(service.client, [keepalive("gw-live")])

    beat = threading.Thread(target=forwarder, name="gw-live-keepalives", daemon=True)
    try:
        alertmanager.start()
        prometheus.alertmanagers = [alertmanager.address]
        prometheus.start()
        prometheus.wait_scrapes(2)
        post_events(service.client, [keepalive("gw-live")])
        beat.start()
        started = {"live": time.time()}
        # stuck at once: processing since well before warn, nothing running
        post_events(service.client, [{"type": "session.state", "gatewayId": "gw-live", "sessionKey": STUCK_KEY,
                                      "state": "processing", "ts": now_ms() - 2 * WARN_MS}])
        started["quiet"] = time.time()
        post_events(service.client, [keepalive("gw-quiet"),
                                     {"type": "session.state", "gatewayId": "gw-quiet", "sessionKey": QUIET_KEY,
                                      "state": "processing", "ts": now_ms()}])
        yield Stack(service, prometheus, alertmanager, receiver, started)
    finally:
        stop.set()
        if beat.is_alive():
            beat.join(5)
        prometheus.stop()
        alertmanager.stop()
        receiver.stop()


def test_the_shipped_configuration_passes_amtool_as_it_is(tmp_path) -> None:
    amtool = amtool_binary()
    _require(amtool, "prometheus-alertmanager")
    for config in (ALERTMANAGER_CONFIG,):
        checked = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "SUCCESS" in checked.stdout


def test_a_stuck_session_reaches_the_receiver_with_gateway_reason_and_links(stack: Stack) -> None:
    notification = stack.receiver.wait_for(
        lambda n: n["status"] == "firing" and alerts_in(n, "OpenClawSessionStuck", "gw-live"),
        timeout=60, what=f"about gw-live's stuck session{stack.context()}")
    took = time.time() - stack.started["live"]
    (alert,) = alerts_in(notification, "OpenClawSessionStuck", "gw-live")
    assert alert["labels"]["openclaw_reason"] == "stale_session_state"
    assert alert["labels"]["severity"] == "warning"
    annotations = alert["annotations"]
    assert annotations["summary"] == "1 stuck session(s) on gateway gw-live: stale_session_state"
    # since when: the oldest stuck session's attention age, read from the service's gauge
    assert "for at least 5 minutes, the oldest for " in annotations["description"]
    assert annotations["page"] == f"{stack.service.url}/?gatewayId=gw-live"
    assert annotations["runbook_url"] == "docs/runbook.md#openclawsessionstuck"
    assert notification["groupLabels"] == {"alertname": "OpenClawSessionStuck", "openclaw_gateway": "gw-live"}
    # the link opens the service's page on that gateway, with the session on it
    page = stack.service.client.get("/ui/state.json", params={"gatewayId": "gw-live"}).json()
    assert [item["sessionKey"] for item in page["items"]] == [STUCK_KEY]
    print(f"stuck session -> notification at the receiver: {took:.1f} s "
          f"(warn {WARN_MS / 1000:.0f} s already passed at send; for: 2 s, group_wait 1 s, scrape and evaluation 1 s)")


def test_a_silent_gateway_holds_back_its_own_session_alerts(stack: Stack) -> None:
    stack.receiver.wait_for(lambda n: n["status"] == "firing" and alerts_in(n, "OpenClawGatewaySilent", "gw-quiet"),
                            timeout=60, what=f"about gw-quiet's silence{stack.context()}")

    def inhibited() -> dict[str, Any] | None:
        for alert in stack.alertmanager.alerts():
            labels = alert["labels"]
            if labels.get("alertname") == "OpenClawSessionStuck" and labels.get("openclaw_gateway") == "gw-quiet":
                return alert if alert["status"]["state"] == "suppressed" and alert["status"]["inhibitedBy"] else None
        return None

    # its session turned stuck after the gateway went silent: Alertmanager has it, inhibited
    wait_until(inhibited, timeout=60, interval=0.25, what=f"gw-quiet's stuck alert, inhibited{stack.context()}")
    time.sleep(3)  # a few group intervals: an inhibited alert never goes out
    sent = [n for n in stack.receiver.bodies() if alerts_in(n, "OpenClawSessionStuck", "gw-quiet")]
    assert sent == []


def test_the_alert_resolves_when_the_session_recovers(stack: Stack) -> None:
    stack.receiver.wait_for(lambda n: n["status"] == "firing" and alerts_in(n, "OpenClawSessionStuck", "gw-live"),
                            timeout=60, what="the firing notification first")
    recovered = time.time()
    post_events(stack.service.client, [{"type": "session.state", "gatewayId": "gw-live", "sessionKey": STUCK_KEY,
                                        "state": "idle", "ts": now_ms()}])
    notification = stack.receiver.wait_for(
        lambda n: n["status"] == "resolved" and alerts_in(n, "OpenClawSessionStuck", "gw-live"),
        timeout=60, what=f"resolving gw-live's stuck session{stack.context()}")
    (alert,) = alerts_in(notification, "OpenClawSessionStuck", "gw-live")
    assert alert["status"] == "resolved" and alert["endsAt"] > alert["startsAt"]
    print(f"session idle -> resolved notification: {time.time() - recovered:.1f} s")
