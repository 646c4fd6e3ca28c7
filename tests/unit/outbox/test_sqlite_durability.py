"""SQLite outbox durability (issue 11, defect 11): connections configured for the outbox commit with
synchronous=FULL, so the relay can only see (and publish) a transaction that is on disk."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from payment_events.outbox.sqlite import configure_sqlite


def test_configured_sqlite_connections_commit_with_synchronous_full(tmp_path: Path) -> None:
    """PRAGMA synchronous reads 2 (FULL) in WAL mode on a configured engine."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    configure_sqlite(engine)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2
    finally:
        engine.dispose()
