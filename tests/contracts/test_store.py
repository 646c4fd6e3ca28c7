"""The OutboxStore contract: one suite, run against SQLite, PostgreSQL and the in-memory fake.

Rows are written the way applications write them (``OutboxPublisher`` inside a transaction for the SQL
stores, a simulated transaction for the fake) and read back through the port only, plus a row lookup
(``get``) to check states.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Connection, Engine, Transaction

from payment_events.errors import LeaseLostError
from payment_events.events.codec import EncodedEvent
from payment_events.outbox import hot_path, migrate
from payment_events.outbox.ports import (
    LAST_ERROR_MAX_CHARS,
    BacklogStats,
    Dead,
    Fence,
    OutboxRecord,
    OutboxRow,
    PendingBacklog,
    PreviousOwner,
    Published,
    Retry,
    Takeover,
)
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sharding import shard_for
from payment_events.outbox.sqlite import configure_sqlite
from payment_events.outbox.store import SqlOutboxStore
from payment_events.outbox.table import outbox_table
from payment_events.testing import InMemoryOutboxStore, InMemoryTransaction

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HEADERS = (("ce_id", b"abc"), ("ce_type", b"PaymentSucceeded"), ("binary", b"\xff\x00\xfe"))


class Clock:
    """A settable clock shared by the writer and the store."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def encoded(key: bytes, event_type: str = "PaymentSucceeded") -> EncodedEvent:
    """A fabricated encoded event with a fresh id (the store does not look inside the payload)."""
    event_id = str(uuid.uuid4())
    return EncodedEvent(event_id, event_type, 1, key, b'{"id":"' + event_id.encode() + b'"}', HEADERS, T0)


class Tx(Protocol):
    """An open writer transaction."""

    def write(self, key: bytes, event_type: str = "PaymentSucceeded") -> int: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class Harness(Protocol):
    """What the suite needs from a backend besides the store itself."""

    name: str
    clock: Clock
    store: Any
    concurrent_writers: bool

    def begin(self) -> Tx: ...
    def count(self) -> int: ...


def write(h: Harness, *keys: bytes, event_type: str = "PaymentSucceeded") -> list[int]:
    """Write ``keys`` in one committed transaction; return their ids."""
    tx = h.begin()
    ids = [tx.write(k, event_type) for k in keys]
    tx.commit()
    return ids


# ---------------------------------------------------------------------------------------- backends
@dataclass
class SqlTx:
    conn: Connection
    trans: Transaction
    clock: Clock

    def write(self, key: bytes, event_type: str = "PaymentSucceeded") -> int:
        event = encoded(key, event_type)
        OutboxPublisher(self.conn, clock=self.clock).publish_encoded([event])
        query = select(outbox_table.c.id).where(outbox_table.c.event_id == event.event_id)
        return int(self.conn.execute(query).scalar_one())

    def commit(self) -> None:
        self.trans.commit()
        self.conn.close()

    def rollback(self) -> None:
        self.trans.rollback()
        self.conn.close()


@dataclass
class SqlHarness:
    name: str
    engine: Engine
    clock: Clock
    store: SqlOutboxStore
    concurrent_writers: bool
    open: list[SqlTx] = field(default_factory=list)
    hot_engine: Engine | None = None

    def begin(self) -> SqlTx:
        conn = self.engine.connect()
        tx = SqlTx(conn, conn.begin(), self.clock)
        self.open.append(tx)
        return tx

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox_table)).scalar_one())

    def close(self) -> None:
        for tx in self.open:
            if not tx.conn.closed:
                tx.rollback()
        self.engine.dispose()
        if self.hot_engine is not None:
            self.hot_engine.dispose()


@dataclass
class MemoryTx:
    tx: InMemoryTransaction

    def write(self, key: bytes, event_type: str = "PaymentSucceeded") -> int:
        return self.tx.add(encoded(key, event_type))

    def commit(self) -> None:
        self.tx.commit()

    def rollback(self) -> None:
        self.tx.rollback()


