"""Static checks of the operator stack: Dockerfile, compose file, collector, Grafana, dashboard.

No docker engine runs here (nor in CI), so `docker compose config` and `docker build` cannot
run: the compose file, the Dockerfile and the collector config are checked statically instead —
YAML structure, pinned image tags, healthchecks, depends_on conditions, every mounted file
present, and ports/paths consistent across the files and with the service's own settings.
Grafana cannot run here either: the dashboard JSON is checked for structure, and every panel
query is parsed by Prometheus' own parser (promtool, from Debian's `prometheus` package, which
.ci/run installs). Running the queries against a Prometheus that scraped the real service is a
separate, end-to-end test.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from tests.support.paths import REPO

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extras: pip install -e '.[test]'")

ROOT = REPO
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COLLECTOR = ROOT / "deploy" / "otel-collector.yaml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
RULES = ROOT / "deploy" / "rules" / "openclaw.rules.yml"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
DATASOURCE = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDER = ROOT / "grafana" / "provisioning" / "dashboards" / "openclaw.yaml"
DASHBOARD = ROOT / "grafana" / "dashboards" / "openclaw-sessions.json"
STACK_DOC = ROOT / "README.md"  # the "Run the full stack" section

SERVICE = "openclaw-diagnostics"
COLLECTOR_SERVICE = "otel-collector"
DATA_DIR = "/var/lib/openclaw-diagnostics"

# The Prometheus series names of telemetry.md (OTLP -> Prometheus translation: counters
# `_total`, unit ms -> `_milliseconds`, unit 1 and `{...}` units no suffix), as the dashboard
# and rules may use them. The telemetry tests pin the service's real /metrics against the
# same translation; a name here that the service does not produce is a panel that stays empty.
COUNTERS = {
    "openclaw_session_stuck_total",
    "openclaw_session_state_total",
    "openclaw_session_recovery_requested_total",
    "openclaw_session_recovery_completed_total",
    "openclaw_session_turn_created_total",
    "openclaw_queue_lane_enqueue_total",
    "openclaw_queue_lane_dequeue_total",
    "openclaw_run_attempt_total",
    "openclaw_message_queued_total",
    "openclaw_model_failover_total",
    "openclaw_tool_execution_blocked_total",
    "openclaw_tokens_total",
    "openclaw_monitor_events_total",
    "openclaw_monitor_sessions_evicted_total",
    "openclaw_monitor_export_failures_total",
    "openclaw_monitor_forwarder_dropped_total",
    "openclaw_monitor_clock_clamped_total",
    "openclaw_monitor_telemetry_overflow_total",
    "openclaw_monitor_recovery_released_items_total",
    "openclaw_monitor_recovery_verifications_total",
}
HISTOGRAMS = {
    "openclaw_session_stuck_age_ms_milliseconds",
    "openclaw_session_recovery_age_ms_milliseconds",
    "openclaw_queue_wait_ms_milliseconds",
    "openclaw_queue_depth",
    "openclaw_run_duration_ms_milliseconds",
    "openclaw_model_call_duration_ms_milliseconds",
    "openclaw_tool_execution_duration_ms_milliseconds",
    "openclaw_monitor_scan_duration_ms_milliseconds",
    "openclaw_monitor_scan_lag_ms_milliseconds",
}
GAUGES = {
    "openclaw_monitor_sessions",
    "openclaw_monitor_gateways",
    "openclaw_monitor_gateway_clock_skew_ms_milliseconds",
    "openclaw_monitor_forwarder_queued",
    "openclaw_monitor_attention_oldest_age_ms_milliseconds",
}
KNOWN_SERIES = (
    COUNTERS
    | GAUGES
    | {f"{name}_{part}" for name in HISTOGRAMS for part in ("bucket", "sum", "count")}
)
# Produced by the service itself, not from a gateway's events: no openclaw_gateway label.
SERVICE_LEVEL_PREFIXES = (
    "openclaw_monitor_scan_",
    "openclaw_monitor_sessions_evicted",
    "openclaw_monitor_export_failures",
    "openclaw_monitor_telemetry_overflow",
)
GATEWAY_FILTER = 'openclaw_gateway=~"$gateway"'

# Grafana's variables, replaced the way Grafana would before a query reaches Prometheus.
GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$gateway": ".*",
    "$lane": ".*",
}


# ---------------------------------------------------------------------------- helpers


def load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with an empty environment (what `docker compose config` sees)."""
    return _INTERPOLATION.sub(lambda m: m.group("arg") if m.group("op") in (":-", "-") else "", value)


