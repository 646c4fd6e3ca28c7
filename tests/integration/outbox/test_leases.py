"""Shard leases on the real PostgreSQL: disjoint ownership, full coverage, takeover of a dead instance."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from payment_events.errors import LeaseLostError
from payment_events.outbox.leases import AllShards, PostgresShardLeases
from payment_events.outbox.migrate import upgrade
from payment_events.outbox.ports import Published
from payment_events.outbox.store import SqlOutboxStore
from tests.integration.relay_support import migrated_engine, payment_event, write

SHARDS = 64


@pytest.fixture
def make_leases(pg_url: str) -> Iterator[Callable[..., PostgresShardLeases]]:
    """Factory of lease holders (each its own connection), all closed after the test."""
    upgrade(pg_url)  # the fenced leases write their generations into payment_events_shard_leases
    made: list[PostgresShardLeases] = []

    def make(shard_count: int = SHARDS, namespace: int = 4242) -> PostgresShardLeases:
        leases = PostgresShardLeases(pg_url, shard_count, namespace, rand=random.Random(len(made)))
        made.append(leases)
        return leases

    yield make
    for leases in made:
        leases.close()


def refresh_all(instances: list[PostgresShardLeases], rounds: int = 2) -> list[frozenset[int]]:
    """Refresh every instance ``rounds`` times, round-robin; return what each owns at the end."""
    for _ in range(rounds):
        for leases in instances:
            leases.refresh()
    return [leases.owned for leases in instances]


def assert_disjoint(owned: list[frozenset[int]]) -> None:
    """No shard is owned by two instances."""
    seen: set[int] = set()
    for shards in owned:
        assert not seen & shards
        seen |= shards


@pytest.mark.parametrize("count", [2, 3])
def test_instances_own_disjoint_fair_shares_covering_every_shard(
    make_leases: Callable[..., PostgresShardLeases], count: int
) -> None:
    """After a couple of refreshes the instances' shards are disjoint, fair and cover all shards."""
    instances = [make_leases() for _ in range(count)]
    owned = refresh_all(instances)
    assert_disjoint(owned)
    assert set().union(*owned) == set(range(SHARDS))
    fair = math.ceil(SHARDS / count)
    assert all(len(shards) <= fair for shards in owned)
    assert all(leases.members == count for leases in instances)


def test_a_single_instance_owns_every_shard(make_leases: Callable[..., PostgresShardLeases]) -> None:
    """Alone, one instance takes every shard on its first refresh."""
    assert make_leases().refresh() == frozenset(range(SHARDS))


def test_a_new_instance_gets_its_share_as_the_others_release_extras(
    make_leases: Callable[..., PostgresShardLeases],
) -> None:
    """A joining instance gets a fair share once the existing ones release what exceeds theirs."""
    first, second = make_leases(), make_leases()
    refresh_all([first, second])
    third = make_leases()
    third.refresh()
    owned = refresh_all([first, second, third])
    assert_disjoint(owned)
    assert set().union(*owned) == set(range(SHARDS))
    assert len(third.owned) >= SHARDS // 3 - 1


def test_released_instance_shards_are_taken_within_one_refresh(
    make_leases: Callable[..., PostgresShardLeases],
) -> None:
    """When one of three instances lets go (graceful stop), the two others cover every shard after one
    refresh each."""
    a, b, c = make_leases(), make_leases(), make_leases()
    refresh_all([a, b, c])
    c.release_all()
    assert c.owned == frozenset()
    a.refresh()
    b.refresh()
    assert_disjoint([a.owned, b.owned])
    assert a.owned | b.owned == set(range(SHARDS))


def test_terminated_backend_loses_its_shards_and_the_others_take_them(
    pg_url: str, make_leases: Callable[..., PostgresShardLeases]
) -> None:
    """pg_terminate_backend on one instance's lock connection: the others take its shards within one
    refresh; the victim owns nothing, then reconnects and gets a fair share again."""
    a, b, victim = make_leases(), make_leases(), make_leases()
    refresh_all([a, b, victim])
    assert victim.owned
    victim_pid = victim.backend_pid
    assert victim_pid is not None
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": victim_pid}).scalar_one()
    finally:
        engine.dispose()
    _wait_gone(pg_url, victim_pid)
    a.refresh()
    b.refresh()
    assert a.owned | b.owned == set(range(SHARDS))
    assert_disjoint([a.owned, b.owned])
    assert victim.refresh() == frozenset()
    owned = refresh_all([victim, a, b])
    assert_disjoint(owned)
    assert set().union(*owned) == set(range(SHARDS))
    assert victim.owned


