"""Key sharding: stable across processes and versions, in range, spread evenly."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_events.outbox.sharding import (
    DEFAULT_SHARD_COUNT,
    MAX_SHARD_COUNT,
    shard_for,
    validate_shard_count,
)


def test_known_keys_map_to_fixed_shards() -> None:
    """The mapping is CRC-32 modulo the count: fixed values that must never change between releases."""
    assert shard_for(b"pay_1") == 0x8BB795CA % 64 == 10
    assert [shard_for(k) for k in (b"", b"pay_1", b"pay_01HQZ8K2", b"user-42")] == [
        0,
        zlib.crc32(b"pay_1") % 64,
        zlib.crc32(b"pay_01HQZ8K2") % 64,
        zlib.crc32(b"user-42") % 64,
    ]
    assert shard_for(b"123456789", 1 << 32) == 0xCBF43926  # the CRC-32 check value (ISO 3309)


def test_default_shard_count_is_64() -> None:
    """The documented default is 64 shards."""
    assert DEFAULT_SHARD_COUNT == 64
    assert shard_for(b"k") == shard_for(b"k", 64)


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=MAX_SHARD_COUNT))
def test_shard_is_in_range_and_deterministic(key: bytes, count: int) -> None:
    """Every key maps to one shard in [0, count), the same every time."""
    shard = shard_for(key, count)
    assert 0 <= shard < count
    assert shard_for(bytes(key), count) == shard


def test_keys_spread_evenly_over_shards() -> None:
    """Ten thousand payment ids fill every one of 64 shards within a factor of two of the mean."""
    counts = Counter(shard_for(f"pay_{i}".encode()) for i in range(10_000))
    assert set(counts) == set(range(64))
    mean = 10_000 / 64
    assert all(mean / 2 < n < mean * 2 for n in counts.values())


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARD_COUNT + 1])
def test_out_of_range_shard_counts_are_refused(bad: int) -> None:
    """A shard count outside 1..32767 is a ValueError naming the limits."""
    with pytest.raises(ValueError, match="between 1 and"):
        validate_shard_count(bad)


@pytest.mark.parametrize("bad", [True, 1.0, "64"])
def test_non_integer_shard_counts_are_refused(bad: object) -> None:
    """A shard count must be a real int (not a bool, float or string)."""
    with pytest.raises(TypeError):
        validate_shard_count(bad)  # type: ignore[arg-type]
