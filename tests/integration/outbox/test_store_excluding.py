"""``claim_excluding`` on every store (SQLite, PostgreSQL, the in-memory fake): the claim as if the busy
rows did not exist -- what the relay's overlapped marks rely on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from payment_events.outbox.ports import Retry
from tests.integration.outbox.test_store_malformed_rows import T0, Backend, _memory_backend, _sql_backend


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """One store backend with a hand-writer."""
    if request.param == "memory":
        yield _memory_backend()
    elif request.param == "sqlite":
        yield from _sql_backend(f"sqlite:///{tmp_path / 'outbox.db'}")
    else:
        yield from _sql_backend(request.getfixturevalue("pg_url"))


def test_busy_rows_are_skipped_and_the_limit_is_filled_from_later_rows(backend: Backend) -> None:
    """The busy rows are left out, the rest come in id order up to the limit (taken from later rows)."""
    ids = [backend.insert(f"k{i % 3}".encode()) for i in range(8)]
    claimed = backend.store.claim_excluding(None, 4, T0, ids[:3])
    assert [r.id for r in claimed] == ids[3:7]
    assert [r.id for r in backend.store.claim_excluding(None, 10, T0, ())] == ids
    assert [r.id for r in backend.store.claim_excluding(None, 10, T0, ids)] == []


def test_the_excluding_claim_keeps_the_shard_and_backoff_rules(backend: Backend) -> None:
    """Shards still filter, and a key whose head waits for a retry is still skipped entirely."""
    head = backend.insert(b"blocked")
    behind = backend.insert(b"blocked")
    other = [backend.insert(b"other") for _ in range(3)]
    backend.store.resolve([], [Retry(head, T0.replace(hour=13), "x")], [])
    claimed = backend.store.claim_excluding(None, 10, T0, [other[0]])
    assert [r.id for r in claimed] == other[1:]
    assert behind not in [r.id for r in claimed]
    shard = claimed[0].shard
    assert all(r.shard == shard for r in backend.store.claim_excluding([shard], 10, T0, [other[1]]))
    assert backend.store.claim_excluding([(shard + 1) % 64], 10, T0, [other[1]]) == []
