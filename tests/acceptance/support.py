"""Helpers for the acceptance tests: the CLI as a subprocess, a relay process with its HTTP endpoints, a
webhook receiver, and a throwaway Kafka broker the tests may stop and start (never the shared one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.brokers import free_port, wait_for


def cli_env(**settings: str) -> dict[str, str]:
    """The parent environment without any PAYMENT_EVENTS_* variable, plus ``settings`` (upper-cased
    names become PAYMENT_EVENTS_<NAME>)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYMENT_EVENTS_")}
    env.update({f"PAYMENT_EVENTS_{name.upper()}": value for name, value in settings.items()})
    env["PAYMENT_EVENTS_LOG_FORMAT"] = env.get("PAYMENT_EVENTS_LOG_FORMAT", "json")
    return env


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m payment_events ARGS`` as a user would and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "payment_events", *args],
        env=dict(env) if env is not None else cli_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``: (status, body); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 -- local test URLs
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, body




class RelayProcess:
    """``payment-events relay`` as a subprocess with its metrics port; stop() sends SIGTERM."""

    def __init__(self, env: Mapping[str, str], cwd: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.log_path = cwd / f"relay-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "payment_events", "relay", "--metrics-port", str(self.port), *extra_args],
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        """GET a path of the relay's HTTP server."""
        return http_get(self.base + path)

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET a path and parse its JSON body."""
        status, body = self.get(path)
        parsed: dict[str, Any] = json.loads(body)
        return status, parsed

    def wait_serving(self, timeout: float = 60) -> None:
        """Wait until /healthz answers (the relay started its HTTP server)."""

        def serving() -> bool:
            assert self.process.poll() is None, f"relay exited early:\n{self.output()}"
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_for(serving, timeout, "the relay's /healthz")

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The sum of the /metrics samples called ``name`` whose labels include ``labels`` (None when there
        is none): counters exist at 0 for every known event type, so one topic has several series."""
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        values = [
            float(sample.value)
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items())
        ]
        return sum(values) if values else None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL if still running (cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._log.close()

    def output(self) -> str:
        """Everything the relay logged so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class WebhookReceiver:
    """A local HTTP server that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def received(self) -> list[dict[str, Any]]:
        """A copy of the bodies received so far."""
        with self._lock:
            return list(self.bodies)

    def close(self) -> None:
        """Stop the server."""
        self._server.shutdown()
        self._server.server_close()


