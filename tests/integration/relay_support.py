"""Helpers for the relay's integration tests: migrated databases, real events written through the real
OutboxPublisher, relays built like production, and order/duplicate checks over what kcat saw."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from payment_events.events import PaymentSucceeded
from payment_events.events.codec import EncodedEvent, encode
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox.migrate import upgrade
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sqlite import configure_sqlite
from payment_events.outbox.table import outbox_table
from payment_events.relay import Relay, RelayConfig
from payment_events.service import build_relay

ROOT = Path(__file__).resolve().parents[2]


def migrated_engine(url: str) -> sa.Engine:
    """Run the migrations on ``url`` and return an engine for writing (the caller disposes it)."""
    upgrade(url)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    return engine


def payment_event(key: str, seq: int) -> PaymentSucceeded:
    """A real PaymentSucceeded whose partition key is ``key``; ``seq`` goes into the order id."""
    return PaymentSucceeded(
        payment_id=key,
        order_id=f"order-{seq}",
        amount_paid=1000 + seq,
        currency="EUR",
        payment_gateway="stripe",
        processed_at=datetime.now(UTC),
    )


def write(engine: sa.Engine, topic: str, events: Iterable[PaymentSucceeded | EncodedEvent]) -> list[str]:
    """Write events in one committed transaction through OutboxPublisher; return their event ids."""
    encoded = [e if isinstance(e, EncodedEvent) else encode(e) for e in events]
    with engine.begin() as conn:
        OutboxPublisher(conn, router=TopicRouter(topic)).publish_encoded(encoded)
    return [e.event_id for e in encoded]


def oversized_event(key: str, size: int = 1_500_000) -> EncodedEvent:
    """An encoded event bigger than the broker's default 1 MB limit (a poison message)."""
    event = encode(payment_event(key, 0))
    return EncodedEvent(
        event_id=str(uuid.uuid4()),
        event_type=event.event_type,
        schema_version=event.schema_version,
        key=event.key,
        value=b'{"pad":"' + b"x" * size + b'"}',
        headers=(*((n, v) for n, v in event.headers if n != "ce_id"), ("ce_id", b"poison")),
        occurred_at=event.occurred_at,
    )


def rows(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every outbox row, as dicts, in id order."""
    t = outbox_table
    with engine.connect() as conn:
        result = conn.execute(
            sa.select(
                t.c.id, t.c.event_id, t.c.key, t.c.state, t.c.attempts, t.c.last_error,
                t.c.kafka_partition, t.c.kafka_offset, t.c.topic,
            ).order_by(t.c.id)
        )
        return [dict(r._mapping) for r in result]


def state_counts(engine: sa.Engine) -> dict[str, int]:
    """How many rows are in each state."""
    t = outbox_table
    with engine.connect() as conn:
        result = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state))
        return {str(row[0]): int(row[1]) for row in result}


def relay_config(**overrides: Any) -> RelayConfig:
    """A relay configuration suited to tests: small batches, fast polling, quick failure reports."""
    options: dict[str, Any] = {
        "batch_size": 500,
        "poll_interval_seconds": 0.2,
        "lease_refresh_seconds": 0.5,
        "delivery_timeout_seconds": 20.0,
        "backoff_base_seconds": 0.05,
        "backoff_cap_seconds": 1.0,
    }
    options.update(overrides)
    return RelayConfig(**options)


def make_relay(url: str, bootstrap: str, **overrides: Any) -> Relay:
    """A relay built exactly like ``payment-events relay`` builds it."""
    return build_relay(url, bootstrap, relay_config(**overrides))


class RelayThread:
    """Runs ``relay.run()`` in a thread; ``stop()`` stops it gracefully and joins."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.relay.run()
        except BaseException as exc:  # noqa: BLE001 - reported by stop() in the test's thread
            self.error = exc

    def stop(self, timeout: float = 60.0) -> None:
        self.relay.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "relay did not stop"
        assert self.error is None, repr(self.error)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class OrderReport:
    """What kcat saw compared with what was written."""

    missing: list[str]
    duplicates: int
    order_violations: list[str]


def check_order(messages: Sequence[Any], expected_by_key: dict[str, list[str]]) -> OrderReport:
    """Per key, the first delivery of each event must follow the write order; count duplicates."""
    first_seen: dict[str, list[str]] = {}
    seen: set[str] = set()
    duplicates = 0
    for message in sorted(messages, key=lambda m: (m.partition, m.offset)):
        event_id = message.headers["ce_id"].decode()
        if event_id in seen:
            duplicates += 1
            continue
        seen.add(event_id)
        first_seen.setdefault((message.key or b"").decode(), []).append(event_id)
    missing = [e for ids in expected_by_key.values() for e in ids if e not in seen]
    violations = []
    for key, ids in expected_by_key.items():
        wanted = set(ids)
        if [e for e in first_seen.get(key, []) if e in wanted] != ids:
            violations.append(key)
    return OrderReport(missing, duplicates, violations)


def start_relay_process(url: str, bootstrap: str, *extra: str) -> subprocess.Popen[bytes]:
    """``python -m payment_events.service`` in its own process (so it can be SIGKILLed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [
            sys.executable, "-m", "payment_events.service", "--database-url", url,
            "--bootstrap-servers", bootstrap, "--poll-interval", "0.2", "--lease-refresh", "0.5",
            "--backoff-cap", "1", *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
