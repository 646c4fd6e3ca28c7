"""The composition root: build a relay (store, leases, producer, waker) and run it, alone or as the
service with metrics, health, probes, alerts and signal handling.

Every way of running a relay goes through here: ``payment-events relay`` (:func:`serve` and
:func:`drain`), ``python -m payment_events.relay``, :func:`run_relay` in a user's process, the demo, the
benchmarks and the chaos suite. ``store_factory`` is the seam for another outbox store.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from payment_events.config import Settings, env_var, mask_url
from payment_events.errors import ConfigurationError
from payment_events.ops.observer import RelayObserver
from payment_events.outbox.ports import OutboxStore, ShardLeases
from payment_events.relay.loop import Relay
from payment_events.relay.settings import RelayConfig

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from payment_events.kafka.admin import TopicStatus
    from payment_events.ops.health import HealthServer, HealthState

__all__ = [
    "StoreFactory",
    "build_relay",
    "drain",
    "prepare_topics",
    "run_relay",
    "serve",
    "stop_on_signals",
]

log = logging.getLogger("payment_events.service")

StoreFactory = Callable[[str, RelayConfig], OutboxStore]
"""Builds the relay's outbox store from the database URL and the relay config (closed with the relay
if it has a ``close()``)."""

_PROBE_INTERVAL_SECONDS = 5.0
_TOPIC_CHECK_TIMEOUT_SECONDS = 10.0
_DLQ_TIMEOUT_SECONDS = 5.0
"""The dead-letter copier's wait for one attempt (on its own thread: live traffic never waits for it)."""
_DLQ_MESSAGE_TIMEOUT_MS = 10_000


def run_relay(
    database_url: str,
    bootstrap_servers: str,
    config: RelayConfig | None = None,
    *,
    observer: RelayObserver | None = None,
    install_signal_handlers: bool = True,
    on_ready: Callable[[Relay], None] | None = None,
    store_factory: StoreFactory | None = None,
) -> None:
    """Run a relay over the outbox at ``database_url`` until SIGTERM/SIGINT (or ``Relay.stop()``).

    PostgreSQL: shards are shared with other relay instances through advisory locks, and the relay
    wakes on ``LISTEN``. SQLite: one relay owns every shard and polls. ``on_ready`` receives the relay
    before it starts (to keep a handle for ``stop()``, e.g. from a health server). Returns after a
    graceful stop, with every connection closed. A missing outbox table raises
    ``MigrationRequiredError`` before anything starts.
    """
    relay = build_relay(
        database_url, bootstrap_servers, config, observer=observer, store_factory=store_factory
    )
    if on_ready is not None:
        on_ready(relay)
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
) -> Relay:
    """A ready-to-run :class:`Relay` with the SQL store, shard leases, Kafka producer and waker.

    The producer is wrapped in :class:`~payment_events.kafka.guard.GuardedProducer` (record batches
    sized below each topic's limit, a missing topic answered at once; ``on_topic_state(topic, missing)``
    hears when a topic goes missing or comes back) and dead-letter copies go through a second producer
    on their own thread (:class:`~payment_events.relay.dead_letter_copies.DeadLetterCopier`).

    Everything it opens (engine, lease connection, producer, LISTEN connection) is closed when
    ``Relay.run`` returns (or by ``Relay.close()`` for a relay that is never run). ``store_factory``
    replaces the SQL store (the seam for experiments and other stores); it gets the URL and the config.
    """
    from sqlalchemy.engine import make_url

    from payment_events.kafka.guard import AdminTopicCatalog, GuardedProducer, admin_config
    from payment_events.kafka.producer import KafkaBatchProducer, producer_config
    from payment_events.outbox.store import SqlOutboxStore
    from payment_events.relay.dead_letter_copies import DeadLetterCopier
    from payment_events.relay.ports import Waker
    from payment_events.relay.wakeup import PostgresNotifyWaker, SleepWaker

    config = config or RelayConfig()
    url = make_url(database_url)
    backend = url.get_backend_name()
    # Everything opened so far, closed in reverse if building fails half way (or by the relay later).
    closers: list[Callable[[], object]] = []
    try:
        if backend == "sqlite" and url.database and url.database != ":memory:":
            closers.append(_exclusive_sqlite_relay(url.database))
        store: OutboxStore
        if store_factory is None:
            sql_store = SqlOutboxStore.from_url(database_url, shard_count=config.shard_count)
            closers.append(sql_store.close)
            store = sql_store
        else:
            store = store_factory(database_url, config)
            close_store = getattr(store, "close", None)
            if close_store is not None:
                closers.append(close_store)
        leases = _leases(database_url, backend, config, closers)
        catalog = AdminTopicCatalog(admin_config(bootstrap_servers, config.producer_overrides))
        live_config = producer_config(bootstrap_servers, config.producer_overrides)
        producer = GuardedProducer(
            KafkaBatchProducer(live_config),
            catalog,
            on_topic_state=on_topic_state,
            message_max_bytes=int(live_config.get("message.max.bytes", 1_000_000)),
        )
        closers.append(lambda: producer.close(0.0))
        copier = DeadLetterCopier(
            GuardedProducer(
                KafkaBatchProducer(
                    producer_config(
                        bootstrap_servers,
                        {**config.producer_overrides, "message.timeout.ms": _DLQ_MESSAGE_TIMEOUT_MS},
                    )
                ),
                catalog,
            ),
            timeout=_DLQ_TIMEOUT_SECONDS,
            backoff_cap_seconds=config.backoff_cap_seconds,
            threaded=True,
        )
        closers.append(lambda: copier.close(0.0))
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
            closers=closers[:-3][::-1],  # the relay closes its producer, copier and waker itself
            dead_letters=copier,
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


