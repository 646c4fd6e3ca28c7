"""UUIDv7 event ids: layout per RFC 9562, embedded time, strict monotonicity within a process."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from payment_events.events.ids import is_uuid7, uuid7, uuid7_time


def test_uuid7_has_version_and_variant() -> None:
    """A generated id is version 7 with the RFC variant."""
    value = uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert is_uuid7(value)


def test_uuid7_embeds_the_current_time() -> None:
    """The id's timestamp is the creation time, to the millisecond."""
    before = datetime.now(UTC) - timedelta(milliseconds=2)
    value = uuid7()
    after = datetime.now(UTC) + timedelta(milliseconds=2)
    assert before <= uuid7_time(value) <= after


def test_uuid7_is_strictly_increasing() -> None:
    """Ids generated in a burst (many per millisecond) are strictly increasing."""
    values = [uuid7() for _ in range(20_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


def test_uuid7_stays_monotonic_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that goes backwards does not make ids go backwards."""
    first = uuid7()
    monkeypatch.setattr(time, "time_ns", lambda: 1_000_000_000)  # 1970: far in the past
    later = [uuid7() for _ in range(5000)]  # more than the 12-bit counter holds
    assert [first, *later] == sorted([first, *later])


def test_uuid7_is_monotonic_across_threads() -> None:
    """Ids from several threads are all distinct (the generator state is locked)."""
    results: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def work(out: list[uuid.UUID]) -> None:
        out.extend(uuid7() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for out in results for value in out]
    assert len(set(everything)) == len(everything)
    for out in results:
        assert out == sorted(out)


def test_uuid4_is_not_a_uuid7() -> None:
    """Other UUID versions are recognised as not v7 and carry no timestamp."""
    value = uuid.uuid4()
    assert not is_uuid7(value)
    with pytest.raises(ValueError, match="not a version-7 UUID"):
        uuid7_time(value)
