"""``run_relay``: build the store, leases, producer and waker from URLs and run a relay until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

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
    on_ready: Callable[[Relay], None] | None = None,
) -> None:
    """Run a relay over the outbox at ``database_url`` until SIGTERM/SIGINT (or ``Relay.stop()``).

    PostgreSQL: shards are shared with other relay instances through advisory locks, and the relay
    wakes on ``LISTEN``. SQLite: one relay owns every shard and polls. ``on_ready`` receives the relay
    before it starts (to keep a handle for ``stop()``, e.g. from a health server). Returns after a
    graceful stop, with every connection closed. A missing outbox table raises
    ``MigrationRequiredError`` before anything starts.
    """
    relay = build_relay(database_url, bootstrap_servers, config, observer=observer)
    if on_ready is not None:
        on_ready(relay)
    with _signals(relay, enabled=install_signal_handlers):
        relay.run()


def build_relay(
    database_url: str,
    bootstrap_servers: str,
    config: RelayConfig | None = None,
    *,
    observer: RelayObserver | None = None,
) -> Relay:
    """A ready-to-run :class:`Relay` with the SQL store, shard leases, Kafka producer and waker.

    Everything it opens (engine, lease connection, producer, LISTEN connection) is closed when
    ``Relay.run`` returns (or by ``Relay.close()`` for a relay that is never run).
    """
    from sqlalchemy.engine import make_url

    from payment_events.outbox.leases import AllShards, PostgresShardLeases
    from payment_events.outbox.ports import ShardLeases
    from payment_events.outbox.sql import SqlOutboxStore
    from payment_events.relay.kafka import KafkaBatchProducer, producer_config
    from payment_events.relay.ports import Waker
    from payment_events.relay.wakeup import PostgresNotifyWaker, SleepWaker

    config = config or RelayConfig()
    backend = make_url(database_url).get_backend_name()
    closers: list[Callable[[], object]] = []
    store = SqlOutboxStore.from_url(database_url, shard_count=config.shard_count)
    closers.append(store.close)
    leases: ShardLeases
    waker: Waker = SleepWaker()
    try:
        if backend == "postgresql":
            pg_leases = PostgresShardLeases(database_url, shard_count=config.shard_count)
            closers.append(pg_leases.close)
            leases = pg_leases
        else:
            leases = AllShards(config.shard_count)
        producer = KafkaBatchProducer(producer_config(bootstrap_servers, config.producer_overrides))
        if backend == "postgresql" and config.listen:
            waker = PostgresNotifyWaker(database_url, config.notify_channel)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    log.info(
        "relay configured",
        extra={"event": "relay.configured", "backend": backend, "shard_count": config.shard_count},
    )
    return Relay(
        store, producer, config, leases=leases, observer=observer, waker=waker, closers=closers[::-1]
    )


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
