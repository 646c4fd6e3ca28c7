"""The container files, checked without a Docker engine: the compose file against the Compose
Specification's schema and our own rules (ports match the CLI defaults, restart policies, nothing installed
at start, liveness health checks), the Dockerfile's shape, the Prometheus config loaded by promtool, and the
Grafana provisioning files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from payment_events.config import Settings
from tests.prometheus_live import promtool_or_fail

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _check_jsonschema() -> str:
    path = Path(sys.executable).with_name("check-jsonschema")
    found = str(path) if path.exists() else shutil.which("check-jsonschema")
    assert found is not None, "check-jsonschema is a dev dependency (pyproject [dev])"
    return found


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    """docker-compose.yml validates against the Compose Specification schema, and the validator does
    reject a broken file (so the check can fail)."""
    ok = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restart_policy: always", 1))
    bad = subprocess.run(
        [_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode != 0


def test_compose_publishes_the_cli_defaults() -> None:
    """Kafka is published on the CLI's default bootstrap port, the relay on the default metrics port, and
    PostgreSQL on 5432, all on 127.0.0.1 only."""
    services = _compose()["services"]
    defaults = Settings()
    kafka_port = defaults.kafka_bootstrap_servers.rsplit(":", 1)[1]
    assert f"127.0.0.1:{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"127.0.0.1:{kafka_port}" in advertised
    assert f"127.0.0.1:{defaults.metrics_port}:{defaults.metrics_port}" in services["relay"]["ports"]
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_compose_services_restart_and_install_nothing_at_start() -> None:
    """Long-running services restart unless stopped, the one-shot migration does not, and no service
    installs packages when it starts (the relay runs the built image)."""
    services = _compose()["services"]
    for name, service in services.items():
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == expected, name
    text = COMPOSE.read_text()
    assert "pip install" not in text
    assert services["relay"]["image"] == services["migrate"]["image"]
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["relay"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_health_checks_use_liveness_not_readiness() -> None:
    """The relay's compose and image health checks probe /healthz, never /readyz."""
    relay_check = " ".join(_compose()["services"]["relay"]["healthcheck"]["test"])
    assert "/healthz" in relay_check
    assert "/readyz" not in relay_check
    healthcheck = [line for line in DOCKERFILE.read_text().splitlines() if "urlopen" in line]
    assert healthcheck
    assert all("/healthz" in line and "/readyz" not in line for line in healthcheck)


def test_dockerfile_is_multi_stage_non_root_and_pinned() -> None:
    """The Dockerfile builds in one stage and runs in another, installs with constraints.txt, and runs as
    a numeric non-root user with a HEALTHCHECK."""
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+\S+", text, flags=re.MULTILINE)
    assert len(stages) >= 2
    assert "pip install -c constraints.txt ." in text
    assert "COPY --from=build" in text
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert user
    assert user[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r"^HEALTHCHECK", text, flags=re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text()
    assert ".venv/" in ignored


def test_prometheus_config_loads_with_the_rules() -> None:
    """`promtool check config` accepts deploy/prometheus/prometheus.yml and finds the alert rules, and the
    compose file mounts both beside each other."""
    promtool = promtool_or_fail()
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr
    volumes = _compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    jobs = [job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]]
    assert all(job.startswith("payment-events") for job in jobs)


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    """The datasource provisioning names the compose Prometheus; the dashboard provider's path is where
    compose mounts deploy/grafana/payment-events.json."""
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "payment-events.yml").read_text())
    [provider] = providers["providers"]
    path = provider["options"]["path"]
    volumes = _compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/payment-events.json:{path}/payment-events.json:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
