"""The relay reports what happens through an observer, so metrics, alerts and logs stay out of the core.

The relay calls these methods from its one loop thread; implementations must be cheap and must not raise
(a failing observer must never stop publishing). Labels passed here are low-cardinality: event type, topic
and a short reason code, never an id or a payload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

_log = logging.getLogger("payment_events.relay.observer")


class RelayObserver(Protocol):
    """What the relay tells the outside world. Every method has a no-op in :class:`NullObserver`."""

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Events of one type were acknowledged by the broker and marked published (one latency each)."""

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Events failed with a transient error and were scheduled for another attempt."""

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Events were moved to the dead-letter state (and topic) for ``reason``."""

    def batch(self, size: int) -> None:
        """The relay claimed and produced a batch of ``size`` rows."""

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """The outbox holds ``pending`` unpublished rows; the oldest waited this long since commit."""

    def dead_rows(self, count: int) -> None:
        """The outbox holds ``count`` rows in the dead state (reported with the backlog)."""

    def shards_owned(self, count: int) -> None:
        """This relay instance now owns ``count`` shards."""

    def broker_reachable(self, reachable: bool) -> None:
        """The producer could (or could not) reach the brokers."""

    def database_reachable(self, reachable: bool) -> None:
        """The relay's database connection works (or not)."""


class NullObserver:
    """An observer that ignores everything: the default when no metrics are wanted."""

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Ignore."""

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Ignore."""

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Ignore."""

    def batch(self, size: int) -> None:
        """Ignore."""

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Ignore."""

    def dead_rows(self, count: int) -> None:
        """Ignore."""

    def shards_owned(self, count: int) -> None:
        """Ignore."""

    def broker_reachable(self, reachable: bool) -> None:
        """Ignore."""

    def database_reachable(self, reachable: bool) -> None:
        """Ignore."""


class FanOutObserver:
    """Forwards every report to several observers; one failing observer never affects the others."""

    def __init__(self, *observers: RelayObserver) -> None:
        self.observers: tuple[RelayObserver, ...] = observers

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.published, event_type, topic, commit_to_ack_seconds)

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.retried, event_type, topic, reason, count)

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.dead_lettered, event_type, topic, reason, count)

    def batch(self, size: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.batch, size)

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.backlog, pending, oldest_pending_age_seconds)

    def dead_rows(self, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.dead_rows, count)

    def shards_owned(self, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.shards_owned, count)

    def broker_reachable(self, reachable: bool) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.broker_reachable, reachable)

    def database_reachable(self, reachable: bool) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.database_reachable, reachable)


def _safe(method: Callable[..., object], *args: object) -> None:
    try:
        method(*args)
    except Exception:  # noqa: BLE001 -- an observer must never stop publishing
        _log.warning("observer.failed", extra={"observer_method": getattr(method, "__qualname__", "?")})