def compose() -> dict:
    return load_yaml(COMPOSE)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(host path relative to the repo, container path) for every bind mount."""
    mounts = []
    for volume in service.get("volumes") or []:
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(service: dict, container_path: str) -> Path | None:
    """The repo file a container path comes from through the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return (ROOT / source / wanted.relative_to(target_path)).resolve()
    return None


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for each published port."""
    out = []
    for item in service.get("ports") or []:
        parts = str(item).split(":")
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append(("", int(parts[0]), int(parts[1])))
        else:
            out.append(("", int(parts[0]), int(parts[0])))
    return out


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].strip("/"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _ignore_regex(line.lstrip("!").strip("/"))
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def files_under(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for item in sorted(path.rglob("*")):
        if item.is_file() and "__pycache__" not in item.parts:
            yield item


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels() -> list[dict]:
    out = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return out


def query_panels() -> list[dict]:
    return [panel for panel in panels() if panel["type"] != "row"]


def recording_rules() -> dict[str, str]:
    return {
        rule["record"]: rule["expr"]
        for group in load_yaml(RULES)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def alert_exprs() -> list[str]:
    return [rule["expr"] for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string literal outside braces
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)?\s*(?P<matchers>\{(?:[^}\"]|\"(?:[^\"\\]|\\.)*\")*\})"
    r"|(?P<bare>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)
_MATCHER = re.compile(r'(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"')


def selectors(expr: str) -> list[tuple[str, str, str]]:
    """(metric name or __name__ regex, op, matchers text) of every vector selector in a PromQL expr.

    op is "=" for a plain name, "=~" when the name is a __name__ regex. Only names that start with
    openclaw or are recording rules (contain ':') are returned, which is all the checks need.
    """
    out = []
    for match in _TOKEN.finditer(_GROUPING.sub(" ", expr)):
        if match.group("matchers") is not None:
            name, matchers = match.group("name"), match.group("matchers")
            op = "="
            if not name:
                by_name = {m.group("label"): m for m in _MATCHER.finditer(matchers)}
                if "__name__" not in by_name:
                    continue
                name, op = by_name["__name__"].group("value"), by_name["__name__"].group("op")
            out.append((name, op, matchers))
        elif match.group("bare") and not match.group("call"):
            out.append((match.group("bare"), "=", ""))
    return [(name, op, m) for name, op, m in out if name.startswith("openclaw") or ":" in name]


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool not installed (Debian's `prometheus` package; .ci/run installs it)")
    return path


# ---------------------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_from_python_311_slim():
    args = {
        name_value.split("=", 1)[0]: name_value.split("=", 1)[1]
        for instruction, name_value in dockerfile_instructions()
        if instruction == "ARG" and "=" in name_value
    }
    bases = [args_ for instruction, args_ in dockerfile_instructions() if instruction == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        image = base.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        assert image.startswith("python:3.11-slim"), f"base image {image!r} is not python:3.11-slim"


def test_dockerfile_runs_as_non_root_with_healthcheck_and_data_volume():
    stage = final_stage()
    names = [name for name, _ in stage]
    users = [args for name, args in stage if name == "USER"]
    assert users, "the runtime stage never switches away from root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"
    # Everything after the last USER runs as that user; nothing may switch back afterwards.
    assert names.index("USER") < names.index("CMD")

    healthchecks = [args for name, args in stage if name == "HEALTHCHECK"]
    assert healthchecks and "NONE" not in healthchecks[-1].upper()
    assert "/opt/openclaw/healthcheck.py" in healthchecks[-1]
    copies = [args for name, args in stage if name == "COPY"]
    assert any(args.split()[-1] == "/opt/openclaw/healthcheck.py" for args in copies), (
        "the HEALTHCHECK script is not copied into the image"
    )

    env = " ".join(args for name, args in stage if name == "ENV")
    assert f"OPENCLAW_DIAG_DATA_DIR={DATA_DIR}" in env
    volumes = " ".join(args for name, args in stage if name == "VOLUME")
    assert DATA_DIR in volumes, "the data directory is not a VOLUME"

    cmd = [args for name, args in stage if name == "CMD"][-1]
    assert cmd.startswith("["), "CMD must be exec form so the service gets SIGTERM and flushes"
    assert json.loads(cmd)[0] == "openclaw-diagnostics"


def test_dockerfile_exposes_the_service_port():
    from app.settings import Settings

    default_port = Settings.model_fields["port"].default
    stage = final_stage()
    exposed = {int(port.split("/")[0]) for name, args in stage if name == "EXPOSE" for port in args.split()}
    assert exposed == {default_port}
    env = " ".join(args for name, args in stage if name == "ENV")
    assert f"OPENCLAW_DIAG_PORT={default_port}" in env


def test_dockerfile_copies_exist_and_are_in_the_build_context():
    copies = [
        args.split()
        for name, args in dockerfile_instructions()
        if name == "COPY" and not args.startswith("--from")
    ]
    assert copies
    for parts in copies:
        sources = [part for part in parts[:-1] if not part.startswith("--")]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repo"
            for file in files_under(path):
                relative = file.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(relative), f".dockerignore drops {relative}, which COPY needs"


def test_dockerfile_copies_every_package_the_project_declares():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = sorted({name.split(".")[0] for name in project["tool"]["setuptools"]["packages"]["find"]["include"]})
    readme = project["project"]["readme"]
    copied = {
        part.rstrip("/")
        for name, args in dockerfile_instructions()
        if name == "COPY" and not args.startswith("--from")
        for part in args.split()[:-1]
    }
    missing = [item for item in [*packages, readme] if item not in copied]
    assert not missing, f"the image build would not see {missing} (pip wheel needs them)"


def test_dockerignore_keeps_repo_clutter_out_of_the_build_context():
    for relative in (".git/config", "tests/e2e/test_deploy_static.py", "data/journal.db", "app/__pycache__/x.pyc"):
        assert dockerignore_excludes(relative), f"{relative} would be sent to the docker daemon"
    assert not dockerignore_excludes("app/settings.py")


# ---------------------------------------------------------------------------- healthcheck script


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200
    required_auth: str | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/readyz":
            self.send_response(404)
        elif self.required_auth is not None and self.headers.get("Authorization") != self.required_auth:
            self.send_response(401)
        else:
            self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def readyz_server():
    servers = []

    def start(status: int = 200, required_auth: str | None = None) -> int:
        handler = type("Handler", (_Readyz,), {"status": status, "required_auth": required_auth})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_healthcheck(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OPENCLAW_DIAG_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env={**clean, **env}, capture_output=True, text=True, timeout=30
    )


def test_healthcheck_is_healthy_when_readyz_answers_200(readyz_server):
    port = readyz_server()
    assert run_healthcheck(OPENCLAW_DIAG_PORT=str(port)).returncode == 0
    # A wildcard bind (what compose sets) is probed on loopback.
    assert run_healthcheck(OPENCLAW_DIAG_PORT=str(port), OPENCLAW_DIAG_HOST="0.0.0.0").returncode == 0


def test_healthcheck_sends_the_first_ingest_token(readyz_server):
    port = readyz_server(required_auth="Bearer tok-1")
    tokens = "tok-1=gw-a, tok-2"
    assert run_healthcheck(OPENCLAW_DIAG_PORT=str(port), OPENCLAW_DIAG_INGEST_TOKENS=tokens).returncode == 0
    assert run_healthcheck(OPENCLAW_DIAG_PORT=str(port)).returncode == 1  # 401 without it


def test_healthcheck_is_unhealthy_on_error_status_or_nothing_listening(readyz_server):
    port = readyz_server(status=503)
    result = run_healthcheck(OPENCLAW_DIAG_PORT=str(port))
    assert result.returncode == 1
    assert "503" in result.stderr

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert run_healthcheck(OPENCLAW_DIAG_PORT=str(closed)).returncode == 1


# ---------------------------------------------------------------------------- compose


def test_compose_has_the_five_services_and_valid_top_level_keys():
    doc = compose()
    assert set(doc) <= {"name", "services", "volumes", "networks", "configs", "secrets", "x-defaults"}
    assert {SERVICE, COLLECTOR_SERVICE, "prometheus", "alertmanager", "grafana"} <= set(doc["services"])
    for name, service in doc["services"].items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"


def test_compose_needs_no_environment_to_render():
    # `docker compose config` fails on ${VAR:?...} when VAR is unset, and warns and substitutes
    # "" for a bare ${VAR}; every reference has a default instead, so the file renders as is.
    text = COMPOSE.read_text(encoding="utf-8")
    for match in _INTERPOLATION.finditer(text):
        assert match.group("op") in (":-", "-"), f"{match.group(0)} has no default"


def test_compose_images_are_pinned():
    for name, service in compose()["services"].items():
        image = service.get("image")
        assert image, f"{name}: no image tag (a built service still names its image and version)"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned"
    assert "latest" not in COMPOSE.read_text(encoding="utf-8")


def test_compose_every_service_has_a_healthcheck():
    for name, service in compose()["services"].items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test}"
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_compose_depends_on_waits_for_health_where_it_matters():
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must use the long form with a condition"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            assert condition in ("service_started", "service_healthy", "service_completed_successfully")
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}'s health, which has none"
    # The dashboard needs its datasource; the service starts after the collector it exports to.
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services[SERVICE]["depends_on"][COLLECTOR_SERVICE]["condition"] == "service_healthy"


def test_compose_every_mounted_file_exists():
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, service in doc["services"].items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} uses volume {source} not declared at the top level"


def test_compose_service_settings_and_ports_agree_with_the_service():
    from app.settings import Settings

    default_port = Settings.model_fields["port"].default
    service = compose()["services"][SERVICE]
    env = env_of(service)
    port = int(env["OPENCLAW_DIAG_PORT"])
    assert port == default_port
    # Listening on every interface only together with tokens (api.md).
    assert env["OPENCLAW_DIAG_HOST"] == "0.0.0.0"
    assert env["OPENCLAW_DIAG_INGEST_TOKENS"].strip(), "0.0.0.0 without ingest tokens"
    assert [container for _, _, container in published(service)] == [port]
    assert env["OPENCLAW_DIAG_DATA_DIR"] == DATA_DIR
    volume_targets = [v.split(":")[1] for v in service["volumes"] if not v.startswith((".", "/"))]
    assert volume_targets == [DATA_DIR], "the data directory must be a named volume"


def test_compose_gives_the_service_time_to_flush_on_stop():
    # Docker sends SIGKILL 10 s after SIGTERM by default; the service flushes OTLP on shutdown.
    grace = compose()["services"][SERVICE].get("stop_grace_period", "10s")
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) >= 30, grace


def test_compose_publishes_ports_on_loopback_only():
    for name, service in compose()["services"].items():
        for host_ip, _, _ in published(service):
            assert host_ip == "127.0.0.1", f"{name} publishes a port on every host interface"


def test_compose_service_exports_otlp_http_to_the_collector():
    doc = compose()
    env = env_of(doc["services"][SERVICE])
    endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf"
    assert endpoint.startswith(f"http://{COLLECTOR_SERVICE}:")
    protocols = load_yaml(COLLECTOR)["receivers"]["otlp"]["protocols"]
    assert port_of(endpoint) == port_of(protocols["http"]["endpoint"]) == 4318
    assert port_of(protocols["grpc"]["endpoint"]) == 4317
    # The commented gRPC alternative names the gRPC port.
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT: http://{COLLECTOR_SERVICE}:4317" in COMPOSE.read_text(encoding="utf-8")
    assert env["OTEL_SERVICE_NAME"] == SERVICE


def test_compose_collector_runs_the_mounted_config():
    collector = compose()["services"][COLLECTOR_SERVICE]
    config_args = [arg for arg in collector["command"] if arg.startswith("--config=")]
    assert len(config_args) == 1
    config_path = config_args[0].split("=", 1)[1]
    assert host_path(collector, config_path) == COLLECTOR.resolve()
    assert f"--config={config_path}" in collector["healthcheck"]["test"]


def test_compose_prometheus_loads_the_config_and_the_rules():
    prometheus = compose()["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    config_path = flags["--config.file"]
    assert host_path(prometheus, config_path) == PROMETHEUS.resolve()
    # rule_files resolve against the config file's directory inside the container.
    patterns = load_yaml(PROMETHEUS)["rule_files"]
    matched = []
    for pattern in patterns:
        container_glob = PurePosixPath(config_path).parent / pattern
        host_dir = host_path(prometheus, str(container_glob.parent))
        assert host_dir is not None, f"{container_glob.parent} is not mounted"
        matched += sorted(host_dir.glob(container_glob.name))
    assert matched == [RULES.resolve()], f"rule_files load {matched}"


def test_compose_grafana_is_provisioned_with_anonymous_viewers():
    grafana = compose()["services"]["grafana"]
    env = env_of(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert host_path(grafana, "/etc/grafana/provisioning/datasources/prometheus.yaml") == DATASOURCE.resolve()
    assert host_path(grafana, "/etc/grafana/provisioning/dashboards/openclaw.yaml") == PROVIDER.resolve()
    provider = load_yaml(PROVIDER)["providers"][0]
    dashboards_dir = host_path(grafana, provider["options"]["path"])
    assert dashboards_dir is not None and DASHBOARD.resolve() in dashboards_dir.glob("*.json")
    assert host_path(grafana, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]) == DASHBOARD.resolve()


def test_grafana_datasource_points_at_the_compose_prometheus():
    datasource = load_yaml(DATASOURCE)["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    prometheus = compose()["services"]["prometheus"]
    assert [container for _, _, container in published(prometheus)] == [9090]
    # $__rate_interval assumes Grafana knows the scrape interval.
    assert datasource["jsonData"]["timeInterval"] == load_yaml(PROMETHEUS)["global"]["scrape_interval"]
    # The dashboard's datasource variable defaults to this uid.
    ds_var = next(v for v in dashboard()["templating"]["list"] if v["type"] == "datasource")
    assert ds_var["current"]["value"] == datasource["uid"]


# ---------------------------------------------------------------------------- collector + prometheus


def collector_ids(config: dict, kind: str) -> set[str]:
    return set(config.get(kind) or {})


def test_collector_pipelines_use_defined_components():
    config = load_yaml(COLLECTOR)
    pipelines = config["service"]["pipelines"]
    assert {"metrics", "logs", "traces"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in collector_ids(config, kind), f"pipeline {name}: {component} is not defined"
        assert pipeline["receivers"] == ["otlp"]
        # memory_limiter first (it must refuse data before the rest buffers it), batch after it.
        assert pipeline["processors"][0] == "memory_limiter" and "batch" in pipeline["processors"]
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    for extension in config["service"]["extensions"]:
        assert extension in collector_ids(config, "extensions")


def test_collector_listens_on_all_interfaces_of_its_container():
    # Since 0.104 the collector binds localhost by default, unreachable from other containers.
    config = load_yaml(COLLECTOR)
    endpoints = [
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["exporters"]["prometheus"]["endpoint"],
        config["service"]["telemetry"]["metrics"]["address"],
        config["extensions"]["health_check"]["endpoint"],
    ]
    for endpoint in endpoints:
        assert endpoint.startswith("0.0.0.0:"), endpoint
    exposed = {int(port) for port in compose()["services"][COLLECTOR_SERVICE]["expose"]}
    assert {port_of(endpoint) for endpoint in endpoints} == exposed


def test_prometheus_scrapes_the_collector_exporter_and_its_self_metrics():
    config = load_yaml(COLLECTOR)
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    exporter = jobs["otel-collector"]
    assert exporter["static_configs"][0]["targets"] == [
        f"{COLLECTOR_SERVICE}:{port_of(config['exporters']['prometheus']['endpoint'])}"
    ]
    assert exporter.get("honor_labels") is True
    self_job = jobs["otel-collector-self"]
    assert self_job["static_configs"][0]["targets"] == [
        f"{COLLECTOR_SERVICE}:{port_of(config['service']['telemetry']['metrics']['address'])}"
    ]


def test_prometheus_never_scrapes_the_service_and_the_collector_at_once():
    from app.settings import Settings

    jobs = load_yaml(PROMETHEUS)["scrape_configs"]
    targets = [target for job in jobs for sc in job.get("static_configs", []) for target in sc["targets"]]
    assert not [target for target in targets if target.startswith(f"{SERVICE}:")], (
        "an active job scrapes the service directly while the collector job is on: every sum() doubles"
    )
    # The documented alternative is there, commented, and is a valid job for the service's port.
    lines = PROMETHEUS.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"# - job_name: {SERVICE}")
    block = []
    for line in lines[start:]:
        if not line.strip().startswith("#"):
            break
        block.append(line.strip()[2:])
    job = yaml.safe_load("\n".join(block))[0]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{SERVICE}:{Settings.model_fields['port'].default}"]


def test_promtool_accepts_the_prometheus_config():
    result = subprocess.run(
        [promtool(), "check", "config", str(PROMETHEUS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------- dashboard


def test_dashboard_identity_and_variables():
    board = dashboard()
    assert board["uid"] == "openclaw-sessions"
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    gateway = variables["gateway"]
    assert gateway["multi"] is True and gateway["includeAll"] is True
    # ".*" also matches series without the label (OPENCLAW_DIAG_GATEWAY_ATTRIBUTE=false).
    assert gateway["allValue"] == ".*"
    assert re.fullmatch(r"label_values\((openclaw_\w+), openclaw_gateway\)", gateway["definition"])

    lane = variables["lane"]
    assert lane["includeAll"] is True and lane["allValue"] == ".*"
    assert lane["definition"].endswith(", openclaw_lane)") and GATEWAY_FILTER in lane["definition"]
    for variable in (gateway, lane):
        assert variable["datasource"]["uid"] == "${datasource}"


def test_dashboard_every_panel_is_described_and_queries_something():
    seen_ids = set()
    for panel in query_panels():
        title = panel.get("title", "")
        assert title, f"panel {panel['id']} has no title"
        assert panel["id"] not in seen_ids, f"duplicate panel id {panel['id']}"
        seen_ids.add(panel["id"])
        assert len(panel.get("description", "").strip()) >= 20, f"{title}: no description"
        assert panel["datasource"]["uid"] == "${datasource}", f"{title}: fixed datasource"
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{title}: empty expr"
            assert target["datasource"]["uid"] == "${datasource}", f"{title}: fixed datasource in a target"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{title}: duplicate refIds"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit"), f"{title}: no unit"
        steps = defaults["thresholds"]["steps"]
        assert steps and steps[0]["value"] is None, f"{title}: thresholds need a base step"


def test_dashboard_units_match_what_the_queries_return():
    for panel in query_panels():
        exprs = " ".join(target["expr"] for target in panel["targets"])
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if "histogram_quantile" in exprs and "_milliseconds_bucket" in exprs:
            assert unit == "ms", f"{panel['title']}: a millisecond quantile shown as {unit}"
        if re.search(r"\)\s*\*\s*60\s*$", exprs.strip()) and "_total" in exprs:
            assert unit in ("cpm", "short"), f"{panel['title']}: per-minute rate shown as {unit}"


def test_dashboard_stat_panels_have_alerting_thresholds():
    # The attention stats color on the very thresholds the alerts use (> 0).
    by_title = {panel["title"]: panel for panel in query_panels()}
    for title in ("Stuck sessions", "Stalled sessions", "Gateways silent"):
        steps = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["value"] for step in steps] == [None, 1], title
        assert steps[0]["color"] == "green" and steps[1]["color"] in ("red", "orange")


def test_dashboard_layout_fits_the_grid_without_overlaps():
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]


def test_dashboard_has_the_rows_deploy_md_lists():
    rows = [panel["title"] for panel in panels() if panel["type"] == "row"]
    assert rows == [
        "Attention now",
        "Sessions under attention by reason",
        "Stuck reports",
        "Recovery",
        "Session state transitions and turns",
        "Queue",
        "Model and tool activity",
        "Gateways",
        "Service health",
    ]
    exprs = " ".join(target["expr"] for panel in query_panels() for target in panel["targets"])
    # The things deploy.md names, each fed to at least one panel.
    for needle in (
        'openclaw_attention="stuck"',
        'openclaw_attention="stalled"',
        'openclaw_attention="long_running"',
        "openclaw_reason",
        "gateway_state:openclaw_session_stuck:rate5m",
        "openclaw_session_stuck_age_ms_milliseconds_bucket",
        "openclaw_session_recovery_requested_total",
        "openclaw_session_recovery_completed_total",
        "openclaw_monitor_recovery_released_items_total",
        "openclaw_session_state_total",
        "openclaw_queue_wait_ms_milliseconds_bucket",
        "openclaw_queue_depth",
        "openclaw_model_call_duration_ms_milliseconds",
        "openclaw_tool_execution_duration_ms_milliseconds",
        "openclaw_session_turn_created_total",
        'openclaw_status="silent"',
        "openclaw_monitor_gateway_clock_skew_ms_milliseconds",
        "openclaw_monitor_events_total",
        'openclaw_outcome="rejected"',
        "openclaw_monitor_scan_duration_ms_milliseconds_bucket",
        "openclaw_monitor_scan_lag_ms_milliseconds_bucket",
        "openclaw_monitor_export_failures",
    ):
        assert needle in exprs, f"no panel shows {needle}"


def test_stack_doc_describes_every_dashboard_row():
    text = STACK_DOC.read_text(encoding="utf-8")
    assert "## Run the full stack" in text
    assert "docker compose up" in text
    for row in (panel["title"] for panel in panels() if panel["type"] == "row"):
        assert row in text, f"the README does not describe the row {row!r}"
    for url in ("http://localhost:3000", "http://localhost:9090", "http://localhost:8080"):
        assert url in text


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in query_panels() for target in panel["targets"]]


def test_dashboard_queries_use_known_series_and_recording_rules():
    recorded = recording_rules()
    for title, expr in dashboard_exprs():
        found = selectors(expr)
        # The one panel allowed to read no openclaw series: Prometheus' own ALERTS for our rules.
        assert found or expr.startswith('ALERTS{alertstate="firing", alertname=~"OpenClaw.*"'), (
            f"{title}: no openclaw series in {expr}"
        )
        for name, op, _ in found:
            if op == "=~":
                assert any(re.fullmatch(name, known) for known in KNOWN_SERIES), f"{title}: {name} matches nothing"
            elif ":" in name:
                assert name in recorded, f"{title}: recording rule {name} is not defined in {RULES.name}"
            else:
                assert name in KNOWN_SERIES, f"{title}: unknown series {name}"


def test_dashboard_filters_every_gateway_series_by_the_gateway_variable():
    for title, expr in dashboard_exprs():
        for name, _, matchers in selectors(expr):
            plain = name.replace("(?:_ratio)?", "")
            service_level = plain.startswith(SERVICE_LEVEL_PREFIXES) or (":" in plain and "gateway" not in plain.split(":")[0])
            if service_level:
                assert GATEWAY_FILTER not in matchers, f"{title}: {name} has no openclaw_gateway label"
            else:
                assert GATEWAY_FILTER in matchers, f"{title}: {name} ignores the gateway variable"


def test_dashboard_queries_on_lane_metrics_use_the_lane_variable():
    for title, expr in dashboard_exprs():
        for name, _, matchers in selectors(expr):
            if name.startswith(("openclaw_queue_lane_", "openclaw_queue_wait_")):
                assert 'openclaw_lane=~"$lane"' in matchers, f"{title}: {name} ignores the lane variable"


def test_recording_rules_are_shared_by_a_panel_and_an_alert():
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    alerts = " ".join(alert_exprs())
    for name in recording_rules():
        assert name in exprs, f"recording rule {name} feeds no panel"
        assert name in alerts, f"recording rule {name} feeds no alert"


def test_rules_use_known_series():
    recorded = recording_rules()
    for expr in [*recorded.values(), *alert_exprs()]:
        for name, _, _ in selectors(expr):
            assert name in KNOWN_SERIES or name in recorded, f"{RULES.name}: unknown series {name} in {expr}"


def substitute_grafana_variables(expr: str) -> str:
    for variable in sorted(GRAFANA_SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_SUBSTITUTIONS[variable])
    return expr


def test_every_dashboard_query_parses_as_promql(tmp_path):
    # promtool check rules parses each rule's expr with Prometheus' own PromQL parser, so every
    # panel query goes in as a recording rule.
    tool = promtool()
    rules = []
    for index, (title, expr) in enumerate(dashboard_exprs()):
        concrete = substitute_grafana_variables(expr)
        assert "$" not in concrete, f"{title}: unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{index}:check", "expr": concrete})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        index = {f"dashboard:query_{i}:check": f"{t}: {e}" for i, (t, e) in enumerate(dashboard_exprs())}
        details = result.stdout + result.stderr
        named = [text for record, text in index.items() if record in details]
        pytest.fail(f"promtool rejects dashboard queries:\n{details}\n" + "\n".join(named))
    assert f"{len(rules)} rules found" in result.stdout


def test_alerts_go_to_alertmanager_rendered_with_the_operators_webhook():
    """Prometheus sends to the stack's Alertmanager; Alertmanager runs the shipped file through
    the entrypoint that puts OPENCLAW_ALERT_WEBHOOK_URL in (tests/e2e/test_alert_delivery.py runs
    it for real); the page links come from OPENCLAW_DIAG_PUBLIC_URL via an external label."""
    prometheus = load_yaml(PROMETHEUS)
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert prometheus["global"]["external_labels"] == {"openclaw_public_url": "${OPENCLAW_DIAG_PUBLIC_URL}"}
    services = compose()["services"]
    assert "--enable-feature=expand-external-labels" in services["prometheus"]["command"]
    assert "OPENCLAW_DIAG_PUBLIC_URL" in services["prometheus"]["environment"]
    assert services["prometheus"]["depends_on"]["alertmanager"] == {"condition": "service_healthy"}
    manager = services["alertmanager"]
    assert manager["entrypoint"] == ["/bin/sh", "/etc/alertmanager/entrypoint.sh"]
    assert "OPENCLAW_ALERT_WEBHOOK_URL" in manager["environment"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in manager["volumes"]}
    assert mounts["./deploy/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"
    assert mounts["./deploy/alertmanager-entrypoint.sh"] == "/etc/alertmanager/entrypoint.sh"
    shipped = load_yaml(ROOT / "deploy" / "alertmanager.yml")
    assert shipped["route"]["group_by"] == ["alertname", "openclaw_gateway"]
    silent = next(rule for rule in shipped["inhibit_rules"]
                  if rule["source_matchers"] == ['alertname="OpenClawGatewaySilent"'])
    assert silent["equal"] == ["openclaw_gateway"]
