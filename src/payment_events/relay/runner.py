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

    from payment_events.dburl import refuse_async_url
    from payment_events.outbox.leases import AllShards, PostgresShardLeases
    from payment_events.outbox.ports import ShardLeases
    from payment_events.outbox.sql import SqlOutboxStore
    from payment_events.relay.kafka import KafkaBatchProducer, producer_config
    from payment_events.relay.ports import Waker
    from payment_events.relay.wakeup import PostgresNotifyWaker, SleepWaker

    refuse_async_url(database_url)
    config = config or RelayConfig()
    url = make_url(database_url)
    backend = url.get_backend_name()
    # Everything opened so far, closed in reverse if building fails half way (or by the relay later).
    closers: list[Callable[[], object]] = []
    try:
        if backend == "sqlite" and url.database and url.database != ":memory:":
            closers.append(_exclusive_sqlite_relay(url.database))
        store = SqlOutboxStore.from_url(database_url, shard_count=config.shard_count)
        closers.append(store.close)
        leases: ShardLeases
        if backend == "postgresql":
            pg_leases = PostgresShardLeases(database_url, shard_count=config.shard_count)
            closers.append(pg_leases.close)
            leases = pg_leases
        else:
            leases = AllShards(config.shard_count)
        producer = KafkaBatchProducer(producer_config(bootstrap_servers, config.producer_overrides))
        closers.append(lambda: producer.close(0.0))
        waker: Waker = SleepWaker()
        if backend == "postgresql" and config.listen:
            waker = PostgresNotifyWaker(database_url, config.notify_channel)
        closers.append(waker.close)
        relay = Relay(
            store,
            producer,
            config,
            leases=leases,
            observer=observer,
            waker=waker,
            closers=closers[:-2][::-1],  # the relay closes its producer and waker itself
        )
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    log.info(
        "relay configured",
        extra={"event": "relay.configured", "backend": backend, "shard_count": config.shard_count},
    )
    return relay


def _exclusive_sqlite_relay(database: str) -> Callable[[], object]:
    """Hold an exclusive lock on ``<database>.relay-lock``: SQLite has no shard leases, so a second relay
    on the same file would publish the same rows concurrently and could reorder a key. The operating
    system drops the lock when the process ends, however it ends. Returns the release function."""
    import fcntl

    from payment_events.errors import ConfigurationError

    handle = open(f"{database}.relay-lock", "a+b")  # noqa: SIM115 - held open for the relay's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigurationError(
            f"another relay is already running on the SQLite outbox {database}; an SQLite outbox has "
            "exactly one relay (use PostgreSQL to run several)"
        ) from None
    return handle.close


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
