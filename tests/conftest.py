"""Shared fixtures. The end-to-end harness itself lives in `service_process.py`.

- `service_factory(settings=None, *, token=None, name="service", start=True)` builds a
  `ServiceProcess` on a fresh data dir under the test's tmp_path (or `data_dir=` to share one),
  starts it unless `start=False`, and stops it at teardown.
- `fake_gateway` is a running `FakeGatewayWebhook`, stopped at teardown.
- A failed test gets the log tail of every service it used attached to its report.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.service_process import FakeGatewayWebhook, ServiceProcess


class ServiceFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[ServiceProcess] = []

    def __call__(self, settings: dict[str, object] | None = None, *, token: str | None = None,
                 name: str = "service", data_dir: Path | None = None, start: bool = True,
                 fast_monitor: bool = True, command_prefix: Sequence[str] = ()) -> ServiceProcess:
        name = f"{name}{len(self.created) + 1}" if any(s.name == name for s in self.created) else name
        service = ServiceProcess(data_dir or self.root / f"{name}-data", settings, log_dir=self.root / "logs",
                                 token=token, name=name, fast_monitor=fast_monitor, command_prefix=command_prefix)
        self.created.append(service)
        if start:
            service.start()
        return service

    def close(self) -> None:
        for service in self.created:
            service.stop()


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_service_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path_factory.mktemp("services"))
    yield factory
    factory.close()


@pytest.fixture
def fake_gateway() -> Iterator[FakeGatewayWebhook]:
    gateway = FakeGatewayWebhook().start()
    yield gateway
    gateway.stop()


def _services_of(item: pytest.Item) -> list[ServiceProcess]:
    found: dict[int, ServiceProcess] = {}
    for value in getattr(item, "funcargs", {}).values():
        candidates = value.created if isinstance(value, ServiceFactory) else [value]
        for service in candidates:
            if isinstance(service, ServiceProcess):
                found[id(service)] = service
    return list(found.values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for service in _services_of(item):
            report.sections.append((f"service log: {service.name} (port {service.port})", service.log_tail(80)))


# -- PostgreSQL: where the server comes from is tests/support/postgres.py's docstring. Imported in
# the fixtures, so a test run that needs no PostgreSQL does not need psycopg either.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The session's PostgreSQL, as its admin URL; skipped (failed under CI=true) without one."""
    from tests.support.postgres import provide_server

    with provide_server() as admin_url:
        yield admin_url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database `oc_test_<hex>` of this test's own, as a URL; dropped WITH (FORCE) after."""
    from tests.support.postgres import fresh_database

    with fresh_database(postgres_server) as url:
        yield url
