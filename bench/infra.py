"""Fresh, throwaway state for each workload: a new PostgreSQL database and new Kafka topics.

Nothing here touches the shared databases or topics of the test suite: every database is named
``pe_bench_<hex>`` and every topic ``bench.<workload>.<hex>``, and both are dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator

ADMIN_URL = os.environ.get(
    "PAYMENT_EVENTS_BENCH_DATABASE_URL",
    os.environ.get(
        "PAYMENT_EVENTS_TEST_DATABASE_URL",
        "postgresql+psycopg://payment_events:payment_events@127.0.0.1:5432/payment_events",
    ),
)
BOOTSTRAP = os.environ.get(
    "PAYMENT_EVENTS_BENCH_KAFKA", os.environ.get("PAYMENT_EVENTS_TEST_KAFKA", "127.0.0.1:19092")
)


def libpq_dsn(url: str) -> str:
    """A plain libpq connection string (psycopg) from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(prefix: str = "pe_bench") -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it (``WITH (FORCE)``) afterwards."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            drop_database(admin, name)
    finally:
        admin.dispose()


def drop_database(admin: object, name: str, attempts: int = 20) -> None:
    """``DROP DATABASE ... WITH (FORCE)``, retried: an autovacuum worker (a superuser backend that we may
    not terminate) can hold the database for a moment after a bulk load."""
    import sqlalchemy as sa

    assert isinstance(admin, sa.Engine)
    for attempt in range(attempts):
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)


def create_topic(workload: str, partitions: int, config: dict[str, str] | None = None) -> str:
    """Create ``bench.<workload>.<hex>`` and wait until every partition has a leader; return its name."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    name = f"bench.{workload}.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
    )
    futures[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        meta = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return name
        time.sleep(0.1)
    raise RuntimeError(f"topic {name} did not become ready")


def delete_topics(names: list[str]) -> None:
    """Delete bench topics (best effort: a topic already gone is fine)."""
    if not names:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):
            fut.result(timeout=30)


@contextlib.contextmanager
def fresh_topic(workload: str, partitions: int, config: dict[str, str] | None = None) -> Iterator[str]:
    """A new topic for one workload, deleted afterwards."""
    name = create_topic(workload, partitions, config)
    try:
        yield name
    finally:
        delete_topics([name])
