"""The relay: publishes committed outbox rows to Kafka, at least once, in per-key order.

``Relay`` (the loop) and ``RelayConfig`` (every tunable); building one from URLs and running it until
SIGTERM is :mod:`payment_events.service` (``run_relay``). The decisions it takes are pure functions in
:mod:`payment_events.relay.decisions`; the Kafka adapter is :mod:`payment_events.kafka.producer`.
"""

from __future__ import annotations

from payment_events.outbox.inserts import NOTIFY_CHANNEL
from payment_events.relay.loop import CycleReport, Relay
from payment_events.relay.settings import DEFAULT_DLQ_TOPIC, RelayConfig

__all__ = ["DEFAULT_DLQ_TOPIC", "NOTIFY_CHANNEL", "CycleReport", "Relay", "RelayConfig"]
