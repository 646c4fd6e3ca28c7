"""What one event puts into the outbox table, whichever database layer inserts it (SQLAlchemy, Django).

Pure: no database imports, so the Django publisher does not load SQLAlchemy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from payment_events.outbox.headers import dump_headers
from payment_events.outbox.sharding import shard_for

if TYPE_CHECKING:
    from payment_events.events.codec import EncodedEvent

__all__ = [
    "DEFAULT_TOPIC",
    "INSERT_COLUMNS",
    "KEY_LOCK_NAMESPACE",
    "NOTIFY_CHANNEL",
    "NewRow",
    "key_lock_id",
    "outbox_rows",
    "resolve_router",
    "sqlite_text",
]

DEFAULT_TOPIC = "payment.events"
"""The aggregate topic every event goes to unless routed elsewhere (one home; the router and the
publishers use it)."""
NOTIFY_CHANNEL = "payment_events_outbox"
"""The PostgreSQL LISTEN/NOTIFY channel publishers notify on commit and the relay LISTENs on."""

KEY_LOCK_NAMESPACE = 0x7065_6B79  # "peky"; the relays' shard leases use another first key
"""The first key of the transaction-scoped advisory locks that serialise one key's writers (PostgreSQL):
per key, the outbox id order is then the commit order (see :mod:`payment_events.outbox.publisher`)."""


def key_lock_id(key: bytes) -> int:
    """The second key of ``key``'s commit-order lock: a stable signed 32-bit hash (a collision only
    makes two keys' writers wait for each other, it never breaks order)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "big", signed=True)


INSERT_COLUMNS = (
    "event_id",
    "event_type",
    "schema_version",
    "topic",
    "key",
    "payload",
    "headers",
    "shard",
    "next_attempt_at",
    "created_at",
)
"""The columns a publisher fills; the others take their defaults (``state``, ``attempts``)."""


def _default_route(event_type: str) -> str:
    return DEFAULT_TOPIC


def resolve_router(router: Callable[[str], str] | Any | None) -> Callable[[str], str]:
    """The ``(event_type) -> topic`` function for a callable, a ``TopicRouter`` or ``None`` (default)."""
    topic_for = getattr(router, "topic_for", None)  # a TopicRouter
    route = topic_for if callable(topic_for) else router
    if route is None:
        return _default_route
    if not callable(route):
        raise TypeError("router must be a callable (event_type) -> topic or a TopicRouter")
    return route


@dataclass(frozen=True, slots=True)
class NewRow:
    """The values one event puts into the outbox (besides the two timestamps, which the writer adds)."""

    event_id: str
    event_type: str
    schema_version: int
    topic: str
    key: bytes
    payload: bytes
    headers: str
    shard: int


def outbox_rows(
    encoded: Sequence[EncodedEvent], route: Callable[[str], str], shard_count: int
) -> list[NewRow]:
    """The outbox rows for ``encoded``, in order (topic by ``route``, shard by key)."""
    return [
        NewRow(
            item.event_id,
            item.event_type,
            item.schema_version,
            route(item.event_type),
            item.key,
            item.value,
            dump_headers(item.headers),
            shard_for(item.key, shard_count),
        )
        for item in encoded
    ]


def sqlite_text(value: datetime) -> str:
    """``value`` as the fixed-width UTC text the outbox stores on SQLite (comparable as text)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("outbox timestamps must be timezone-aware (use datetime.now(UTC))")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
