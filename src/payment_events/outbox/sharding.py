"""Which shard a key belongs to: a stable hash of the key bytes, the same in every process and version.

Keys (a payment id, a refund id, ...) hash into a fixed number of shards. A relay instance owns whole
shards, so every event of one key is produced by one instance at a time, in id order. The mapping must
never change while events are pending: CRC-32 of the exact key bytes is fixed by ISO 3309 and does not
depend on ``PYTHONHASHSEED``, the platform or the Python version.

Changing the shard count re-maps keys to other shards. Do it only with an empty backlog: stop the
writers (or point them at the new count only after the relays drained every pending row), then restart
the relays with the new count. Otherwise two relays may briefly publish the same key concurrently.
"""

from __future__ import annotations

import zlib

DEFAULT_SHARD_COUNT = 64
"""The default number of shards: enough for 64 relay instances, small enough to scan cheaply."""

MAX_SHARD_COUNT = 32767
"""Shards are stored in a SMALLINT-sized column and used as advisory-lock ids."""


def validate_shard_count(shard_count: int) -> int:
    """Return ``shard_count`` if it is a usable shard count (1..32767), else raise ``ValueError``."""
    if isinstance(shard_count, bool) or not isinstance(shard_count, int):
        raise TypeError(f"shard_count must be an int, got {type(shard_count).__name__}")
    if not 1 <= shard_count <= MAX_SHARD_COUNT:
        raise ValueError(f"shard_count must be between 1 and {MAX_SHARD_COUNT}, got {shard_count}")
    return shard_count


def shard_for(key: bytes, shard_count: int = DEFAULT_SHARD_COUNT) -> int:
    """The shard (``0 <= shard < shard_count``) that ``key`` belongs to; stable across processes."""
    return zlib.crc32(key) % shard_count
