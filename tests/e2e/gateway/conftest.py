"""Fixtures for the real-gateway e2e tests; the stack itself is described in gateway_stack.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_model import FakeModelServer
from tests.support.gateway_harness import Gateway, IngestTap, Runtime
from tests.support.gateway_stack import (
    ABORT_MS,
    INGEST_TOKEN,
    OPERATOR_TOKEN,
    QA_ABORT_MS,
    RECOVERY_TOKEN,
    SCAN_MS,
    STALLED_REPORT_MS,
    WARN_MS,
    Stack,
    plugin_config,
    wait_ready,
)
from tests.support.service_process import ServiceProcess


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    # Installs Node 26 and openclaw into .cache/ on first use. A failure here is an error of
    # the test run, never a skip.
    return Runtime().ensure()


@pytest.fixture(scope="module")
def stack(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("gateway-e2e")
    stock_model = FakeModelServer().start()
    qa_model = FakeModelServer().start()
    # The taps' upstream is set once the service is up: the service needs the stock gateway's
    # port for its webhook URL, and the gateways need the taps' URLs in their plugin config.
    stock_tap = IngestTap().start()
    qa_tap = IngestTap().start()
    stock = Gateway(runtime, root / "stock", gateway_id="e2e-stock", model_base_url=stock_model.base_url,
                    plugin_config=plugin_config(stock_tap, "e2e-stock", recovery=True))
    qa = Gateway(runtime, root / "qa", gateway_id="e2e-qa", model_base_url=qa_model.base_url,
                 plugin_config=plugin_config(qa_tap, "e2e-qa", recovery=False),
                 extra_env={
                     # The gateway exits when this pid dies: it cannot outlive the test run.
                     "OPENCLAW_QA_PARENT_PID": str(os.getpid()),
                     "QA_DIAGNOSTIC_STUCK_SESSION_ABORT_MS": str(QA_ABORT_MS),
                 })
    service = ServiceProcess(
        root / "service-data",
        {
            "stuck_session_warn_ms": WARN_MS,
            "scan_interval_ms": SCAN_MS,
            "stuck_session_abort_ms": ABORT_MS,
            "stalled_report_interval_ms": STALLED_REPORT_MS,
            "ingest_tokens": INGEST_TOKEN,
            "operator_tokens": f"e2e-operator:{OPERATOR_TOKEN}",
            "recovery_mode": "webhook",
            "recovery_webhook_url": f"{stock.recovery_url()}?gatewayId={{gatewayId}}",
            "recovery_webhook_token": RECOVERY_TOKEN,
            # The scenarios here pin the seed table's verdicts (ours stalled where the gateway
            # says long_running); under `auto` these 2026.9.6 gateways get the 2026.9 table,
            # which test_agreement.py holds against the gateway's own verdicts.
            "classifier_profile": "seed",
        },
        log_dir=root / "logs", token=INGEST_TOKEN, name="service", fast_monitor=False,
    )
    built = Stack(service, stock, qa, stock_model, qa_model, stock_tap, qa_tap)
    try:
        service.start()
        stock_tap.upstream = qa_tap.upstream = service.url
        # Both gateways boot at once (~15-20 s each, cold): they overlap instead of adding up.
        stock.spawn()
        qa.spawn()
        wait_ready(service, stock, check_route=True, context=built.context)
        wait_ready(service, qa, context=built.context)
        yield built
    finally:
        for model in (stock_model, qa_model):
            model.release_hung()  # else the gateways' shutdown waits for their hung runs to drain
        for gateway in (stock, qa):
            gateway.stop()
        for model in (stock_model, qa_model):
            model.stop()
        for tap in (stock_tap, qa_tap):
            tap.stop()
        service.stop()
