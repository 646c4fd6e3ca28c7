"""The composition root: build a relay (store, leases, producer, waker) and run it, alone or as the
service with metrics, health, probes, alerts and signal handling.

Every way of running a relay goes through here: ``payment-events relay`` (:func:`.serving.serve` and
:func:`drain`), ``python -m payment_events.service`` (:mod:`.__main__`), :func:`run_relay` in a user's
process, the demo, the benchmarks and the chaos suite. ``store_factory`` is the seam for another outbox
store.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from payment_events.config import Settings
from payment_events.errors import ConfigurationError
from payment_events.outbox.ports import OutboxStore, ShardLeases
from payment_events.relay.loop import Relay
from payment_events.relay.observer import RelayObserver
from payment_events.relay.settings import RelayConfig

if TYPE_CHECKING:
    from payment_events.kafka.admin import TopicStatus
    from payment_events.kafka.guard import AdminTopicCatalog
    from payment_events.relay.dead_letter_copies import DeadLetterCopier

__all__ = [
    "RELAY_GC_THRESHOLD",
    "StoreFactory",
    "build_relay",
    "drain",
    "prepare_topics",
    "relay_gc",
    "run_relay",
    "stop_on_signals",
]

log = logging.getLogger("payment_events.service")

StoreFactory = Callable[[str, RelayConfig], OutboxStore]
"""Builds the relay's outbox store from the database URL and the relay config (closed with the relay
if it has a ``close()``)."""

RELAY_GC_THRESHOLD = (100_000, 50, 1_000)
"""The cyclic garbage collector's thresholds while a relay process runs (CPython's default is
``(700, 10, 10)``). A draining relay allocates tens of container objects per event (rows, records,
header pairs, delivery reports) that reference counting frees at once; with the default, the collector
ran every 700 allocations and scanned the live batch each time. Measured on the 2-core machine
(in-process drains of 20,000 events, 4 interleaved rounds, load average 11): relay CPU 51.6 ->
34.0 us an event (0.66x), 4,575 -> 7,417 events/s; ``(10_000, 10, 10)`` gave 0.84x, ``gc.freeze()``
0.93x, pausing the collector only while records are built 0.89x (issue 16, docs/performance.md)."""

_DLQ_TIMEOUT_SECONDS = 5.0
"""The dead-letter copier's wait for one attempt (on its own thread: live traffic never waits for it)."""
_DLQ_MESSAGE_TIMEOUT_MS = 10_000


@contextmanager
def relay_gc(threshold: tuple[int, int, int] | None = RELAY_GC_THRESHOLD) -> Iterator[None]:
    """Use ``threshold`` for the garbage collector inside, restore the previous thresholds after
    (``None``: leave the process's collector alone)."""
    import gc

    if threshold is None:
        yield
        return
    previous = gc.get_threshold()
    gc.set_threshold(*threshold)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def run_relay(
    database_url: str,
    bootstrap_servers: str,
    config: RelayConfig | None = None,
    *,
    observer: RelayObserver | None = None,
    install_signal_handlers: bool = True,
    on_ready: Callable[[Relay], None] | None = None,
    store_factory: StoreFactory | None = None,
    gc_threshold: tuple[int, int, int] | None = RELAY_GC_THRESHOLD,
) -> None:
    """Run a relay over the outbox at ``database_url`` until SIGTERM/SIGINT (or ``Relay.stop()``).

    PostgreSQL: shards are shared with other relay instances through advisory locks, and the relay
    wakes on ``LISTEN``. SQLite: one relay owns every shard and polls. ``on_ready`` receives the relay
    before it starts (to keep a handle for ``stop()``, e.g. from a health server). Returns after a
    graceful stop, with every connection closed. A missing outbox table raises
    ``MigrationRequiredError`` before anything starts. While it runs the process's garbage collector uses
    ``gc_threshold`` (:data:`RELAY_GC_THRESHOLD`; ``None`` leaves it alone, e.g. in a process that tunes
    its own).
    """
    relay = build_relay(
        database_url, bootstrap_servers, config, observer=observer, store_factory=store_factory
    )
    if on_ready is not None:
        on_ready(relay)
    with relay_gc(gc_threshold):
        if not install_signal_handlers:
            relay.run()
            return
        with stop_on_signals(relay.stop):
            relay.run()