def _leases(
    database_url: str, backend: str, config: RelayConfig, closers: list[Callable[[], object]]
) -> ShardLeases:
    """PostgreSQL: advisory-lock leases whose session expires after ``lease_takeover_seconds`` of
    silence, renewed by a heartbeat thread; SQLite: every shard."""
    from payment_events.outbox.lease_heartbeat import LeaseHeartbeat
    from payment_events.outbox.leases import AllShards, PostgresShardLeases

    if backend != "postgresql":
        return AllShards(config.shard_count)
    leases = PostgresShardLeases(
        database_url, shard_count=config.shard_count, takeover_seconds=config.lease_takeover_seconds
    )
    closers.append(leases.close)
    heartbeat = LeaseHeartbeat(leases, config.lease_takeover_seconds / 4).start()
    closers.append(heartbeat.stop)
    return leases


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


def serve(settings: Settings) -> int:
    """Run a relay with metrics, health, alerts and signal handling until SIGTERM/SIGINT; return 0.

    Refuses to start (raises) when the outbox schema is not migrated or the topics are missing and may
    not be created. The HTTP server, probe and webhook threads are stopped on the way out.
    """
    from prometheus_client import disable_created_metrics

    from payment_events.ops.alerts import AlertingObserver, WebhookNotifier
    from payment_events.ops.health import HealthState, ProbeSink, ReachabilityProbe
    from payment_events.ops.logs import get_logger
    from payment_events.ops.metrics import FanOutObserver, PrometheusObserver
    from payment_events.outbox import migrate

    log = get_logger("payment_events.service")
    migrate.check(settings.database_url)
    # No *_created series: they double the scrape size and nobody graphs them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    with contextlib.ExitStack() as stack:  # everything started below is stopped in reverse order
        metrics = PrometheusObserver()
        state = HealthState(settings.health_liveness_timeout)
        server = _health_server(settings, state, metrics.registry) if settings.metrics_enabled else None
        if server is not None:
            stack.callback(server.stop)
        webhook = settings.alert_webhook()
        notifier = WebhookNotifier(webhook).start() if webhook else None
        if notifier is not None:
            stack.callback(notifier.close, 10.0)
        alerts = AlertingObserver(
            oldest_pending_age=settings.alert_oldest_pending_age,
            broker_unreachable=settings.alert_broker_unreachable,
            cooldown=settings.alert_cooldown,
            sink=notifier,
        )
        observer = FanOutObserver(metrics, alerts, state)
        checks = _Checks(settings)
        stack.callback(checks.close)
        probe = ReachabilityProbe(
            ProbeSink(state, metrics, alerts),
            broker_check=checks.broker,
            database_check=checks.database,
            interval=_PROBE_INTERVAL_SECONDS,
        ).start()
        stack.callback(probe.stop)
        stop_requested = threading.Event()
        relays: list[Relay] = []

        def on_stop() -> None:
            state.stopping()  # /readyz turns false at once; the relay finishes its cycle and exits
            stop_requested.set()
            for relay in relays:
                relay.stop()

        stack.enter_context(stop_on_signals(on_stop))
        if not _wait_for_topics(settings, state, stop_requested):
            log.info("relay.exited")
            return 0

        def on_topic_state(topic: str, missing: bool) -> None:
            state.topic_missing(topic, missing)
            alerts.topic_missing(topic, missing)

        relay = build_relay(
            settings.database_url,
            settings.kafka_bootstrap_servers,
            settings.to_relay_config(),
            observer=observer,
            on_topic_state=on_topic_state,
        )
        relays.append(relay)
        stack.callback(relay.close)  # idempotent; run() closes too, this covers a failed start
        if stop_requested.is_set():
            relay.stop()
        if settings.database_url.startswith("sqlite"):
            observer.shards_owned(settings.relay_shard_count)  # one relay owns every shard on SQLite
        log.info(
            "relay.serving",
            database=mask_url(settings.database_url),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            metrics_port=server.port if server else None,
            shard_count=settings.relay_shard_count,
            settings=settings.masked(),
        )
        relay.run()
    log.info("relay.exited")
    return 0


