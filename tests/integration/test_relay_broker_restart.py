"""The broker goes away for a while and comes back: nothing is lost, rows are published after the restart.

Stopping the shared broker would disturb every other test running at the same time, so this test starts
its own throwaway single-node KRaft broker (the same jars and settings as ``scripts/services``, other
ports, its own data directory under a temporary folder) and stops and restarts that one.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from payment_events.kafka_admin import ensure_topics
from payment_events.observer import NullObserver
from payment_events.relay.runner import build_relay
from tests.conftest import ROOT, kcat_read
from tests.integration.relay_support import (
    RelayThread,
    check_order,
    migrated_engine,
    payment_event,
    relay_config,
    state_counts,
    wait_for,
    write,
)

LIB = ROOT / "infra" / "kafka" / "lib"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayBroker:
    """A single-node KRaft broker in ``workdir`` that a test may stop and start at will."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.controller_port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        (workdir / "logs").mkdir(parents=True)
        base = (ROOT / "infra" / "kafka" / "server.properties").read_text()
        lines = [
            line
            for line in base.splitlines()
            if not line.startswith(
                ("listeners=", "advertised.listeners=", "controller.quorum.bootstrap.servers=")
            )
        ]
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        lines += [
            f"listeners={listeners}",
            f"advertised.listeners={listeners}",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"log.dirs={workdir / 'data'}",
        ]
        self.config = workdir / "server.properties"
        self.config.write_text("\n".join(lines) + "\n")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        subprocess.run(
            [
                *self._java("kafka.tools.StorageTool"),
                "format", "--standalone", f"--cluster-id={cluster_id}", "-c", str(self.config),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _java(self, main: str, heap: Sequence[str] = ()) -> list[str]:
        java = shutil.which("java")
        assert java is not None, "java is needed for the throwaway broker"
        return [
            java, *heap, f"-Dlog4j2.configurationFile={ROOT / 'infra' / 'kafka' / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}", "-cp", f"{LIB}/*", main,
        ]

    def start(self) -> None:
        """Start the broker and wait until it answers a metadata request."""
        assert self.process is None
        self.process = subprocess.Popen(
            [*self._java("kafka.Kafka", ("-Xms128m", "-Xmx384m", "-XX:+UseSerialGC")), str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 90, f"the throwaway broker on {self.bootstrap}")

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
        """Stop the broker (SIGTERM, then SIGKILL if it lingers) and wait for it to exit."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        self.process = None


@pytest.fixture
def throwaway_broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[ThrowawayBroker]:
    """A private broker for this test only (``kafka_bootstrap`` makes the test skip/fail like the others
    when the services, and so the jars and kcat, are not set up)."""
    if not (LIB.is_dir() and any(LIB.glob("kafka_2.13-*.jar"))):
        pytest.fail("the Kafka jars are missing: run `scripts/services up` first")
    broker = ThrowawayBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class OutageObserver(NullObserver):
    """Notes whether the relay saw the broker as unreachable."""

    def __init__(self) -> None:
        self.unreachable_seen = False

    def broker_reachable(self, reachable: bool) -> None:
        if not reachable:
            self.unreachable_seen = True


def test_broker_stopped_and_restarted_loses_nothing(pg_url: str, throwaway_broker: ThrowawayBroker) -> None:
    """Events committed while the broker is down stay pending (none dead, no budget spent) and are all
    published, in per-key order, once it is back."""
    (status,) = ensure_topics(
        {"bootstrap.servers": throwaway_broker.bootstrap}, ["payment.events.restart"], partitions=3
    )
    assert status.created
    topic = status.name
    engine = migrated_engine(pg_url)
    expected: dict[str, list[str]] = {}

    def commit(start: int, count: int) -> None:
        events = [payment_event(f"pay-{n % 20:02d}", n) for n in range(start, start + count)]
        for event, event_id in zip(events, write(engine, topic, events), strict=True):
            expected.setdefault(event.payment_id, []).append(event_id)

    observer = OutageObserver()
    config = relay_config(
        producer_overrides={"reconnect.backoff.max.ms": 500},
        delivery_timeout_seconds=3.0,
        max_attempts=3,  # small on purpose: an outage must not spend it
    )
    relay = RelayThread(build_relay(pg_url, throwaway_broker.bootstrap, config, observer=observer))
    try:
        commit(0, 300)
        wait_for(lambda: state_counts(engine) == {"published": 300}, 60, "the first events")
        throwaway_broker.stop()
        commit(300, 300)
        wait_for(lambda: observer.unreachable_seen, 60, "the relay to notice the outage")
        assert state_counts(engine) == {"published": 300, "pending": 300}
        throwaway_broker.start()
        wait_for(lambda: state_counts(engine) == {"published": 600}, 120, "publishing after the restart")
    finally:
        relay.stop()
        engine.dispose()
    messages = kcat_read(throwaway_broker.bootstrap, topic)
    report = check_order(messages, expected)
    print(f"broker restart: 600 events, {len(messages)} messages, {report.duplicates} duplicates")
    assert report.missing == []
    assert report.order_violations == []
    assert os.environ.get("PAYMENT_EVENTS_TEST_KAFKA", "") != throwaway_broker.bootstrap
