"""In-memory fakes of every port, for your own tests: no database, no broker, no SQLAlchemy imported.

* the outbox (:mod:`.outbox`): ``InMemoryOutboxStore``, ``InMemoryPublisher``, ``InMemoryTransaction``;
* the relay's other ports (:mod:`.relay`): ``InMemoryProducer``, ``InMemoryShardLeases`` over an
  ``InMemoryLeaseTable``, ``ManualClock``.

Each fake passes the same contract suite as the real adapter (``tests/contracts/``). They are never a
substitute for PostgreSQL or Kafka in payment-events' own integration tests.
"""

from payment_events.testing.outbox import InMemoryOutboxStore, InMemoryPublisher, InMemoryTransaction
from payment_events.testing.relay import (
    InMemoryLeaseTable,
    InMemoryProducer,
    InMemoryShardLeases,
    ManualClock,
    ProducedMessage,
)

__all__ = [
    "InMemoryLeaseTable",
    "InMemoryOutboxStore",
    "InMemoryProducer",
    "InMemoryPublisher",
    "InMemoryShardLeases",
    "InMemoryTransaction",
    "ManualClock",
    "ProducedMessage",
]