@dataclass
class MemoryHarness:
    clock: Clock
    store: InMemoryOutboxStore
    name: str = "memory"
    concurrent_writers: bool = True

    def begin(self) -> MemoryTx:
        return MemoryTx(self.store.begin())

    def count(self) -> int:
        return len(self.store.rows)


def _sql_harness(name: str, url: str, *, concurrent_writers: bool, hot: bool = False) -> SqlHarness:
    migrate.upgrade(url)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    clock = Clock()
    # "hot": the store as the relay builds it (from_url), whose claims and published marks are single
    # autocommit statements on its own pinned engine; otherwise a store on the caller's engine.
    hot_engine = create_engine(url, **hot_path.hot_engine_options({})) if hot else None
    store = SqlOutboxStore(engine, clock=clock, hot_engine=hot_engine)
    return SqlHarness(name, engine, clock, store, concurrent_writers, hot_engine=hot_engine)


@pytest.fixture(params=["memory", "sqlite", "postgresql", "postgresql-hot"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """One store backend with a writer and a settable clock."""
    if request.param == "memory":
        clock = Clock()
        yield MemoryHarness(clock, InMemoryOutboxStore(clock=clock))
        return
    if request.param == "sqlite":
        harness = _sql_harness("sqlite", f"sqlite:///{tmp_path / 'outbox.db'}", concurrent_writers=False)
    else:
        pg_url: str = request.getfixturevalue("pg_url")
        harness = _sql_harness(
            "postgresql", pg_url, concurrent_writers=True, hot=request.param == "postgresql-hot"
        )
    try:
        yield harness
    finally:
        harness.close()


def ids(records: list[OutboxRecord]) -> list[int]:
    """The ids of claimed records, in the order returned."""
    return [r.id for r in records]


def row(h: Harness, row_id: int) -> OutboxRow:
    """The row with ``row_id`` (it must exist)."""
    found = h.store.get(row_id)
    assert found is not None
    assert isinstance(found, OutboxRow)
    return found


# ------------------------------------------------------------------------------------- writing
def test_commit_makes_exactly_one_row_with_every_field(h: Harness) -> None:
    """A committed publish is one pending row holding the event's bytes, headers, topic and shard."""
    tx = h.begin()
    event = encoded(b"pay_1")
    if isinstance(tx, SqlTx):
        OutboxPublisher(tx.conn, clock=h.clock, router=lambda t: "payments.custom").publish_encoded([event])
    else:
        assert isinstance(tx, MemoryTx)
        tx.tx.add(event, "payments.custom")
    tx.commit()
    assert h.count() == 1
    [claimed] = h.store.claim(None, 10, T0)
    assert claimed.event_id == event.event_id
    assert claimed.event_type == "PaymentSucceeded"
    assert claimed.schema_version == 1
    assert claimed.key == b"pay_1"
    assert claimed.payload == event.value
    assert claimed.headers == HEADERS
    assert claimed.topic == "payments.custom"
    assert claimed.shard == shard_for(b"pay_1")
    assert claimed.attempts == 0
    assert claimed.created_at == T0


def test_rollback_leaves_no_row(h: Harness) -> None:
    """A rolled-back transaction leaves nothing to claim and no row at all."""
    tx = h.begin()
    tx.write(b"pay_1")
    tx.rollback()
    assert h.count() == 0
    assert h.store.claim(None, 10, T0) == []


# -------------------------------------------------------------------------------------- claiming
def test_claim_returns_pending_rows_in_id_order_up_to_the_limit(h: Harness) -> None:
    """Claims are in id order, honour the limit, and are not destructive (claiming again repeats)."""
    written = write(h, b"a", b"b", b"a", b"c", b"b")
    assert written == sorted(written)
    assert ids(h.store.claim(None, 3, T0)) == written[:3]
    assert ids(h.store.claim(None, 100, T0)) == written
    assert ids(h.store.claim(None, 100, T0)) == written
    assert h.store.claim(None, 0, T0) == []


def test_claim_filters_by_owned_shards(h: Harness) -> None:
    """Only rows whose key hashes into an owned shard are claimed; no shards means nothing."""
    keys = [f"key-{i}".encode() for i in range(20)]
    written = dict(zip(write(h, *keys), keys, strict=True))
    owned = {shard_for(keys[0]), shard_for(keys[1])}
    got = h.store.claim(owned, 100, T0)
    assert ids(got) == [i for i, k in written.items() if shard_for(k) in owned]
    assert all(r.shard in owned for r in got)
    assert h.store.claim(set(), 100, T0) == []
    assert ids(h.store.claim(set(range(64)), 100, T0)) == list(written)


def test_late_committing_transaction_is_still_claimed(h: Harness) -> None:
    """A row with a lower id that commits after higher ids were claimed and published is still found."""
    if not h.concurrent_writers:
        pytest.skip("SQLite admits one writer at a time, so ids are assigned in commit order")
    held = h.begin()
    late = held.write(b"slow")
    [early] = write(h, b"fast")
    assert late < early
    assert ids(h.store.claim(None, 10, T0)) == [early]
    h.store.resolve([Published(early, 0, 0)], [], [])
    assert h.store.claim(None, 10, T0) == []
    held.commit()
    assert ids(h.store.claim(None, 10, T0)) == [late]


def test_key_in_backoff_is_skipped_while_other_keys_continue(h: Harness) -> None:
    """A key whose head waits for a retry is skipped entirely; other keys are claimed; when due, the
    head comes back first, followed by the rest of its key."""
    a1, b1, a2, c1, a3 = write(h, b"a", b"b", b"a", b"c", b"a")
    h.store.resolve([], [Retry(a1, T0 + timedelta(seconds=30), "broker down")], [])
    assert ids(h.store.claim(None, 10, T0 + timedelta(seconds=29))) == [b1, c1]
    assert ids(h.store.claim(None, 10, T0 + timedelta(seconds=30))) == [a1, b1, a2, c1, a3]


def test_later_row_in_backoff_does_not_block_the_earlier_rows_of_its_key(h: Harness) -> None:
    """Only an *earlier* row in backoff blocks a key: rows before it stay claimable."""
    a1, a2 = write(h, b"a", b"a")
    h.store.resolve([], [Retry(a2, T0 + timedelta(seconds=30), "timeout")], [])
    assert ids(h.store.claim(None, 10, T0)) == [a1]


def test_dead_head_unblocks_the_rest_of_its_key(h: Harness) -> None:
    """After a key's head is dead-lettered, its later events are claimed again."""
    a1, a2 = write(h, b"a", b"a")
    h.store.resolve([], [Retry(a1, T0 + timedelta(hours=1), "timeout")], [])
    assert h.store.claim(None, 10, T0) == []
    h.store.resolve([], [], [Dead(a1, "retry budget exhausted")])
    assert ids(h.store.claim(None, 10, T0)) == [a2]


# ------------------------------------------------------------------------------------- resolving
def test_resolve_marks_published_with_partition_and_offset(h: Harness) -> None:
    """Published rows leave the claim and record partition, offset and publication time."""
    a, b = write(h, b"a", b"b")
    h.clock.now = T0 + timedelta(seconds=5)
    h.store.resolve([Published(a, 2, 41)], [], [])
    assert ids(h.store.claim(None, 10, h.clock.now)) == [b]
    published = row(h, a)
    assert (published.state, published.kafka_partition, published.kafka_offset) == ("published", 2, 41)
    assert published.published_at == T0 + timedelta(seconds=5)
    assert published.attempts == 0


def test_resolve_retry_counts_the_attempt_and_keeps_a_truncated_error(h: Harness) -> None:
    """A retry increments attempts, sets the next attempt time and a bounded last error."""
    [a] = write(h, b"a")
    h.store.resolve([], [Retry(a, T0 + timedelta(seconds=1), "x" * 5000)], [])
    h.store.resolve([], [Retry(a, T0 + timedelta(seconds=3), "leader not available")], [])
    retried = row(h, a)
    assert retried.state == "pending"
    assert retried.attempts == 2
    assert retried.next_attempt_at == T0 + timedelta(seconds=3)
    assert retried.last_error == "leader not available"
    [b] = write(h, b"b")
    h.store.resolve([], [Retry(b, T0, "y" * 5000)], [])
    error = row(h, b).last_error
    assert error is not None
    assert len(error) == LAST_ERROR_MAX_CHARS


def test_resolve_dead_sets_state_and_reason(h: Harness) -> None:
    """A dead row leaves the claim with its reason and the failed attempt counted."""
    [a] = write(h, b"a")
    h.store.resolve([], [], [Dead(a, "message too large")])
    dead = row(h, a)
    assert (dead.state, dead.last_error, dead.attempts) == ("dead", "message too large", 1)
    assert h.store.claim(None, 10, T0) == []


def test_published_row_never_goes_back(h: Harness) -> None:
    """Once published, later retries, dead marks or second acks change nothing."""
    [a] = write(h, b"a")
    h.store.resolve([Published(a, 1, 7)], [], [])
    h.store.resolve([Published(a, 2, 99)], [Retry(a, T0 + timedelta(seconds=9), "late")], [])
    h.store.resolve([], [], [Dead(a, "late")])
    final = row(h, a)
    assert (final.state, final.kafka_partition, final.kafka_offset, final.attempts) == ("published", 1, 7, 0)
    assert final.last_error is None


def test_resolve_applies_mixed_outcomes_in_one_call(h: Harness) -> None:
    """Published, retried and dead rows of one batch are all recorded by one resolve."""
    a, b, c = write(h, b"a", b"b", b"c")
    h.store.resolve([Published(b, 0, 1)], [Retry(a, T0 + timedelta(seconds=5), "t")], [Dead(c, "p")])
    assert [row(h, i).state for i in (a, b, c)] == ["pending", "published", "dead"]
    h.store.resolve([], [], [])  # nothing to do is fine


# ------------------------------------------------------------------------------ backlog and purge
def test_backlog_reports_pending_retry_dead_age_and_recent_publications(h: Harness) -> None:
    """Backlog numbers match the rows: pending (incl. retry), in retry, dead, oldest age, last minute."""
    assert h.store.backlog(T0) == BacklogStats(0, 0, 0, 0.0, 0)
    a, _b, c, d = write(h, b"a", b"b", b"c", b"d")
    h.clock.now = T0 + timedelta(seconds=10)
    h.store.resolve([Published(c, 0, 0)], [Retry(a, T0 + timedelta(minutes=5), "t")], [Dead(d, "p")])
    stats = h.store.backlog(T0 + timedelta(seconds=40))
    assert stats == BacklogStats(
        pending=2, in_retry=1, dead=1, oldest_pending_age_seconds=40.0, published_last_minute=1
    )
    later = h.store.backlog(T0 + timedelta(minutes=6))
    assert (later.in_retry, later.published_last_minute) == (0, 0)


def test_pending_backlog_agrees_with_the_full_backlog(h: Harness) -> None:
    """A store offering the relay's narrow probe reports the same pending count, oldest age and dead
    count as backlog() (the SQL store on both databases; the in-memory store does not offer it)."""
    probe = h.store
    if not isinstance(probe, PendingBacklog):
        assert h.name == "memory"
        return
    assert probe.pending_backlog(T0) == (0, 0.0, 0)
    a, _b, c = write(h, b"a", b"b", b"c")
    h.store.resolve([Published(c, 0, 0)], [Retry(a, T0 + timedelta(minutes=5), "t")], [])
    d = write(h, b"d")[0]
    h.store.resolve([], [], [Dead(d, "PERMANENT")])
    now = T0 + timedelta(seconds=40)
    stats = h.store.backlog(now)
    expected = (stats.pending, stats.oldest_pending_age_seconds, stats.dead)
    assert probe.pending_backlog(now) == expected == (2, 40.0, 1)


def test_purge_deletes_only_old_published_rows_in_batches(h: Harness) -> None:
    """Purge removes published rows older than the cut-off, at most a batch at a time, never others."""
    written = write(h, b"a", b"b", b"c", b"d", b"e", b"f")
    old, recent, pending, dead = written[:3], written[3], written[4], written[5]
    h.store.resolve([Published(i, 0, n) for n, i in enumerate(old)], [], [Dead(dead, "p")])
    h.clock.now = T0 + timedelta(hours=2)
    h.store.resolve([Published(recent, 0, 9)], [], [])
    cutoff = T0 + timedelta(hours=1)
    assert h.store.purge_published(cutoff, 2) == 2
    assert h.store.purge_published(cutoff, 2) == 1
    assert h.store.purge_published(cutoff, 2) == 0
    assert h.count() == 3
    assert all(h.store.get(i) is None for i in old)
    assert [row(h, i).state for i in (recent, pending, dead)] == ["published", "pending", "dead"]


# ------------------------------------------------------------------------------- dead letters
def test_dead_letters_are_listed_filtered_and_replayed_in_place(h: Harness) -> None:
    """Dead rows are listed oldest first (optionally by type) and replay moves them back to pending
    with the same id, attempts reset, ahead of later pending rows of their key."""
    a1, b1 = write(h, b"a", b"b", event_type="PaymentFailed")
    [c1] = write(h, b"c", event_type="RefundFailed")
    h.store.resolve([], [], [Dead(a1, "too large"), Dead(b1, "unauthorized"), Dead(c1, "x")])
    [a2] = write(h, b"a")
    assert [d.id for d in h.store.list_dead()] == [a1, b1, c1]
    listed = h.store.list_dead(10, event_type="PaymentFailed")
    assert [(d.id, d.key, d.attempts, d.last_error) for d in listed] == [
        (a1, b"a", 1, "too large"),
        (b1, b"b", 1, "unauthorized"),
    ]
    assert [d.id for d in h.store.list_dead(1)] == [a1]
    assert h.store.replay([a1, a2, 999_999]) == 1
    assert ids(h.store.claim(None, 10, T0 + timedelta(seconds=1))) == [a1, a2]
    assert row(h, a1).attempts == 0
    assert h.store.replay(event_type="RefundFailed") == 1
    assert h.store.replay(all_dead=True) == 1
    assert h.store.list_dead() == []


def test_replay_needs_exactly_one_selection(h: Harness) -> None:
    """Replay refuses an empty or ambiguous selection rather than replaying everything by accident."""
    with pytest.raises(ValueError, match="exactly one"):
        h.store.replay()
    with pytest.raises(ValueError, match="exactly one"):
        h.store.replay([1], all_dead=True)


# --------------------------------------------------------------------------------------- fencing
NS = 7


def shard_keys(*shards: int) -> list[bytes]:
    """One key hashing into each of ``shards`` (of 64)."""
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < len(set(shards)):
        key = f"fence-{i}".encode()
        if shard_for(key) in shards and shard_for(key) not in found:
            found[shard_for(key)] = key
        i += 1
    return [found[s] for s in shards]


def fence_of(owner: str, takeover: Takeover) -> Fence:
    """The fence a relay holds after ``takeover``."""
    return Fence(NS, owner, dict(takeover.generations))


def test_taking_a_shard_bumps_its_generation_and_names_the_previous_owner(h: Harness) -> None:
    """Each take of a shard bumps its generation and reports who held it (None after a release)."""
    first = h.store.take_shards(NS, "relay-a", [1, 2], transactional_id="txn-a")
    assert first.generations == {1: 1, 2: 1}
    assert first.previous == {}
    second = h.store.take_shards(NS, "relay-b", [2])
    assert second.generations == {2: 2}
    assert second.previous[2] == PreviousOwner("relay-a", "txn-a")
    h.store.release_shards(NS, "relay-b", [2])
    third = h.store.take_shards(NS, "relay-a", [2])
    assert third.generations == {2: 3}
    assert third.previous[2].owner is None
    assert h.store.take_shards(NS + 1, "relay-c", [2]).generations == {2: 1}  # namespaces are apart


def test_a_fenced_claim_returns_only_rows_of_shards_still_held(h: Harness) -> None:
    """After another relay took one of its shards, the old owner claims only its other shard's rows."""
    key_a, key_b = shard_keys(3, 4)
    row_a, row_b = write(h, key_a, key_b)
    fence = fence_of("relay-a", h.store.take_shards(NS, "relay-a", [3, 4]))
    assert ids(h.store.claim_fenced(fence, 10, T0)) == [row_a, row_b]
    h.store.take_shards(NS, "relay-b", [4])
    assert h.store.held_shards(fence) == {3}
    assert ids(h.store.claim_fenced(fence, 10, T0)) == [row_a]
    assert ids(h.store.claim_fenced(fence, 10, T0, busy=[row_a])) == []


def test_a_stale_generation_of_the_same_owner_is_fenced_too(h: Harness) -> None:
    """A fence from before a re-take (same owner, older generation) claims and marks nothing."""
    (key,) = shard_keys(5)
    (row_id,) = write(h, key)
    old = fence_of("relay-a", h.store.take_shards(NS, "relay-a", [5]))
    new = fence_of("relay-a", h.store.take_shards(NS, "relay-a", [5]))
    assert h.store.claim_fenced(old, 10, T0) == []
    assert ids(h.store.claim_fenced(new, 10, T0)) == [row_id]


def test_a_fenced_resolve_marks_held_shards_and_leaves_lost_ones_pending(h: Harness) -> None:
    """Marks of a lost shard are not written (LeaseLostError), those of held shards are committed."""
    key_a, key_b, key_c = shard_keys(6, 7, 8)
    row_a, row_b, row_c = write(h, key_a, key_b, key_c)
    fence = fence_of("relay-a", h.store.take_shards(NS, "relay-a", [6, 7, 8]))
    h.store.take_shards(NS, "relay-b", [7, 8])
    with pytest.raises(LeaseLostError):
        h.store.resolve_fenced(
            fence,
            [Published(row_a, 0, 10), Published(row_b, 0, 11)],
            [],
            [Dead(row_c, "should not be written")],
        )
    assert row(h, row_a).state == "published"
    assert (row(h, row_b).state, row(h, row_b).kafka_offset) == ("pending", None)
    assert (row(h, row_c).state, row(h, row_c).attempts) == ("pending", 0)


def test_a_fenced_resolve_of_an_intact_fence_marks_everything(h: Harness) -> None:
    """With every shard still held, a fenced resolve is exactly a resolve."""
    key_a, key_b = shard_keys(9, 10)
    row_a, row_b = write(h, key_a, key_b)
    fence = fence_of("relay-a", h.store.take_shards(NS, "relay-a", [9, 10]))
    retry = Retry(row_b, T0 + timedelta(seconds=5), "x")
    h.store.resolve_fenced(fence, [Published(row_a, 1, 5)], [retry], [])
    assert (row(h, row_a).state, row(h, row_a).kafka_offset) == ("published", 5)
    assert (row(h, row_b).state, row(h, row_b).attempts) == ("pending", 1)


def test_releasing_a_shard_fences_the_releaser(h: Harness) -> None:
    """After a clean release the former owner can neither claim nor mark for the shard."""
    (key,) = shard_keys(11)
    (row_id,) = write(h, key)
    fence = fence_of("relay-a", h.store.take_shards(NS, "relay-a", [11]))
    h.store.release_shards(NS, "relay-a", [11])
    assert h.store.claim_fenced(fence, 10, T0) == []
    with pytest.raises(LeaseLostError):
        h.store.resolve_fenced(fence, [Published(row_id, 0, 1)], [], [])
    assert row(h, row_id).state == "pending"


def test_settled_time_is_kept_for_the_next_taker_and_only_by_the_holder(h: Harness) -> None:
    """settle_shards records the holder's settled time, which the next take reports; a stale fence
    cannot settle."""
    first = h.store.take_shards(NS, "relay-a", [12, 13])
    fence = fence_of("relay-a", first)
    h.store.settle_shards(fence, [12], T0)
    second = h.store.take_shards(NS, "relay-b", [12, 13])
    assert second.previous[12].settled_at == T0
    assert second.previous[13].settled_at is None
    h.store.settle_shards(fence, [13], T0)  # relay-a no longer holds it
    assert h.store.take_shards(NS, "relay-c", [13]).previous[13].settled_at is None
