"""The servers the chaos scenarios stand on and break: fresh databases and topics, a throw-away Kafka
broker (so the shared one on 19092 is never killed), the 3-node KRaft cluster, PostgreSQL faults."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get(
    "PAYMENT_EVENTS_TEST_DATABASE_URL",
    "postgresql+psycopg://payment_events:payment_events@127.0.0.1:5432/payment_events",
)
SHARED_KAFKA = os.environ.get("PAYMENT_EVENTS_TEST_KAFKA", "127.0.0.1:19092")
CLUSTER_KAFKA = "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"
CLUSTER_PORTS = {1: 29092, 2: 29093, 3: 29094}
KAFKA_LIB = ROOT / "infra" / "kafka" / "lib"
RELAY_APP = "chaos-relay"
"""``application_name`` of the relay processes' PostgreSQL sessions (so faults can target them)."""


def free_port() -> int:
    """A TCP port that was free a moment ago (so parallel suites never fight over fixed ports)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------- PostgreSQL
@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database for one scenario (dropped afterwards); yields its URL."""
    name = f"pe_chaos_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        from payment_events.outbox.migrate import upgrade

        upgrade(url)
        yield url
    finally:
        for _ in range(30):  # the server may be restarting (PostgreSQL fault scenarios)
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except sa.exc.OperationalError:
                time.sleep(1)
        admin.dispose()


def relay_url(database_url: str) -> str:
    """The database URL a relay process uses: tagged so its sessions can be found and terminated."""
    sep = "&" if "?" in database_url else "?"
    return f"{database_url}{sep}application_name={RELAY_APP}"


def terminate_relay_backends(database_url: str) -> int:
    """``pg_terminate_backend`` on every session of the relays in this database; return how many."""
    db = database_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND application_name = :app AND pid <> pg_backend_pid()"
                    ),
                    {"db": db, "app": RELAY_APP},
                ).all()
            )
    finally:
        admin.dispose()


def restart_postgres_immediate() -> float:
    """``pg_ctlcluster <ver> main restart -m immediate`` (crash-like: no checkpoint, every session cut).
    Returns the seconds until the server accepted connections again. Disturbs every user of the server."""
    version = sorted(os.listdir("/usr/lib/postgresql"), key=int)[-1]
    started = time.monotonic()
    cmd = ["pg_ctlcluster", version, "main", "restart", "-m", "immediate"]
    if os.geteuid() != 0:
        cmd = ["sudo", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    engine = sa.create_engine(PG_ADMIN_URL)
    try:
        while time.monotonic() - started < 120:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("select 1"))
                break
            except sa.exc.OperationalError:
                time.sleep(0.2)
    finally:
        engine.dispose()
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------- topics
def create_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    replication: int = 1,
    config: dict[str, str] | None = None,
) -> None:
    """Create ``names`` and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=partitions, replication_factor=replication, config=config or {})
            for n in names
        ]
    )
    for fut in futures.values():
        fut.result(timeout=60)
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            meta = admin.list_topics(topic=name, timeout=10).topics.get(name)
            if (
                meta is not None
                and meta.error is None
                and len(meta.partitions) == partitions
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} did not become ready")
            time.sleep(0.2)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete ``names`` (best effort: cleanup must not fail a scenario)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    with contextlib.suppress(Exception):
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """``{partition: leader broker id}`` from the cluster metadata."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(topic=topic, timeout=10).topics[topic]
    return {p: info.leader for p, info in meta.partitions.items()}


# ---------------------------------------------------------------------------------------- brokers
class ThrowawayBroker:
    """A single-node KRaft broker of our own (never the shared one), killable with SIGKILL.

    It listens on ``port`` and advertises ``advertised_port`` (a :class:`FaultProxy` in front of it, or
    the same port). Data lives in a temporary folder that survives restarts and is removed by ``close``.
    """

    def __init__(
        self, port: int = 39092, controller_port: int = 39093, advertised_port: int | None = None
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.advertised_port = advertised_port or port
        self.dir = Path(tempfile.mkdtemp(prefix="pe-chaos-broker-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        """What clients connect to (the advertised address)."""
        return f"127.0.0.1:{self.advertised_port}"

    def _config(self) -> Path:
        lines = []
        for line in (ROOT / "infra" / "kafka" / "server.properties").read_text().splitlines():
            key = line.split("=", 1)[0]
            if key in {"listeners", "advertised.listeners", "controller.quorum.bootstrap.servers"}:
                continue
            lines.append(line)
        lines += [
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.advertised_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"log.dirs={self.dir / 'data'}",
        ]
        path = self.dir / "server.properties"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            f"-Dlog4j2.configurationFile={ROOT / 'infra/kafka/log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp",
            f"{KAFKA_LIB}/*",
            *args,
        ]

    def start(self, wait: bool = True) -> None:
        """Start the broker (formatting its storage the first time); by default wait until it answers."""
        config = self._config()
        (self.dir / "logs").mkdir(exist_ok=True)
        if not self._formatted:
            cluster_id = (
                subprocess.run(
                    self._java("kafka.tools.StorageTool", "random-uuid"),
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            subprocess.run(
                self._java(  # --cluster-id=X: a random id may start with "-" and would read as a flag
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(config),
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
            self._formatted = True
        log = (self.dir / "logs" / "stdout.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                ["java", "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", *self._java("kafka.Kafka", str(config))[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Wait until a metadata request through the advertised address works; return seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"throwaway broker exited; see {self.dir / 'logs'}")
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 3000})
            try:
                meta = admin.list_topics(timeout=3)
                if meta.brokers:
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        raise RuntimeError("throwaway broker did not become ready")

    def kill(self) -> None:
        """SIGKILL the broker (no clean shutdown)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(30)
        self._proc = None

    def close(self) -> None:
        """Stop the broker and delete its data."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """The 3-node KRaft cluster from ``scripts/services up --cluster`` (RF 3, min ISR 2, no unclean
    elections); nodes are killed with ``node-stop N`` (SIGKILL) and started with ``node-start N``."""

    bootstrap = CLUSTER_KAFKA

    def _services(self, *args: str) -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "services"), *args],
            check=True,
            capture_output=True,
            timeout=300,
            cwd=ROOT,
        )

    def running(self) -> bool:
        """True when all three nodes answer a metadata request."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 3000})
        try:
            return len(admin.list_topics(timeout=5).brokers) == 3
        except Exception:  # noqa: BLE001 - not reachable means not running
            return False

    def up(self) -> None:
        """Start the cluster if it is not running (idempotent) and make sure every node is back."""
        self._services("up", "--cluster")

    def down(self) -> None:
        """Stop the cluster (only call this when this suite started it)."""
        self._services("down", "--cluster")

    def kill(self, node: int) -> None:
        """SIGKILL one node."""
        self._services("node-stop", str(node), "KILL")

    def start(self, node: int) -> None:
        """Start one node again and wait until it is registered."""
        self._services("node-start", str(node))
        deadline = time.monotonic() + 90
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if node in admin.list_topics(timeout=5).brokers:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"cluster node {node} did not come back")
