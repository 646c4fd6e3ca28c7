"""The relay: publishes committed outbox rows to Kafka, at least once, in per-key order.

``Relay`` (the loop), ``RelayConfig`` (every tunable), ``run_relay`` (build everything from a database
URL and bootstrap servers, run until SIGTERM). The decisions it takes are pure functions in
:mod:`payment_events.relay.decisions`; the Kafka adapter is :mod:`payment_events.kafka.producer`.
"""

from __future__ import annotations

from payment_events.relay.loop import CycleReport, Relay
from payment_events.relay.settings import DEFAULT_DLQ_TOPIC, NOTIFY_CHANNEL, RelayConfig
from payment_events.service import run_relay

__all__ = ["DEFAULT_DLQ_TOPIC", "NOTIFY_CHANNEL", "CycleReport", "Relay", "RelayConfig", "run_relay"]
