"""The shard-leases port's contract, run against PostgreSQL's advisory-lock leases and the in-memory
leases users get: instances share the shards fairly and disjointly, and a leaving instance's shards are
taken over."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from payment_events.outbox import migrate
from payment_events.outbox.leases import PostgresShardLeases
from payment_events.outbox.ports import ShardLeases
from payment_events.testing import InMemoryLeaseTable, InMemoryShardLeases

SHARDS = 16

Factory = Callable[[str], ShardLeases]


@pytest.fixture(params=["in-memory", "postgresql"])
def leases_for(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """``leases_for(name)`` makes one relay instance's leases over shared state."""
    if request.param == "in-memory":
        table = InMemoryLeaseTable(SHARDS)
        yield lambda name: InMemoryShardLeases(table, name)
        return
    url: str = request.getfixturevalue("pg_url")
    migrate.upgrade(url)  # the leases write their generations into the lease table (fencing)
    made: list[PostgresShardLeases] = []

    def make(name: str) -> ShardLeases:
        made.append(PostgresShardLeases(url, shard_count=SHARDS))
        return made[-1]

    yield make
    for leases in made:
        leases.close()


def _settle(*instances: ShardLeases, rounds: int = 4) -> list[frozenset[int]]:
    owned: list[frozenset[int]] = []
    for _ in range(rounds):
        owned = [leases.refresh() for leases in instances]
    return owned


def test_one_instance_owns_every_shard(leases_for: Factory) -> None:
    """Alone, an instance owns all shards after its refresh."""
    assert _settle(leases_for("a"))[0] == frozenset(range(SHARDS))


def test_two_instances_split_the_shards_fairly_and_disjointly(leases_for: Factory) -> None:
    """Two instances end with disjoint halves that together cover every shard."""
    a, b = leases_for("a"), leases_for("b")
    owned_a, owned_b = _settle(a, b)
    assert not owned_a & owned_b
    assert owned_a | owned_b == frozenset(range(SHARDS))
    assert {len(owned_a), len(owned_b)} == {SHARDS // 2}


def test_a_leaving_instance_s_shards_are_taken_over(leases_for: Factory) -> None:
    """After one instance releases everything, the other owns every shard at its next refreshes."""
    a, b = leases_for("a"), leases_for("b")
    _settle(a, b)
    a.release_all()
    assert _settle(b)[0] == frozenset(range(SHARDS))
