"""A private single-node KRaft broker for tests that must stop and restart a broker.

Same jars and settings as ``scripts/services``, other ports, a temporary data directory: stopping it never
disturbs the shared broker that the other tests use.
"""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "infra" / "kafka" / "lib"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll ``condition`` until it is true; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class ThrowawayBroker:
    """A single-node KRaft broker of our own (same jars and settings as scripts/services, other ports and
    a temporary data directory), so a test can stop and restart it without touching the shared one."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        controller = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        base = (ROOT / "infra" / "kafka" / "server.properties").read_text()
        skip = ("listeners=", "advertised.listeners=", "controller.quorum.bootstrap.servers=")
        lines = [line for line in base.splitlines() if not line.startswith(skip)]
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}"
        lines += [
            f"listeners={listeners}",
            f"advertised.listeners={listeners}",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
            f"log.dirs={workdir / 'data'}",
        ]
        self.config = workdir / "server.properties"
        self.config.write_text("\n".join(lines) + "\n")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            [*self._java("kafka.tools.StorageTool"), "format", "--standalone", f"--cluster-id={cluster_id}",
             "-c", str(self.config)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _java(self, main: str, *jvm: str) -> list[str]:
        java = shutil.which("java")
        assert java is not None, "java is needed for the throwaway broker"
        return [
            java, *jvm, f"-Dlog4j2.configurationFile={ROOT / 'infra' / 'kafka' / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}", "-cp", f"{LIB}/*", main,
        ]

    def start(self) -> None:
        """Start the broker and wait until it answers a metadata request."""
        assert self.process is None
        self.process = subprocess.Popen(
            [*self._java("kafka.Kafka", "-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"), str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 120, f"the throwaway broker on {self.bootstrap}", interval=0.5)

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, "the throwaway broker exited"
        kcat = shutil.which("kcat")
        assert kcat is not None
        probe = subprocess.run(
            [kcat, "-L", "-b", self.bootstrap, "-m", "2"], capture_output=True, check=False
        )
        return probe.returncode == 0 and b"1 brokers" in probe.stdout

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers) and wait for the exit."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        self.process = None


class SecureBroker(ThrowawayBroker):
    """A private broker with an SSL listener and a SASL_SSL (SCRAM-SHA-512) listener, its CA and broker
    certificate (SAN localhost, 127.0.0.1) made by openssl at start-up and a SCRAM user created when its
    storage is formatted, all by ``scripts/services secure-config`` (the same config `scripts/services
    up --secure` runs). Reading ``ca``, ``username`` and ``password`` gives what a client needs."""

    username = "payment-events"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ssl_port, self.sasl_port, plain_port, controller = (free_port() for _ in range(4))
        self.port = plain_port
        self.bootstrap = f"127.0.0.1:{plain_port}"
        self.ssl_bootstrap = f"127.0.0.1:{self.ssl_port}"
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.process = None
        services = ROOT / "scripts" / "services"
        subprocess.run(
            [str(services), "secure-config", str(workdir), str(self.ssl_port), str(self.sasl_port),
             str(plain_port), str(controller)],
            check=True, capture_output=True, timeout=120,
        )
        self.config = workdir / "server.properties"
        self.ca = workdir / "ca.pem"
        self.password = (workdir / "scram.password").read_text().strip()
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            [*self._java("kafka.tools.StorageTool"), "format", "--standalone", f"--cluster-id={cluster_id}",
             "-c", str(self.config), "--add-scram",
             f"SCRAM-SHA-512=[name={self.username},password={self.password}]"],
            check=True, capture_output=True, timeout=120,
        )

    def _answers(self) -> bool:
        """The TLS listener answers a metadata request with a certificate the CA verifies."""
        assert self.process is not None
        assert self.process.poll() is None, "the secure broker exited"
        kcat = shutil.which("kcat")
        assert kcat is not None
        probe = subprocess.run(
            [kcat, "-L", "-b", self.ssl_bootstrap, "-X", "security.protocol=ssl",
             "-X", f"ssl.ca.location={self.ca}", "-m", "2"],
            capture_output=True, check=False,
        )
        return probe.returncode == 0 and b"1 brokers" in probe.stdout
