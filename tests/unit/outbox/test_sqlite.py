"""SqlOutboxStore specifics on SQLite: WAL, busy timeout, schema check, shard filter shortcut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from payment_events.errors import StoreError
from payment_events.events.codec import EncodedEvent
from payment_events.outbox import migrate
from payment_events.outbox.ports import Published, Retry
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sqlite import SQLITE_BUSY_TIMEOUT_MS
from payment_events.outbox.store import SqlOutboxStore


def test_from_url_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    """The relay's SQLite connections run in WAL mode and wait for locks instead of failing."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    with SqlOutboxStore.from_url(url) as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == SQLITE_BUSY_TIMEOUT_MS


def test_claim_and_resolve_with_many_rows(tmp_path: Path) -> None:
    """A few thousand rows claim in id order in batches and resolve in one executemany per kind."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    now = datetime.now(UTC)
    with SqlOutboxStore.from_url(url, shard_count=8) as store:
        with store.engine.begin() as conn:
            events = [
                EncodedEvent(f"e-{i}", "PaymentSucceeded", 1, f"k{i % 50}".encode(), b"{}", (), now)
                for i in range(3000)
            ]
            OutboxPublisher(conn, shard_count=8).publish_encoded(events)
        seen: list[int] = []
        while batch := store.claim(range(8), 700, datetime.now(UTC)):
            assert [r.id for r in batch] == sorted(r.id for r in batch)
            seen.extend(r.id for r in batch)
            head, *rest = batch
            store.resolve([Published(r.id, 0, r.id) for r in rest], [], [])
            store.resolve([], [Retry(head.id, now - timedelta(seconds=1), "again")], [])
            store.resolve([Published(head.id, 0, head.id)], [], [])
        assert len(seen) == 3000
        assert store.backlog(datetime.now(UTC)).pending == 0


def test_outdated_table_asks_for_a_migration(tmp_path: Path) -> None:
    """A table that lacks the outbox's columns surfaces as a StoreError asking for `db upgrade`."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    with SqlOutboxStore.from_url(url) as store:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE payment_events_outbox"))
            conn.execute(text("CREATE TABLE payment_events_outbox (id INTEGER PRIMARY KEY, state TEXT)"))
        with pytest.raises(StoreError) as info:
            store.claim(None, 5, datetime.now(UTC))
        assert "db upgrade" in str(info.value)
