"""Shard leases on the real PostgreSQL: disjoint ownership, full coverage, takeover of a dead instance."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text

from payment_events.outbox.leases import AllShards, PostgresShardLeases

SHARDS = 64


@pytest.fixture
def make_leases(pg_url: str) -> Iterator[Callable[..., PostgresShardLeases]]:
    """Factory of lease holders (each its own connection), all closed after the test."""
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
