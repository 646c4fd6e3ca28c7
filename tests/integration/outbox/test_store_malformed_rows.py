"""Malformed rows written by hand: every store (SQLite, PostgreSQL, the in-memory fake) claims them as
records with a ``defect`` instead of failing the claim, and the other rows are claimed as usual."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from payment_events.outbox import migrate
from payment_events.outbox.headers import HEADERS_NOT_JSON, dump_headers
from payment_events.outbox.ports import Dead, OutboxRecord
from payment_events.outbox.sharding import shard_for
from payment_events.outbox.sqlite import configure_sqlite
from payment_events.outbox.store import SqlOutboxStore
from payment_events.outbox.table import outbox_table
from payment_events.testing import InMemoryOutboxStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HEADERS = (("ce_id", b"abc"), ("binary", b"\xff\x00"))


@dataclass
class Backend:
    """A store plus a way to write a row by hand and read a row's state back."""

    store: Any
    insert: Callable[..., int]
    state: Callable[[int], tuple[str, str | None]]


def _sql_backend(url: str) -> Iterator[Backend]:
    migrate.upgrade(url)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    store = SqlOutboxStore(engine, clock=lambda: T0)

    def insert(key: bytes, payload: bytes = b"{}", headers_text: str | None = None) -> int:
        event_id = str(uuid.uuid4())
        row = {
            "event_id": event_id, "event_type": "PaymentSucceeded", "schema_version": 1,
            "topic": "payment.events", "key": key, "payload": payload,
            "headers": dump_headers(HEADERS) if headers_text is None else headers_text,
            "shard": shard_for(key, 64), "next_attempt_at": T0, "created_at": T0,
        }
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), row)
            return int(conn.execute(
                select(outbox_table.c.id).where(outbox_table.c.event_id == event_id)
            ).scalar_one())

    def state(row_id: int) -> tuple[str, str | None]:
        with engine.connect() as conn:
            found = conn.execute(
                select(outbox_table.c.state, outbox_table.c.last_error).where(outbox_table.c.id == row_id)
            ).one()
        return str(found.state), found.last_error

    try:
        yield Backend(store, insert, state)
    finally:
        engine.dispose()


def _memory_backend() -> Backend:
    store = InMemoryOutboxStore(clock=lambda: T0)

    def insert(key: bytes, payload: bytes = b"{}", headers_text: str | None = None) -> int:
        with store.transaction() as tx:
            if headers_text is None:
                return tx.add_raw(key, payload, headers=HEADERS)
            return tx.add_raw(key, payload, headers_json=headers_text)

    def state(row_id: int) -> tuple[str, str | None]:
        row = store.get(row_id)
        assert row is not None
        return row.state, row.last_error

    return Backend(store, insert, state)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """One store backend with a hand-writer."""
    if request.param == "memory":
        yield _memory_backend()
    elif request.param == "sqlite":
        yield from _sql_backend(f"sqlite:///{tmp_path / 'outbox.db'}")
    else:
        yield from _sql_backend(request.getfixturevalue("pg_url"))


def by_id(records: list[OutboxRecord]) -> dict[int, OutboxRecord]:
    """Claimed records by outbox id."""
    return {r.id: r for r in records}


def test_rows_with_bad_headers_json_or_an_empty_payload_are_claimed_with_a_defect(backend: Backend) -> None:
    """A claim over malformed rows does not raise: those rows carry a defect, the sound ones none and
    their exact headers, all in id order."""
    first = backend.insert(b"k1")
    bad_headers = backend.insert(b"k1", headers_text="{not json")
    empty = backend.insert(b"k2", payload=b"")
    last = backend.insert(b"k1")
    claimed = backend.store.claim(None, 10, T0)
    assert [r.id for r in claimed] == [first, bad_headers, empty, last]
    records = by_id(claimed)
    assert records[bad_headers].defect == HEADERS_NOT_JSON
    assert records[bad_headers].headers == ()
    assert records[empty].defect == "payload is empty"
    assert records[empty].headers == HEADERS
    for sound in (first, last):
        assert records[sound].defect is None
        assert records[sound].headers == HEADERS
        assert records[sound].payload == b"{}"


def test_malformed_rows_resolve_dead_like_any_other_row(backend: Backend) -> None:
    """Dead-marking a malformed row records the reason, and the next claim no longer returns it."""
    bad_headers = backend.insert(b"k1", headers_text="[1, 2")
    empty = backend.insert(b"k2", payload=b"")
    sound = backend.insert(b"k1")
    backend.store.resolve([], [], [Dead(bad_headers, "MALFORMED_ROW: x"), Dead(empty, "MALFORMED_ROW: y")])
    assert backend.state(bad_headers) == ("dead", "MALFORMED_ROW: x")
    assert backend.state(empty) == ("dead", "MALFORMED_ROW: y")
    assert [r.id for r in backend.store.claim(None, 10, T0)] == [sound]
