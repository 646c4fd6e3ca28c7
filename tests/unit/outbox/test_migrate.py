"""Migrations on SQLite files: idempotent, own version table, side by side with the app's Alembic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.outbox import migrate
from payment_events.outbox.store import SqlOutboxStore


def test_upgrade_creates_the_table_indexes_and_version(tmp_path: Path) -> None:
    """A fresh database gets the outbox table, its partial indexes, the lease table and the head revision."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert migrate.current_revision(url) is None
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == {
            "payment_events_outbox",
            "payment_events_shard_leases",
            migrate.VERSION_TABLE,
        }
        assert {i["name"] for i in inspector.get_indexes("payment_events_outbox")} == {
            "ix_payment_events_outbox_pending",
            "ix_payment_events_outbox_retry",
            "ix_payment_events_outbox_published",
            "ix_payment_events_outbox_dead",
        }
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    """Running the upgrade again changes nothing and does not fail."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    migrate.upgrade(url)
    migrate.check(url)


def test_application_alembic_version_is_left_alone(tmp_path: Path) -> None:
    """An application's own `alembic_version` table keeps its revision; ours lives in another table."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('app_rev_42')"))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "app_rev_42"
            ours = conn.execute(text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")).scalar_one()
        assert ours == migrate.head_revision()
    finally:
        engine.dispose()


def test_check_and_store_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    """Before `db upgrade`, check() and SqlOutboxStore.from_url raise MigrationRequiredError."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with pytest.raises(MigrationRequiredError, match="payment-events db upgrade"):
        migrate.check(url)
    with pytest.raises(MigrationRequiredError):
        SqlOutboxStore.from_url(url)
    store = SqlOutboxStore.from_url(url, check_schema=False)
    try:
        with pytest.raises(MigrationRequiredError):
            store.backlog(datetime.now(UTC))
    finally:
        store.close()


def test_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    """A database that cannot be opened is a StoreError that names no credentials."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'app.db'}"
    with pytest.raises(StoreError):
        migrate.upgrade(url)


def test_revision_0002_rewrites_the_retry_index_predicate_and_back(tmp_path: Path) -> None:
    """An outbox at revision 0001 upgrades to the retry index whose predicate does not imply
    ``state = 'pending'`` (rows kept), and downgrades back to 0001's predicate."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url, "0001")
    index_sql = text("SELECT sql FROM sqlite_master WHERE name = 'ix_payment_events_outbox_retry'")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert "state = 'pending' AND attempts > 0" in conn.execute(index_sql).scalar_one()
        migrate.upgrade(url)
        migrate.check(url)
        with engine.connect() as conn:
            assert "state <> 'published' AND state <> 'dead' AND attempts > 0" in conn.execute(
                index_sql
            ).scalar_one()
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(migrate._config(conn), "0001")
        with engine.connect() as conn:
            assert "state = 'pending' AND attempts > 0" in conn.execute(index_sql).scalar_one()
    finally:
        engine.dispose()
