"""Property: the in-memory fake and the SQLite store answer every claim and backlog identically."""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from payment_events.events.codec import EncodedEvent
from payment_events.outbox import migrate
from payment_events.outbox.ports import Dead, Published, Retry
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.store import SqlOutboxStore
from payment_events.testing import InMemoryOutboxStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHARDS = 4
KEYS = [b"a", b"b", b"c", b"d", b"e"]


@dataclass(frozen=True)
class Write:
    keys: tuple[bytes, ...]


@dataclass(frozen=True)
class Outcome:
    kind: str  # "published" | "retry" | "dead"
    pick: int  # which claimed row (modulo the claim size)
    delay: int  # seconds of backoff for a retry


@dataclass(frozen=True)
class Claim:
    shards: frozenset[int] | None
    limit: int
    at: int  # seconds after T0
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True)
class Replay:
    pass


operations = st.lists(
    st.one_of(
        st.builds(Write, st.lists(st.sampled_from(KEYS), min_size=1, max_size=4).map(tuple)),
        st.builds(
            Claim,
            st.one_of(st.none(), st.frozensets(st.integers(0, SHARDS - 1))),
            st.integers(1, 6),
            st.integers(0, 120),
            st.lists(
                st.builds(Outcome, st.sampled_from(["published", "retry", "dead"]), st.integers(0, 5),
                          st.integers(1, 60)),
                max_size=3,
            ).map(tuple),
        ),
        st.just(Replay()),
    ),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_fake_and_sqlite_agree(ops: list[Write | Claim | Replay]) -> None:
    """Any sequence of writes, claims with outcomes and replays gives the same claims and backlog on the
    fake as on a real SQLite outbox."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'outbox.db'}"
        migrate.upgrade(url)
        engine = create_engine(url)
        try:
            now = [T0]
            sql = SqlOutboxStore(engine, shard_count=SHARDS, clock=lambda: now[0])
            fake = InMemoryOutboxStore(shard_count=SHARDS, clock=lambda: now[0])
            for op in ops:
                if isinstance(op, Write):
                    events = [EncodedEvent(str(uuid.uuid4()), "PaymentSucceeded", 1, k, b"{}", (), T0)
                              for k in op.keys]
                    with engine.begin() as conn:
                        writer = OutboxPublisher(conn, shard_count=SHARDS, clock=lambda: now[0])
                        writer.publish_encoded(events)
                    with fake.transaction() as tx:
                        for event in events:
                            tx.add(event)
                elif isinstance(op, Replay):
                    assert sql.replay(all_dead=True) == fake.replay(all_dead=True)
                else:
                    now[0] = T0 + timedelta(seconds=op.at)
                    got_sql = sql.claim(op.shards, op.limit, now[0])
                    got_fake = fake.claim(op.shards, op.limit, now[0])
                    assert [(r.id, r.key, r.attempts) for r in got_sql] == [
                        (r.id, r.key, r.attempts) for r in got_fake
                    ]
                    if not got_sql:
                        continue
                    published, retries, dead = [], [], []
                    decided: set[int] = set()
                    for outcome in op.outcomes:
                        row_id = got_sql[outcome.pick % len(got_sql)].id
                        if row_id in decided:
                            continue  # the relay resolves a claimed row once per batch (the port's rule)
                        decided.add(row_id)
                        if outcome.kind == "published":
                            published.append(Published(row_id, 0, row_id))
                        elif outcome.kind == "retry":
                            retries.append(Retry(row_id, now[0] + timedelta(seconds=outcome.delay), "t"))
                        else:
                            dead.append(Dead(row_id, "p"))
                    sql.resolve(published, retries, dead)
                    fake.resolve(published, retries, dead)
                    assert sql.backlog(now[0]) == fake.backlog(now[0])
            assert sql.backlog(now[0]) == fake.backlog(now[0])
            assert [d.id for d in sql.list_dead()] == [d.id for d in fake.list_dead()]
        finally:
            engine.dispose()
