"""payment-events: durable, versioned payment domain events on Apache Kafka."""

from __future__ import annotations

__all__: list[str] = []
