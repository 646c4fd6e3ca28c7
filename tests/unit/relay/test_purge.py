"""The retention purge keeps up (issue 11, defect 7): it deletes until caught up, bounded by a time
budget, not by a fixed small number of batches."""

from __future__ import annotations

import time
from datetime import datetime

from payment_events.relay import Relay, RelayConfig
from tests.unit.relay.fakes import FakeClock, FakeProducer, FakeStore


class CountingStore(FakeStore):
    """A fake outbox with ``n`` old published rows, counted as they are purged."""

    def __init__(self, clock: FakeClock, rows: int, seconds_per_batch: float = 0.0) -> None:
        super().__init__(clock)
        self.left = rows
        self.calls = 0
        self.seconds_per_batch = seconds_per_batch

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        self.calls += 1
        time.sleep(self.seconds_per_batch)
        deleted = min(batch_size, self.left)
        self.left -= deleted
        return deleted


def test_purge_runs_until_caught_up_with_the_default_settings() -> None:
    """A backlog of 50 purge batches is deleted in one run (a fixed 20 batches could not keep up)."""
    clock = FakeClock()
    store = CountingStore(clock, 50 * 1000)
    relay = Relay(store, FakeProducer(), RelayConfig(retention_seconds=0), clock=clock)
    assert relay.purge() == 50_000
    assert store.left == 0


def test_purge_stops_at_its_time_budget_and_the_next_run_continues() -> None:
    """A run stops once the budget is spent (publishing resumes); what is left is purged later."""
    clock = FakeClock()
    store = CountingStore(clock, 10**9, seconds_per_batch=0.002)
    config = RelayConfig(retention_seconds=0, purge_budget_seconds=0.1, purge_max_batches=10**9)
    relay = Relay(store, FakeProducer(), config, clock=clock)
    relay.purge()
    assert 0 < store.calls < 1000  # stopped by the budget, not by running out of rows or batches
    calls = store.calls
    relay.purge()
    assert store.calls > calls
