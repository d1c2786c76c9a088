"""Static checks of the scale stack: docker-compose.scale.yml, deploy/haproxy.cfg and
deploy/prometheus-scale.yml agree with each other and with the single-instance stack.

No docker engine runs here (nor in CI), so the stack is checked as files: every instance has
the shared journal and an identity of its own, HAProxy routes to exactly the instances the
compose file declares (hashing consistently on X-OpenClaw-Gateway, checking /readyz), and
Prometheus scrapes exactly those. HAProxy's own parser checks haproxy.cfg when Debian's
`haproxy` is installed (.ci/run installs it). The routing itself, on a real HAProxy, is
tests/e2e/test_haproxy_routing.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.haproxy import HASH_HEADER, require_haproxy
from tests.support.paths import REPO

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extras: pip install -e '.[test]'")

SCALE = REPO / "docker-compose.scale.yml"
SINGLE = REPO / "docker-compose.yml"
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
PROMETHEUS_SCALE = REPO / "deploy" / "prometheus-scale.yml"
PROMETHEUS = REPO / "deploy" / "prometheus.yml"
INSTANCES = ["openclaw-1", "openclaw-2", "openclaw-3"]
PORT = "8080"
JOURNAL_URL = "postgresql://openclaw:${OPENCLAW_DB_PASSWORD:-openclaw}@postgres:5432/openclaw"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_yaml(SCALE)["services"]


def instances_of(services: dict[str, Any]) -> list[str]:
    """The services running this repository's image: those built from its Dockerfile."""
    return [name for name, service in services.items() if service.get("build") == "."]


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """{"backend instances": [its lines, comments and blank lines dropped], ...}"""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        elif current is not None:
            current.append(" ".join(line.split()))
    return sections


@pytest.fixture(scope="module")
def haproxy_cfg() -> dict[str, list[str]]:
    return haproxy_sections(HAPROXY_CFG.read_text(encoding="utf-8"))


def the_backend(sections: dict[str, list[str]]) -> list[str]:
    backends = [name for name in sections if name.startswith("backend ")]
    assert len(backends) == 1, backends
    return sections[backends[0]]


def test_the_scale_stack_has_three_instances_haproxy_and_postgres(services: dict[str, Any]) -> None:
    assert instances_of(services) == INSTANCES
    assert {"haproxy", "postgres", "prometheus", "alertmanager"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["haproxy"]["image"].startswith("haproxy:2.6")
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_every_instance_has_the_shared_journal_and_an_identity_of_its_own(services: dict[str, Any]) -> None:
    ids, urls = set(), set()
    for name in instances_of(services):
        env = services[name]["environment"]
        assert env["OPENCLAW_DIAG_JOURNAL_URL"] == JOURNAL_URL, name
        assert env["OPENCLAW_DIAG_INSTANCE_ID"] == name
        assert env["OPENCLAW_DIAG_INSTANCE_URL"] == f"http://{name}:{PORT}"
        ids.add(env["OPENCLAW_DIAG_INSTANCE_ID"])
        urls.add(env["OPENCLAW_DIAG_INSTANCE_URL"])
        # its own name first: the other instances and Prometheus address it by that name
        assert env["OPENCLAW_DIAG_ALLOWED_HOSTS"].split(",")[0] == name
        assert (env["OPENCLAW_DIAG_HOST"], str(env["OPENCLAW_DIAG_PORT"])) == ("0.0.0.0", PORT)
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "ports" not in services[name], f"{name} is reached through haproxy only"
    assert len(ids) == len(urls) == len(INSTANCES)


def test_the_journal_url_matches_the_postgres_service(services: dict[str, Any]) -> None:
    env = services["postgres"]["environment"]
    url = re.fullmatch(r"postgresql://(\w+):(\$\{[^}]+\})@postgres:5432/(\w+)", JOURNAL_URL)
    assert url is not None
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == url.groups()


def test_instances_carry_the_single_instance_stacks_settings(services: dict[str, Any]) -> None:
    """Tokens, recovery mode, data dir...: what docker-compose.yml gives its one instance (less
    the OTLP export to a collector this stack does not have, and the per-instance Host list)."""
    single = load_yaml(SINGLE)["services"]["openclaw-diagnostics"]["environment"]
    expected = {key: value for key, value in single.items()
                if key.startswith("OPENCLAW_DIAG_") and key != "OPENCLAW_DIAG_ALLOWED_HOSTS"}
    for name in instances_of(services):
        env = services[name]["environment"]
        assert {key: env.get(key) for key in expected} == expected, name
        assert env["OTEL_SERVICE_NAME"] == single["OTEL_SERVICE_NAME"]


def test_mounted_files_are_in_the_repository(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not there"


def test_haproxy_routes_to_exactly_the_compose_instances(services: dict[str, Any],
                                                         haproxy_cfg: dict[str, list[str]]) -> None:
    servers = [line.split()[1:3] for line in the_backend(haproxy_cfg) if line.startswith("server ")]
    assert servers == [[name, f"{name}:{PORT}"] for name in instances_of(services)]


def test_haproxy_hashes_consistently_on_the_gateway_header_and_checks_readyz(
        haproxy_cfg: dict[str, list[str]]) -> None:
    backend = the_backend(haproxy_cfg)
    assert f"balance hdr({HASH_HEADER})" in backend
    assert any(line.split()[:2] == ["hash-type", "consistent"] for line in backend)
    assert "option httpchk GET /readyz" in backend
    assert "http-check expect status 200" in backend
    default_server = next(line.split() for line in backend if line.startswith("default-server "))
    assert "check" in default_server
    for option in ("inter", "fall", "rise", "resolvers", "init-addr"):
        assert option in default_server, f"default-server has no {option}"
    defaults = haproxy_cfg["defaults"]
    assert "option redispatch" in defaults and "option forwardfor" in defaults
    assert any(line.startswith("retries ") for line in defaults)
    assert "timeout tunnel 1h" in defaults


def test_haproxy_listens_where_compose_publishes(services: dict[str, Any],
                                                 haproxy_cfg: dict[str, list[str]]) -> None:
    binds = {line.split()[1].rsplit(":", 1)[1] for lines in haproxy_cfg.values() for line in lines
             if line.startswith("bind ")}
    published = {port.rsplit(":", 1)[1] for port in services["haproxy"]["ports"]}
    assert binds == published == {"8080", "8404"}
    assert services["haproxy"]["volumes"][0].startswith("./deploy/haproxy.cfg:")


def test_prometheus_scrapes_each_instance_and_alerts_like_the_single_stack(services: dict[str, Any]) -> None:
    scale, single = load_yaml(PROMETHEUS_SCALE), load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in scale["scrape_configs"]}
    targets = [t for config in jobs["openclaw-diagnostics"]["static_configs"] for t in config["targets"]]
    assert targets == [f"{name}:{PORT}" for name in instances_of(services)]
    assert scale["rule_files"] == single["rule_files"]
    assert scale["alerting"] == single["alerting"]
    assert scale["global"]["external_labels"] == single["global"]["external_labels"]
    assert "./deploy/prometheus-scale.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]


def test_haproxy_accepts_the_configuration() -> None:
    binary = require_haproxy()
    # The instances' names do not resolve outside compose: HAProxy warns, and init-addr none
    # lets it start (and pass the check) anyway.
    result = subprocess.run([binary, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