def build_relay(
    database_url: str,
    bootstrap_servers: str,
    config: RelayConfig | None = None,
    *,
    observer: RelayObserver | None = None,
    store_factory: StoreFactory | None = None,
    on_topic_state: Callable[[str, bool], None] | None = None,
    kafka_statistics: Callable[[str], None] | None = None,
) -> Relay:
    """A ready-to-run :class:`Relay` with the SQL store, shard leases, Kafka producer and waker.

    The producer is wrapped in :class:`~payment_events.kafka.guard.GuardedProducer` (record batches
    sized below each topic's limit, a missing topic answered at once; ``on_topic_state(topic, missing)``
    hears when a topic goes missing or comes back) and dead-letter copies go through a second producer
    on their own thread (:class:`~payment_events.relay.dead_letter_copies.DeadLetterCopier`).

    Everything it opens (engine, lease connection, producer, LISTEN connection) is closed when
    ``Relay.run`` returns (or by ``Relay.close()`` for a relay that is never run). ``store_factory``
    replaces the SQL store (the seam for experiments and other stores); it gets the URL and the config.
    ``kafka_statistics`` receives librdkafka's statistics JSON (e.g.
    :meth:`~payment_events.ops.metrics.PrometheusObserver.kafka_statistics`).
    """
    from sqlalchemy.engine import make_url

    from payment_events.dburl import refuse_async_url
    from payment_events.kafka.guard import AdminTopicCatalog, GuardedProducer, admin_config
    from payment_events.kafka.producer import KafkaBatchProducer, producer_config
    from payment_events.kafka.topics import validate_topic_name
    from payment_events.relay.ports import BatchProducer, Waker
    from payment_events.relay.settings import EXACTLY_ONCE
    from payment_events.relay.wakeup import PostgresNotifyWaker, SleepWaker, SqliteChangeWaker

    refuse_async_url(database_url)
    config = config or RelayConfig()
    if config.dlq_topic is not None:
        validate_topic_name(config.dlq_topic, "relay option dlq_topic")
    url = make_url(database_url)
    backend = url.get_backend_name()
    # Everything opened so far, closed in reverse if building fails half way (or by the relay later).
    closers: list[Callable[[], object]] = []
    try:
        if backend == "sqlite" and url.database and url.database != ":memory:":
            closers.append(_exclusive_sqlite_relay(url.database))
        store = _store(database_url, config, store_factory, closers)
        catalog = AdminTopicCatalog(admin_config(bootstrap_servers, config.producer_overrides))
        producer_settings = producer_config(bootstrap_servers, config.producer_overrides)
        producer: BatchProducer
        if config.delivery == EXACTLY_ONCE:
            from payment_events.kafka.transactions import new_transactional_id
            from payment_events.service import exactly_once

            txn_id = new_transactional_id(config.transactional_id_prefix)
            leases, store = _fenced_leases(
                backend, database_url, store, config, closers, transactional_id=txn_id
            )
            # Transactions produce unguarded: a record batch the broker refuses aborts the transaction
            # and the batch is retried whole (docs/exactly-once.md).
            store, leases, producer = exactly_once.compose(store, leases, producer_settings, txn_id)
        else:
            leases, store = _fenced_leases(backend, database_url, store, config, closers)
            producer = GuardedProducer(
                KafkaBatchProducer(producer_settings, statistics=kafka_statistics),
                catalog,
                on_topic_state=on_topic_state,
                message_max_bytes=int(producer_settings.get("message.max.bytes", 1_000_000)),
            )
        closers.append(lambda: producer.close(0.0))
        copier = _dead_letter_copier(bootstrap_servers, config, catalog)
        closers.append(lambda: copier.close(0.0))
        waker: Waker = SleepWaker()
        if backend == "postgresql" and config.listen:
            waker = PostgresNotifyWaker(database_url, config.notify_channel)
        elif backend == "sqlite" and config.listen and url.database and url.database != ":memory:":
            waker = SqliteChangeWaker(url.database)  # no NOTIFY on SQLite: watch its change counter
        closers.append(waker.close)
        relay = Relay(
            store,
            producer,
            config,
            leases=leases,
            observer=observer,
            waker=waker,
            closers=closers[:-3][::-1],  # the relay closes its producer, copier and waker itself
            dead_letters=copier,
        )
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    log.info(
        "relay configured",
        extra={
            "event": "relay.configured",
            "backend": backend,
            "shard_count": config.shard_count,
            "delivery": config.delivery,
        },
    )
    return relay


def _store(
    database_url: str,
    config: RelayConfig,
    store_factory: StoreFactory | None,
    closers: list[Callable[[], object]],
) -> OutboxStore:
    """The SQL store for ``database_url`` (or what ``store_factory`` builds), its closing registered."""
    from payment_events.outbox.store import SqlOutboxStore

    if store_factory is None:
        # Exactly-once: a mark must outlive a database crash. An asynchronous mark lost in a crash leaves
        # its row pending although its transaction committed in Kafka, and the relay (which saw the mark
        # succeed) would send it again: a duplicate that read_committed consumers see. The chaos
        # scenario pg-restart-immediate showed 10-20 such duplicates per run with asynchronous marks.
        from payment_events.relay.settings import EXACTLY_ONCE

        durable = config.delivery == EXACTLY_ONCE
        sql_store = SqlOutboxStore.from_url(
            database_url, shard_count=config.shard_count, async_marks=not durable
        )
        closers.append(sql_store.close)
        return sql_store
    store = store_factory(database_url, config)
    close_store = getattr(store, "close", None)
    if close_store is not None:
        closers.append(close_store)
    return store


