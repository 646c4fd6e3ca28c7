"""The relay loop after a fenced mark: a LeaseLostError makes it refresh its leases before claiming."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from payment_events.errors import LeaseLostError
from payment_events.outbox.ports import Dead, Published, Retry
from payment_events.relay import Relay, RelayConfig
from tests.unit.relay.fakes import FakeClock, FakeLeases, FakeProducer, FakeStore


class LosingStore(FakeStore):
    """A store whose first resolve reports that a shard was taken by another relay."""

    lost_once = False

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        if not self.lost_once:
            self.lost_once = True
            raise LeaseLostError("shard taken by another relay")
        super().resolve(published, retries, dead)


def test_a_lease_lost_while_marking_forces_a_lease_refresh_at_once() -> None:
    """With an hour between lease refreshes, a LeaseLostError still triggers one before the next claim."""
    clock = FakeClock()
    store = LosingStore(clock)
    store.add(b"\x01")
    leases = FakeLeases(frozenset({0}))
    config = RelayConfig(
        batch_size=8,
        poll_interval_seconds=0.01,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.02,
        lease_refresh_seconds=3600.0,
        overlap_marks=False,
    )
    relay = Relay(store, FakeProducer(), config, leases=leases, clock=clock)
    thread = threading.Thread(target=relay.run)
    thread.start()
    deadline = time.monotonic() + 10
    while leases.refreshes < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    relay.stop()
    thread.join(timeout=10)
    assert store.lost_once
    assert leases.refreshes >= 2
