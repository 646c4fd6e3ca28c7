"""The clock's contract (``Callable[[], datetime]``), for the default clock and the manual one users
get: aware UTC instants that never go back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from payment_events.outbox.ports import utc_now
from payment_events.testing import ManualClock


def _manual() -> Callable[[], datetime]:
    clock = ManualClock()

    def tick() -> datetime:
        clock.advance(0.001)
        return clock()

    return tick


@pytest.mark.parametrize("make", [lambda: utc_now, _manual], ids=["utc_now", "manual"])
def test_instants_are_aware_utc_and_never_go_back(make: Callable[[], Callable[[], datetime]]) -> None:
    """Every reading is timezone-aware UTC and not earlier than the one before."""
    clock = make()
    readings = [clock() for _ in range(1000)]
    assert all(r.tzinfo is not None and r.utcoffset() == UTC.utcoffset(None) for r in readings)
    assert readings == sorted(readings)


def test_the_manual_clock_refuses_to_go_back_or_to_start_naive() -> None:
    """A manual clock moves forward only and starts from an aware instant."""
    clock = ManualClock()
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))  # noqa: DTZ001 - the naive start under test
