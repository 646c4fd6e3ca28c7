"""Shared fixtures: the real PostgreSQL and Kafka started by `scripts/services up`, and kcat as a witness.

A test that needs a server fails when ``CI`` is set and the server is down, and is skipped otherwise
(a developer without the services still gets the unit tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "PAYMENT_EVENTS_TEST_DATABASE_URL",
    "postgresql+psycopg://payment_events:payment_events@127.0.0.1:5432/payment_events",
)
KAFKA_BOOTSTRAP = os.environ.get("PAYMENT_EVENTS_TEST_KAFKA", "127.0.0.1:19092")
ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/integration and tests/acceptance, and contract cases that use a server fixture
    (tests/contracts runs every adapter, PostgreSQL's among them), need the services: mark them so."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        fixtures = getattr(item, "fixturenames", ())
        if "integration" in parts or "acceptance" in parts or {"pg_url", "kafka_bootstrap"} & set(fixtures):
            item.add_marker(pytest.mark.integration)


def _unavailable(what: str, why: str) -> None:
    message = f"{what} is not reachable ({why}); start it with `scripts/services up`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def _pg_admin_url() -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable("PostgreSQL", type(exc).__name__)
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(_pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"pe_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(_pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield _pg_admin_url.rsplit("/", 1)[0] + "/" + name
        for attempt in range(5):  # a backend of another role (autovacuum) can make FORCE fail briefly
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except sa.exc.DBAPIError:
                if attempt == 4:
                    raise
                time.sleep(0.5)
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of the local Kafka broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        _unavailable("Kafka", type(exc).__name__)
    return KAFKA_BOOTSTRAP


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=3, prefix="test")`` makes a uniquely named topic, deleted after."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def create(partitions: int = 3, prefix: str = "test", config: dict[str, str] | None = None) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the metadata shows every partition with a leader
            meta = admin.list_topics(topic=name, timeout=5).topics.get(name)
            ready = meta is not None and meta.error is None and len(meta.partitions) == partitions
            if ready and meta is not None and all(p.leader >= 0 for p in meta.partitions.values()):
                return name
            time.sleep(0.1)
        raise AssertionError(f"topic {name} did not become ready")

    yield create
    if created:
        for fut in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # a topic already gone is fine at cleanup
                fut.result(timeout=30)


@dataclass(frozen=True)
class KcatMessage:
    """One message as the independent kcat client saw it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


def kcat_read(bootstrap: str, topic: str) -> list[KcatMessage]:
    """Every message currently in ``topic``, read from the beginning with kcat (exits at the end)."""
    kcat = shutil.which("kcat")
    if kcat is None:
        _unavailable("kcat", "not installed")
        raise AssertionError  # unreachable: _unavailable raises
    proc = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J",
         "-X", "isolation.level=read_committed"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"kcat failed: {proc.stderr.decode(errors='replace')[-500:]}")
    out = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        raw_headers = doc.get("headers") or []
        headers = {
            raw_headers[i]: (raw_headers[i + 1] or "").encode() for i in range(0, len(raw_headers) - 1, 2)
        }
        key = doc.get("key")
        out.append(
            KcatMessage(
                topic=doc["topic"],
                partition=int(doc["partition"]),
                offset=int(doc["offset"]),
                key=None if key is None else key.encode(),
                value=(doc.get("payload") or "").encode(),
                headers=headers,
            )
        )
    return out


@pytest.fixture
def kcat_consume(kafka_bootstrap: str) -> Callable[..., list[KcatMessage]]:
    """``kcat_consume(topic, expected_count, timeout=30.0)``: read until that many messages arrived."""

    def consume(topic: str, expected_count: int, timeout: float = 30.0) -> list[KcatMessage]:
        deadline = time.monotonic() + timeout
        messages = kcat_read(kafka_bootstrap, topic)
        while len(messages) < expected_count and time.monotonic() < deadline:
            time.sleep(0.5)
            messages = kcat_read(kafka_bootstrap, topic)
        return messages

    return consume
