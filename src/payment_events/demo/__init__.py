"""The demo behind ``payment-events demo`` (``make run``): the main job, end to end, in one command.

A small payment service (:mod:`payment_events.demo.service`: payment processing that succeeds, fails or
asks for 3-D Secure, captures, refunds, payment methods and a webhook handler) changes its own rows and
writes each event in the *same transaction* through the outbox publisher. The relay runs in-process and
publishes to Kafka; a plain confluent-kafka consumer (:mod:`payment_events.demo.consumer`) reads the topic
back, and :mod:`payment_events.demo.run` prints a table: events per type, delivered, duplicates, per-key
order, and end-to-end latency (commit to consumed) p50/p99.

Defaults: the embedded SQLite outbox (``sqlite:///payment_events.db``) and the local broker from
``scripts/services up`` (127.0.0.1:19092). It upgrades the schema and ensures the topics itself.
"""

from __future__ import annotations

from payment_events.demo.run import DemoReport, run_demo

__all__ = ["DemoReport", "run_demo"]
