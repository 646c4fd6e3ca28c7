"""Migrations on the real PostgreSQL: concurrent upgrades, the app's own Alembic table, schema checks."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from sqlalchemy import create_engine, inspect, text

from payment_events.errors import MigrationRequiredError
from payment_events.outbox import migrate


def test_concurrent_upgrades_all_succeed_once(pg_url: str) -> None:
    """Three processes upgrading a fresh database at the same moment all succeed (they wait for each
    other on an advisory lock), and the schema ends at the head revision."""
    code = "import sys; from payment_events.outbox import migrate; migrate.upgrade(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err[-400:] for _, err in results]
    assert migrate.current_revision(pg_url) == migrate.head_revision()
    migrate.check(pg_url)


def test_upgrades_from_threads_of_one_process_are_serialized(pg_url: str) -> None:
    """Alembic's proxies are process-wide, so upgrade() serializes callers within a process too."""
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate.upgrade(pg_url)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert migrate.current_revision(pg_url) == migrate.head_revision()


def test_application_alembic_history_is_untouched(pg_url: str) -> None:
    """The application's `alembic_version` keeps its value; ours is `payment_events_alembic_version`."""
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('app_7f3a')"))
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "app_7f3a"
        tables = set(inspect(engine).get_table_names())
        assert {"alembic_version", "payment_events_alembic_version", "payment_events_outbox"} <= tables
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("payment_events_outbox")}
        assert set(indexes) >= {
            "ix_payment_events_outbox_pending",
            "ix_payment_events_outbox_retry",
            "ix_payment_events_outbox_published",
            "ix_payment_events_outbox_dead",
        }
    finally:
        engine.dispose()


def test_check_refuses_an_unmigrated_database(pg_url: str) -> None:
    """check() names the command to run when the outbox schema is missing."""
    with pytest.raises(MigrationRequiredError, match="payment-events db upgrade"):
        migrate.check(pg_url)