def _wait_gone(pg_url: str, pid: int) -> None:
    """Wait until the terminated backend has left pg_stat_activity (its locks are gone with it)."""
    engine = create_engine(pg_url)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                alive = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ).scalar_one()
            if not alive:
                return
            time.sleep(0.05)
        raise AssertionError("terminated backend did not go away")
    finally:
        engine.dispose()


def test_namespaces_are_independent(make_leases: Callable[..., PostgresShardLeases]) -> None:
    """Two relay groups in different namespaces each own every shard of their own group."""
    assert make_leases(namespace=1).refresh() == frozenset(range(SHARDS))
    assert make_leases(namespace=2).refresh() == frozenset(range(SHARDS))


def test_unreachable_database_means_no_shards_not_an_exception() -> None:
    """With the database unreachable, refresh returns no shards (the relay then claims nothing)."""
    leases = PostgresShardLeases("postgresql+psycopg://nobody:nothing@127.0.0.1:1/none", SHARDS, 7)
    try:
        assert leases.refresh() == frozenset()
    finally:
        leases.close()


def test_all_shards_is_every_shard() -> None:
    """The SQLite (single relay) lease owns every shard and releases nothing."""
    leases = AllShards(8)
    assert leases.refresh() == frozenset(range(8))
    leases.release_all()
    assert leases.refresh() == frozenset(range(8))


def _terminate(pg_url: str, pid: int) -> None:
    """pg_terminate_backend(pid) and wait until it is gone."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    finally:
        engine.dispose()
    _wait_gone(pg_url, pid)


def test_a_relay_whose_lease_connection_died_claims_nothing_even_before_it_notices(
    pg_url: str, make_leases: Callable[..., PostgresShardLeases]
) -> None:
    """Its lease connection terminated and nobody else took over yet, the old fence claims no row."""
    victim = make_leases()
    victim.refresh()
    fence = victim.fence
    assert fence is not None
    assert fence.shards == frozenset(range(SHARDS))
    engine = migrated_engine(pg_url)
    store = SqlOutboxStore(engine)
    try:
        write(engine, "t", [payment_event(f"pay-{i}", i) for i in range(20)])
        assert len(store.claim_fenced(fence, 100, datetime.now(UTC))) == 20
        assert victim.backend_pid is not None
        _terminate(pg_url, victim.backend_pid)
        assert store.claim_fenced(fence, 100, datetime.now(UTC)) == []  # no refresh in between
    finally:
        engine.dispose()


def test_a_takeover_fences_the_old_owners_claims_and_marks(
    pg_url: str, make_leases: Callable[..., PostgresShardLeases]
) -> None:
    """Once another instance took the shards, the old owner's fence claims nothing and marks nothing."""
    old = make_leases()
    old.refresh()
    fence = old.fence
    assert fence is not None
    assert old.backend_pid is not None
    engine = migrated_engine(pg_url)
    store = SqlOutboxStore(engine)
    try:
        write(engine, "t", [payment_event(f"pay-{i}", i) for i in range(10)])
        claimed = store.claim_fenced(fence, 100, datetime.now(UTC))
        assert len(claimed) == 10
        _terminate(pg_url, old.backend_pid)
        new = make_leases()
        assert new.refresh() == frozenset(range(SHARDS))
        new_fence = new.fence
        assert new_fence is not None
        assert all(new_fence.generations[s] == fence.generations[s] + 1 for s in range(SHARDS))
        with pytest.raises(LeaseLostError):
            store.resolve_fenced(fence, [Published(r.id, 0, i) for i, r in enumerate(claimed)], [], [])
        assert len(store.claim_fenced(new_fence, 100, datetime.now(UTC))) == 10  # still pending
        assert store.claim_fenced(fence, 100, datetime.now(UTC)) == []
    finally:
        engine.dispose()


def test_rebalancing_releases_before_unlocking_so_the_releaser_is_fenced(
    make_leases: Callable[..., PostgresShardLeases],
) -> None:
    """A shard given up to a newcomer is no longer in the first instance's fence, and its old fence
    for that shard no longer holds."""
    first = make_leases()
    first.refresh()
    before = first.fence
    assert before is not None
    second = make_leases()
    refresh_all([first, second])
    after = first.fence
    assert after is not None
    assert second.fence is not None
    assert after.shards == first.owned
    assert second.fence.shards == second.owned
    assert not after.shards & second.fence.shards
