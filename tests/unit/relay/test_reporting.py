"""What the relay reports about a resolved batch: dead letters summarised per cycle, not per row."""

from __future__ import annotations

import logging

import pytest

from tests.unit.relay.fakes import FakeClock, FakeProducer, FakeStore
from tests.unit.relay.test_loop import make_relay


def test_dead_lettering_a_thousand_rows_writes_a_line_per_cycle_not_per_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,000 poison rows in batches of 100 write one relay.dead_lettered WARNING per cycle (with the
    count by reason), not 1,000 lines; the counts add up to every row."""
    clock = FakeClock()
    store = FakeStore(clock)
    for n in range(1000):
        store.add(f"k{n}".encode(), payload=b"x" * 100)
    producer = FakeProducer(lambda m: "ok" if m.topic == "payment.events.dlq" else "permanent")
    relay, _ = make_relay(store, producer, clock, batch_size=100)
    caplog.set_level(logging.INFO)
    cycles = 0
    while relay.run_once().claimed:
        cycles += 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert cycles == 10
    assert store.states() == {"dead": 1000}
    assert len(warnings) == cycles
    assert {getattr(r, "event", None) for r in warnings} == {"relay.dead_lettered"}
    assert sum(getattr(r, "count", 0) for r in warnings) == 1000
    assert all(getattr(r, "reasons", None) == {"MSG_SIZE_TOO_LARGE": 100} for r in warnings)