def _dead_letter_copier(
    bootstrap_servers: str, config: RelayConfig, catalog: AdminTopicCatalog
) -> DeadLetterCopier:
    """Dead-letter copies go through a producer of their own, on a thread of their own, with a short
    timeout: live traffic never waits for the dead-letter topic."""
    from payment_events.kafka.guard import GuardedProducer
    from payment_events.kafka.producer import KafkaBatchProducer, producer_config
    from payment_events.relay.dead_letter_copies import DeadLetterCopier

    overrides = {**config.producer_overrides, "message.timeout.ms": _DLQ_MESSAGE_TIMEOUT_MS}
    return DeadLetterCopier(
        GuardedProducer(KafkaBatchProducer(producer_config(bootstrap_servers, overrides)), catalog),
        timeout=_DLQ_TIMEOUT_SECONDS,
        backoff_cap_seconds=config.backoff_cap_seconds,
        threaded=True,
    )


def _fenced_leases(
    backend: str,
    database_url: str,
    store: OutboxStore,
    config: RelayConfig,
    closers: list[Callable[[], object]],
    *,
    transactional_id: str | None = None,
) -> tuple[ShardLeases, OutboxStore]:
    """The relay's shard leases and its store, fenced by them (see :mod:`payment_events.outbox.fencing`):
    advisory locks plus lease generations on PostgreSQL (the lease session expires after
    ``lease_takeover_seconds`` of silence and a heartbeat thread renews it), lease generations alone on
    SQLite."""
    from payment_events.outbox.fencing import (
        FenceableStore,
        FencedLeases,
        FencedOutboxStore,
        TableShardLeases,
    )
    from payment_events.outbox.lease_heartbeat import LeaseHeartbeat
    from payment_events.outbox.leases import AllShards, PostgresShardLeases

    leases: ShardLeases
    fenced: FencedLeases | None = None
    if backend == "postgresql":
        pg_leases = PostgresShardLeases(
            database_url,
            shard_count=config.shard_count,
            takeover_seconds=config.lease_takeover_seconds,
            transactional_id=transactional_id,
        )
        closers.append(pg_leases.close)
        heartbeat = LeaseHeartbeat(pg_leases, config.lease_takeover_seconds / 4).start()
        closers.append(heartbeat.stop)
        leases = fenced = pg_leases
    elif isinstance(store, FenceableStore):
        leases = fenced = TableShardLeases(store, config.shard_count, transactional_id=transactional_id)
    else:
        leases = AllShards(config.shard_count)
    if fenced is not None and isinstance(store, FenceableStore):
        return leases, FencedOutboxStore(store, fenced)  # every claim and mark checks the generation
    log.warning(
        "the outbox store cannot check lease generations: claims and marks are not fenced",
        extra={"event": "relay.unfenced"},
    )
    return leases, store


def _exclusive_sqlite_relay(database: str) -> Callable[[], object]:
    """Hold an exclusive lock on ``<database>.relay-lock``: SQLite has no shard leases, so a second relay
    on the same file would publish the same rows concurrently and could reorder a key. The operating
    system drops the lock when the process ends, however it ends. Returns the release function."""
    import fcntl


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
def stop_on_signals(on_stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``on_stop`` (which only sets flags: signal-safe) while inside; the previous
    handlers come back on the way out. Outside the main thread (where Python allows no handlers) this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        on_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def prepare_topics(settings: Settings, *, timeout: float = 30.0) -> list[TopicStatus]:
    """Create the configured topics (aggregate, routed, dead-letter) if allowed; otherwise refuse
    (ConfigurationError) when one is missing; ``TransientPublishError`` when no broker answers within
    ``timeout`` seconds."""
    from payment_events.kafka.admin import ensure_topics

    router = settings.topic_router()
    return ensure_topics(
        settings.kafka_config(),
        sorted({*router.topics, settings.dlq_topic}),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
        create=settings.create_topics,
        timeout=timeout,
    )


def drain(settings: Settings, progress: Callable[[int], None] | None = None) -> int:
    """Publish every row that is pending and due now (checking the schema and topics first); return how
    many rows were resolved. No HTTP server: for jobs. ``progress`` gets the running total after each
    cycle."""
    from payment_events.outbox import migrate

    migrate.check(settings.database_url)
    prepare_topics(settings)
    relay = build_relay(settings.database_url, settings.kafka_bootstrap_servers, settings.to_relay_config())
    try:
        return relay.drain(progress=progress)
    finally:
        relay.close()


