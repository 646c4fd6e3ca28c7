"""Wiring of the exactly-once delivery mode (``RelayConfig.delivery = "exactly-once"``), used by the
composition root (:func:`payment_events.service.build_relay`).

It replaces the relay's producer by a :class:`~payment_events.kafka.transactions.TransactionalBatchProducer`
whose ``transactional.id`` is recorded with every shard the relay takes, wraps the leases in
:class:`~payment_events.relay.exactly_once.ExactlyOnceLeases` (fence the previous owner, reconcile) and
the store in :class:`~payment_events.relay.exactly_once.ExactlyOnceStore`. See docs/exactly-once.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from payment_events.errors import ConfigurationError
from payment_events.kafka.transactions import (
    TransactionalBatchProducer,
    fence_transactional_id,
    find_committed,
)
from payment_events.outbox.fencing import FencedOutboxStore
from payment_events.outbox.ports import OutboxStore, ShardLeases
from payment_events.relay.exactly_once import ExactlyOnceLeases, ExactlyOnceStore, TakeoverLeases

__all__ = ["compose"]


def compose(
    store: OutboxStore,
    leases: ShardLeases,
    producer_settings: Mapping[str, Any],
    transactional_id: str,
    *,
    reconcile_timeout: float = 60.0,
) -> tuple[ExactlyOnceStore, ExactlyOnceLeases, TransactionalBatchProducer]:
    """The store, leases and producer of an exactly-once relay. ``store`` must be a fenced store and
    ``leases`` fenced leases built with ``transactional_id`` (as :func:`payment_events.service.build_relay`
    makes them)."""
    if not isinstance(store, FencedOutboxStore) or not hasattr(leases, "pop_takeovers"):
        raise ConfigurationError(
            "relay option delivery=exactly-once needs a store and leases that check lease generations "
            "(the SQL outbox store); use at-least-once with other stores"
        )
    producer = TransactionalBatchProducer(producer_settings, transactional_id)

    def fence(previous: str) -> None:
        fence_transactional_id(producer_settings, previous)

    def committed(wanted: Mapping[str, tuple[int, str]], since: datetime) -> dict[int, tuple[int, int]]:
        return find_committed(producer_settings, wanted, since, timeout=reconcile_timeout)

    takeover_leases: TakeoverLeases = leases  # type: ignore[assignment]  # checked above
    eo_leases = ExactlyOnceLeases(
        takeover_leases,
        store.store,
        own_transactional_id=transactional_id,
        fence_producer=fence,
        find_committed=committed,
    )
    return ExactlyOnceStore(store.store, eo_leases, producer), eo_leases, producer
