"""A real Prometheus (Debian's `prometheus` package) on a free port, with a temporary configuration that
scrapes given relays every second and evaluates the shipped rules (deploy/prometheus/alerts.yml).

Used by tests/integration/ops/test_alerts_live.py (a short check in `make test`) and by the full scripted
fault scenario `deploy/check-alerts` (tests/check_alerts.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def promtool_or_fail() -> str:
    """The promtool binary (Debian's `prometheus` package, installed by `scripts/services up`); under CI
    its absence fails the test instead of skipping it."""
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is missing: install Debian's `prometheus` package (`scripts/services up` does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def prometheus_binary() -> str | None:
    """The prometheus server binary, or None when the package is not installed."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )


class PrometheusServer:
    """Prometheus scraping ``jobs`` (job name -> ``host:port`` targets) every ``interval`` and evaluating
    the shipped alert rules as they are (no copy, no shortened ``for:``)."""

    def __init__(self, workdir: Path, jobs: Mapping[str, Sequence[str]], interval: str = "1s") -> None:
        binary = prometheus_binary()
        assert binary is not None, "the prometheus binary is missing (Debian package `prometheus`)"
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        scrape = [
            {"job_name": job, "scrape_interval": interval, "static_configs": [{"targets": list(targets)}]}
            for job, targets in jobs.items()
        ]
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(RULES)],
            "scrape_configs": scrape,
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    def start(self) -> PrometheusServer:
        """Start the server and wait until it is ready."""
        check = subprocess.run(
            [str(Path(self.binary).with_name("promtool")), "check", "config", str(self.config)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 60, f"Prometheus on {self.base}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"prometheus exited:\n{self.log_path.read_text()}"
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as response:  # noqa: S310
                return int(response.status) == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (fails on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.base}/api/v1/{path}?{query}", timeout=10) as response:  # noqa: S310
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def alert(self, name: str, state: str = "firing", **labels: str) -> dict[str, Any] | None:
        """The first alert called ``name`` in ``state`` whose labels include ``labels``."""
        for alert in self.alerts():
            if alert["labels"].get("alertname") != name or alert["state"] != state:
                continue
            if all(alert["labels"].get(k) == v for k, v in labels.items()):
                return alert
        return None

    def wait_alert(self, name: str, timeout: float, state: str = "firing", **labels: str) -> float:
        """Wait until the alert is in ``state``; return the seconds it took."""
        started = time.monotonic()
        wait_for(lambda: self.alert(name, state, **labels) is not None, timeout, f"{name} {state} {labels}")
        return time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None
