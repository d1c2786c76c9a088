"""The stack the real-gateway e2e tests run against, built once per module (conftest.py):

    fake model "stock" <-- gateway e2e-stock  --plugin--> tap --+
                                                                +--> service (warn 10 s, scan 500 ms)
    fake model "qa"    <-- gateway e2e-qa     --plugin--> tap --+         |
                           (QA hook: its own monitor lowered)             |
    gateway e2e-stock's plugin route  <--- recovery webhook (webhook mode) +

Each tap records what the plugin put on the wire and can refuse batches (503) to exercise the
plugin's retries. The service's webhook URL names the gateway only in a query parameter, so
requests for e2e-qa reach e2e-stock's plugin too, which refuses them (409, wrong gateway): the
QA gateway's hung run is left for its own monitor to judge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.fake_model import FakeModelServer
from tests.support.gateway_harness import Gateway, IngestTap, http_post_json, port_open
from tests.support.service_process import ServiceProcess

WARN_MS = 10_000
SCAN_MS = 500
ABORT_MS = 15_000  # past warn + 2 scans, so the stalled verdict is seen before the abort
# A stalled session is re-reported (and so may get its recovery request) at most this often.
STALLED_REPORT_MS = 1_000
FLUSH_MS = 200
INGEST_TOKEN = "e2e-ingest-token"
RECOVERY_TOKEN = "e2e-recovery-token"
OPERATOR_TOKEN = "e2e-operator-token"  # named `e2e-operator` in the audit log
READY_DEADLINE_S = 120.0
# QA hook: abort 60 s => the gateway's own warn is 30 s. Its monitor ticks every 30 s, so the
# first tick past warn sees an age in (30 s, 60 s]: always `long_running` for a silent model call
# (with abort 30 s that first tick may already be past abort and say `stalled`).
QA_ABORT_MS = 60_000


@dataclass
class Stack:
    service: ServiceProcess
    stock: Gateway
    qa: Gateway
    stock_model: FakeModelServer
    qa_model: FakeModelServer
    stock_tap: IngestTap
    qa_tap: IngestTap

    def context(self) -> str:
        """Log tails for failure messages."""
        return (
            f"\n--- service log ---\n{self.service.log_tail(40)}"
            f"\n--- gateway e2e-stock ---\n{self.stock.log_tail(40)}"
            f"\n--- gateway e2e-qa ---\n{self.qa.log_tail(40)}"
        )


def plugin_config(tap: IngestTap, gateway_id: str, recovery: bool) -> dict[str, object]:
    config: dict[str, object] = {
        "serviceUrl": tap.url,
        "token": INGEST_TOKEN,
        "gatewayId": gateway_id,
        "flushIntervalMs": FLUSH_MS,
        "keepaliveIntervalMs": 5000,
        "baseBackoffMs": 200,
        "maxBackoffMs": 2000,
    }
    if recovery:
        config.update({"recoveryToken": RECOVERY_TOKEN, "recoverySettleMs": 5000})
    return config


def wait_ready(service: ServiceProcess, gateway: Gateway, *, check_route: bool = False,
               context: Callable[[], str] = lambda: "") -> None:
    """Port open, the plugin's first keepalive arrived, and (check_route) the webhook route is live."""
    deadline = time.monotonic() + READY_DEADLINE_S
    while True:
        gateway.assert_alive()
        service.assert_alive("while the gateways start")
        ready = port_open(gateway.port) and gateway.gateway_id in _gateway_ids(service)
        if ready and check_route:
            # 401 = the plugin's route answered (without a token); 503 = plugin routes not up yet.
            status, _ = http_post_json(gateway.recovery_url(), {}, timeout=5)
            ready = status == 401
        if ready:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway {gateway.gateway_id} not ready in {READY_DEADLINE_S} s{context()}")
        time.sleep(0.25)


def _gateway_ids(service: ServiceProcess) -> set[str]:
    try:
        response = service.client.get("/v1/gateways")
    except Exception:  # noqa: BLE001 - not up yet counts as "no gateways"
        return set()
    if response.status_code != 200:
        return set()
    body = response.json()
    items = body.get("items", body) if isinstance(body, dict) else body
    return {item.get("gatewayId") for item in items if isinstance(item, dict)}


