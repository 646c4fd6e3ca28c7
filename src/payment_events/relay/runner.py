"""``run_relay``: build the store, leases, producer and waker from URLs and run a relay until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from payment_events.observer import RelayObserver
from payment_events.relay.loop import Relay
from payment_events.relay.settings import RelayConfig

log = logging.getLogger("payment_events.relay.runner")


def run_relay(
    database_url: str,
    bootstrap_servers: str,
    config: RelayConfig | None = None,
    *,
    observer: RelayObserver | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run a relay over the outbox at ``database_url`` until SIGTERM/SIGINT (or ``Relay.stop()``).

    PostgreSQL: shards are shared with other relay instances through advisory locks, and the relay
    wakes on ``LISTEN``. SQLite: one relay owns every shard and polls. Returns after a graceful stop.
    """
    relay = build_relay(database_url, bootstrap_servers, config, observer=observer)
    with _signals(relay, enabled=install_signal_handlers):
        relay.run()


def build_relay(
    database_url: str,
    bootstrap_servers: str,
    config: RelayConfig | None = None,
    *,
    observer: RelayObserver | None = None,
) -> Relay:
    """A ready-to-run :class:`Relay` with the SQL store, shard leases, Kafka producer and waker."""
    import importlib

    from sqlalchemy.engine import make_url

    from payment_events.relay.kafka import KafkaBatchProducer, producer_config
    from payment_events.relay.ports import Waker
    from payment_events.relay.wakeup import PostgresNotifyWaker, SleepWaker

    # The SQL adapters are imported lazily: `--help` stays fast and SQLite users never load psycopg.
    sql: Any = importlib.import_module("payment_events.outbox.sql")
    config = config or RelayConfig()
    backend = make_url(database_url).get_backend_name()
    store: Any = sql.SqlOutboxStore.from_url(database_url)
    leases: Any = None
    waker: Waker = SleepWaker()
    if backend == "postgresql":
        leases = sql.PostgresShardLeases(database_url, shard_count=config.shard_count)
        if config.listen:
            waker = PostgresNotifyWaker(database_url, config.notify_channel)
    producer = KafkaBatchProducer(producer_config(bootstrap_servers, config.producer_overrides))
    return Relay(store, producer, config, leases=leases, observer=observer, waker=waker)


@contextmanager
def _signals(relay: Relay, *, enabled: bool) -> Iterator[None]:
    """SIGTERM and SIGINT call ``relay.stop()`` (only a flag is set: signal-safe)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        relay.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
