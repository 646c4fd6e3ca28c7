"""payment_events.django on a real Django project (examples/django_shop) with PostgreSQL and SQLite:
the migration creates the Alembic schema, and a payment and its event commit or roll back together."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from payment_events.errors import StoreError
from payment_events.events import PaymentSucceeded
from payment_events.events.codec import decode
from payment_events.outbox import migrate
from payment_events.outbox.publisher import NOTIFY_CHANNEL
from payment_events.outbox.store import SqlOutboxStore
from payment_events.relay.wakeup import libpq_dsn
from tests.integration.django_app.django_setup import DjangoProject

ALIASES = ["default", "lite"]


def succeeded(payment_id: str) -> PaymentSucceeded:
    """A valid PaymentSucceeded keyed by ``payment_id``."""
    return PaymentSucceeded(
        payment_id=payment_id,
        order_id="ord_1",
        amount_paid=1999,
        currency="EUR",
        payment_gateway="stripe",
        processed_at=datetime.now(UTC),
    )


def sa_url(project: DjangoProject, alias: str) -> str:
    """The SQLAlchemy URL of a Django database alias."""
    return project.pg_url if alias == "default" else f"sqlite:///{project.sqlite_path}"


def rows_for(project: DjangoProject, alias: str, payment_id: str) -> tuple[int, int]:
    """(payment rows, outbox rows) for ``payment_id``, read with an independent SQLAlchemy connection."""
    engine = sa.create_engine(sa_url(project, alias))
    try:
        with engine.connect() as conn:
            paid = conn.execute(
                sa.text("SELECT count(*) FROM shop_payment WHERE payment_id = :p"), {"p": payment_id}
            ).scalar_one()
            events = conn.execute(
                sa.text("SELECT count(*) FROM payment_events_outbox WHERE key = :k"),
                {"k": payment_id.encode()},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(paid), int(events)


def _pay(alias: str, payment_id: str, fail: bool) -> None:
    from django.db import transaction
    from examples.django_shop.shop.models import Payment

    from payment_events.django import DjangoOutboxPublisher

    with transaction.atomic(using=alias):
        Payment.objects.using(alias).create(
            payment_id=payment_id, order_id="o", amount_minor=5, currency="EUR"
        )
        DjangoOutboxPublisher(using=alias).publish_payment_succeeded(succeeded(payment_id))
        if fail:
            raise RuntimeError("the payment failed after publishing")


@pytest.mark.parametrize("alias", ALIASES)
def test_commit_stores_both_and_rollback_removes_both(django_project: DjangoProject, alias: str) -> None:
    """Inside transaction.atomic() the payment row and its event commit together, and an exception after
    the publish removes both (PostgreSQL and SQLite)."""
    _pay(alias, f"dj-ok-{alias}", fail=False)
    assert rows_for(django_project, alias, f"dj-ok-{alias}") == (1, 1)
    with pytest.raises(RuntimeError, match="after publishing"):
        _pay(alias, f"dj-fail-{alias}", fail=True)
    assert rows_for(django_project, alias, f"dj-fail-{alias}") == (0, 0)


@pytest.mark.parametrize("alias", ALIASES)
def test_events_written_by_django_are_what_the_relay_claims(
    django_project: DjangoProject, alias: str
) -> None:
    """The relay's store accepts the Django-migrated schema and claims the event exactly as written."""
    event = succeeded(f"dj-claim-{alias}")
    from django.db import transaction

    from payment_events.django import DjangoOutboxPublisher

    with transaction.atomic(using=alias):
        DjangoOutboxPublisher(using=alias).publish_many([event])
    store = SqlOutboxStore.from_url(sa_url(django_project, alias))  # checks the schema version
    try:
        everything = store.claim(None, 1000, datetime.now(UTC))
        claimed = [r for r in everything if r.key == event.payment_id.encode()]
    finally:
        store.close()
    assert [decode(r.payload, r.headers) for r in claimed] == [event]
    assert claimed[0].created_at.tzinfo is not None


def test_publish_outside_atomic_is_refused(django_project: DjangoProject) -> None:
    """In autocommit mode the event would commit alone: the publisher refuses and says to use atomic()."""
    from payment_events.django import DjangoOutboxPublisher

    with pytest.raises(StoreError, match=r"transaction\.atomic"):
        DjangoOutboxPublisher().publish(succeeded("dj-autocommit"))
    assert rows_for(django_project, "default", "dj-autocommit") == (0, 0)


def test_duplicate_event_is_refused_and_the_transaction_rolls_back(django_project: DjangoProject) -> None:
    """The same event twice raises StoreError; the surrounding transaction is rolled back."""
    from django.db import transaction

    from payment_events.django import DjangoOutboxPublisher

    event = succeeded("dj-dup")
    with transaction.atomic():
        DjangoOutboxPublisher().publish(event)
    with pytest.raises(StoreError, match="already in the outbox"), transaction.atomic():
        DjangoOutboxPublisher().publish(event)
    assert rows_for(django_project, "default", "dj-dup") == (0, 1)