def _wait_for_topics(settings: Settings, state: HealthState, stop: threading.Event) -> bool:
    """Check (or create) the topics, waiting while the broker cannot be reached: /healthz stays live,
    /readyz says what the relay waits for, a log line says it too (once, then every minute). Returns
    False if a stop was requested while waiting. A missing topic that may not be created still raises."""
    from payment_events.errors import TransientPublishError
    from payment_events.ops.logs import get_logger

    log = get_logger("payment_events.service")
    waited = 0
    next_log = 0.0
    while not stop.is_set():
        state.tick()
        try:
            prepare_topics(settings, timeout=_TOPIC_CHECK_TIMEOUT_SECONDS)
        except TransientPublishError as exc:
            reason = f"the Kafka broker at {settings.kafka_bootstrap_servers} ({exc})"
            state.waiting_for(reason)
            now = time.monotonic()
            if now >= next_log:
                next_log = now + 60.0
                log.warning("relay.waiting_for_broker", waiting_for=reason, attempts=waited + 1)
            waited += 1
            delay = min(30.0, 1.0 * 2 ** min(waited, 5))
            deadline = time.monotonic() + delay
            while not stop.is_set() and time.monotonic() < deadline:
                state.tick()  # the process is alive and doing what it should: waiting
                stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            continue
        if waited:
            log.info("relay.broker_answered", attempts=waited + 1)
        state.waiting_for(None)
        return True
    return False


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


def drain(settings: Settings) -> int:
    """Publish every row that is pending and due now (checking the schema and topics first); return how
    many rows were resolved. No HTTP server: for jobs."""
    from payment_events.outbox import migrate

    migrate.check(settings.database_url)
    prepare_topics(settings)
    relay = build_relay(settings.database_url, settings.kafka_bootstrap_servers, settings.to_relay_config())
    try:
        return relay.drain()
    finally:
        relay.close()


def _health_server(settings: Settings, state: HealthState, registry: CollectorRegistry) -> HealthServer:
    """Start the HTTP server; a port in use or a bad address is a configuration error (exit 2)."""
    from payment_events.ops.health import HealthServer

    try:
        return HealthServer(state, registry, settings.metrics_host, settings.metrics_port).start()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror or exc}): choose another address with --metrics-host/--metrics-port "
            f"({env_var('metrics_port')}), or --no-metrics-enabled"
        ) from None


class _Checks:
    """The probe's two checks: broker metadata and ``SELECT 1``, each on its own small client."""

    def __init__(self, settings: Settings) -> None:
        import sqlalchemy as sa
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient({**settings.kafka_config(), "socket.timeout.ms": 3000})
        self._engine = sa.create_engine(settings.database_url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            from payment_events.outbox.sqlite import configure_sqlite

            configure_sqlite(self._engine)  # a busy timeout, so the relay's writes do not read as an outage

    def broker(self) -> bool:
        """True when a broker answers a metadata request within 3 s."""
        self._admin.list_topics(timeout=3)
        return True

    def database(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        import sqlalchemy as sa

        with self._engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True

    def close(self) -> None:
        """Release the database pool."""
        self._engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """``python -m payment_events.service``: a minimal relay (the CLI's ``payment-events relay`` is the
    user-facing one, with metrics, health and alerts). The tests run it in its own process to kill it.

    Options come from flags or the environment (``PAYMENT_EVENTS_DATABASE_URL``,
    ``PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS``). Exits 0 after SIGTERM/SIGINT once in-flight deliveries
    are marked; ``--drain`` publishes what is pending, prints ``{"resolved": N}`` and exits.
    """
    import argparse
    import json
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m payment_events.service")
    parser.add_argument("--database-url", default=os.environ.get("PAYMENT_EVENTS_DATABASE_URL"))
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS")
    )
    parser.add_argument("--batch-size", type=int, default=RelayConfig.batch_size)
    parser.add_argument("--poll-interval", type=float, default=RelayConfig.poll_interval_seconds)
    parser.add_argument("--dlq-topic", default=RelayConfig.dlq_topic)
    parser.add_argument("--max-attempts", type=int, default=RelayConfig.max_attempts)
    parser.add_argument("--shard-count", type=int, default=RelayConfig.shard_count)
    parser.add_argument("--lease-refresh", type=float, default=RelayConfig.lease_refresh_seconds)
    parser.add_argument("--backoff-cap", type=float, default=RelayConfig.backoff_cap_seconds)
    parser.add_argument("--producer-config", default="{}", help="JSON object of librdkafka overrides")
    parser.add_argument("--drain", action="store_true", help="publish what is pending now, then exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.database_url or not args.bootstrap_servers:
        parser.error("--database-url and --bootstrap-servers (or their environment variables) are required")
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    config = RelayConfig(
        batch_size=args.batch_size,
        poll_interval_seconds=args.poll_interval,
        dlq_topic=args.dlq_topic or None,
        max_attempts=args.max_attempts or None,  # 0: retry transient failures forever
        shard_count=args.shard_count,
        lease_refresh_seconds=args.lease_refresh,
        backoff_cap_seconds=args.backoff_cap,
        producer_overrides=json.loads(args.producer_config),
    )
    if args.drain:
        relay = build_relay(args.database_url, args.bootstrap_servers, config)
        try:
            resolved = relay.drain()
        finally:
            relay.close()
        print(json.dumps({"resolved": resolved}))  # noqa: T201 - the command's output
        return 0
    run_relay(args.database_url, args.bootstrap_servers, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
