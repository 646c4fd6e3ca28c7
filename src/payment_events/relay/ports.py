"""The relay's own I/O ports: a batch producer (Kafka) and a waker (PostgreSQL LISTEN or a plain timer).

The outbox store and shard leases ports live in :mod:`payment_events.outbox.ports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from payment_events.relay.delivery import Outcome


class Producible(Protocol):
    """Anything with the four fields a Kafka message needs (an ``OutboxRecord`` is one)."""

    @property
    def topic(self) -> str:
        """The topic to produce to."""
        ...

    @property
    def key(self) -> bytes:
        """The partition key."""
        ...

    @property
    def payload(self) -> bytes:
        """The message value."""
        ...

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]:
        """The message headers."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message built by the relay itself (a dead-letter copy), shaped like an outbox record."""

    topic: str
    key: bytes
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]


class BatchProducer(Protocol):
    """Produces a batch and returns one outcome per message, in the same order."""

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        """Produce every message, wait up to ``timeout`` seconds for all delivery reports, return them.

        An outcome is :class:`~payment_events.relay.decisions.Delivered`, a
        :class:`~payment_events.relay.decisions.DeliveryError`, or ``None`` when no report arrived.
        Never raises for a single message's failure.
        """
        ...

    def close(self, timeout: float) -> None:
        """Deliver what is still queued (up to ``timeout`` seconds) and release the client."""
        ...


class Waker(Protocol):
    """Lets the relay sleep until new rows were committed, or a timeout passed."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if woken by a notification (new rows), False on timeout."""
        ...

    def close(self) -> None:
        """Release the connection, if any."""
        ...