def test_postgres_publish_notifies_the_relay_on_commit(django_project: DjangoProject) -> None:
    """On PostgreSQL a Django publish wakes the relay (pg_notify), only once the transaction commits."""
    from django.db import transaction

    from payment_events.django import DjangoOutboxPublisher

    listener = psycopg.connect(libpq_dsn(django_project.pg_url), autocommit=True)
    try:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with transaction.atomic():
            DjangoOutboxPublisher().publish(succeeded("dj-notify"))
            assert sum(1 for _ in listener.notifies(timeout=0.3)) == 0
        assert sum(1 for _ in listener.notifies(timeout=5.0, stop_after=1)) == 1
    finally:
        listener.close()


# -- the two schemas ----------------------------------------------------------------------------------

_PG_COLUMNS = """
SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, is_nullable,
       column_default, is_identity, identity_generation
FROM information_schema.columns
WHERE table_schema = 'public'
  AND table_name IN ('payment_events_outbox', 'payment_events_alembic_version', 'payment_events_shard_leases')
ORDER BY table_name, ordinal_position
"""
_PG_CONSTRAINTS = """
SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname = 'public' AND c.conrelid::regclass::text LIKE 'payment_events_%'
ORDER BY 1, 2
"""
_PG_INDEXES = """
SELECT tablename, indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename LIKE 'payment_events_%' ORDER BY 1, 2
"""


def pg_schema(url: str) -> dict[str, Any]:
    """Columns, constraints, indexes and the recorded version of the outbox tables, from the catalog."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "columns": [tuple(r) for r in conn.execute(sa.text(_PG_COLUMNS))],
                "constraints": [tuple(r) for r in conn.execute(sa.text(_PG_CONSTRAINTS))],
                "indexes": [tuple(r) for r in conn.execute(sa.text(_PG_INDEXES))],
                "version": conn.execute(sa.text("SELECT version_num FROM payment_events_alembic_version"))
                .all(),
            }
    finally:
        engine.dispose()


def _normalized_sql(text: str) -> str:
    text = re.sub(r"\s+", " ", text.replace('"', "")).strip()
    return re.sub(r"\s*([(),])\s*", r"\1", text)


def sqlite_schema(path: Path) -> dict[str, Any]:
    """Columns (PRAGMA table_info), index definitions and the table's DDL (whitespace and quoting
    normalized) of the outbox tables, and the recorded version."""
    conn = sqlite3.connect(path)
    try:
        tables = ("payment_events_outbox", "payment_events_alembic_version", "payment_events_shard_leases")
        return {
            "columns": {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in tables},
            # (name, unique, origin, partial), by name: the sequence number only tells creation order
            "indexes": {t: sorted(r[1:] for r in conn.execute(f"PRAGMA index_list({t})")) for t in tables},
            "sql": sorted(
                (name, _normalized_sql(sql))
                for name, sql in conn.execute(
                    "SELECT name, sql FROM sqlite_master "
                    "WHERE tbl_name LIKE 'payment_events_%' AND sql IS NOT NULL"
                )
            ),
            "version": conn.execute("SELECT version_num FROM payment_events_alembic_version").fetchall(),
        }
    finally:
        conn.close()


def test_django_migration_equals_alembic_on_postgres(django_project: DjangoProject, pg_url: str) -> None:
    """The Django migration and `payment-events db upgrade` give identical columns, constraints, indexes
    and recorded version in PostgreSQL's catalog."""
    migrate.upgrade(pg_url)
    alembic, django_made = pg_schema(pg_url), pg_schema(django_project.pg_url)
    assert len(alembic["columns"]) == 25  # 17 outbox columns, version_num, 7 lease columns
    assert len(alembic["indexes"]) == 8  # 4 partial, the three primary keys and the unique event_id
    assert django_made == alembic


def test_django_migration_equals_alembic_on_sqlite(django_project: DjangoProject, tmp_path: Path) -> None:
    """On SQLite the two migrations give the same columns, indexes, DDL and recorded version."""
    path = tmp_path / "alembic.sqlite3"
    migrate.upgrade(f"sqlite:///{path}")
    alembic, django_made = sqlite_schema(path), sqlite_schema(django_project.sqlite_path)
    assert len(alembic["sql"]) == 7  # three tables, four partial indexes
    assert django_made == alembic


def test_migrate_after_db_upgrade_leaves_the_table_alone(pg_url: str) -> None:
    """A database already migrated by `payment-events db upgrade` passes the Django migration untouched
    (events in it survive)."""
    import importlib

    from payment_events.outbox.publisher import OutboxPublisher

    migrate.upgrade(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        OutboxPublisher(conn).publish(succeeded("dj-existing"))
    module = importlib.import_module("payment_events.django.migrations.0001_outbox")

    class Editor:
        """The two things of Django's schema editor the migration uses, over a SQLAlchemy connection
        to the already migrated database (the configured Django project has its own databases)."""

        def __init__(self, conn: sa.Connection) -> None:
            self.conn = conn
            self.connection = self
            self.vendor = "postgresql"
            self.introspection = self

        def table_names(self) -> list[str]:
            return sa.inspect(self.conn).get_table_names()

        def execute(self, sql: str) -> None:
            self.conn.execute(sa.text(sql))

    with engine.begin() as conn:
        module.create_outbox(None, Editor(conn))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payment_events_outbox")).scalar_one() == 1
    engine.dispose()
