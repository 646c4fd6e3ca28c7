"""`relay` (the service: relay loop, metrics/health server, probes, alerts, signals) and `demo`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, TextIO

import click

from payment_events import config as cfg
from payment_events.cli.base import (
    ALL_GROUPS,
    EXIT_FAILURE,
    EXIT_OK,
    CliState,
    cli,
    emit_json,
    load,
    require_existing_database,
    settings_options,
)
from payment_events.cli.kafka import prepare_topics
from payment_events.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from payment_events.health import HealthServer, HealthState

# -- relay ----------------------------------------------------------------------------------------


@cli.command("relay")
@click.option(
    "--drain",
    is_flag=True,
    help="Publish what is pending now, print {\"resolved\": N} and exit (no HTTP server; for jobs).",
)
@settings_options(*ALL_GROUPS)
@click.pass_context
def relay_command(ctx: click.Context, /, drain: bool, **params: object) -> None:
    """Run the relay: publish committed outbox rows to Kafka until SIGTERM/SIGINT (then exit 0).

    Serves /metrics, /healthz and /readyz on --metrics-host:--metrics-port (127.0.0.1:9464 by default).
    """
    settings = load(ctx, params)
    ctx.exit(drain_relay(settings) if drain else serve_relay(settings))


def drain_relay(settings: cfg.Settings) -> int:
    """Publish every row that is pending and due now, print how many were resolved, return 0."""
    import sys

    from payment_events.outbox import migrate
    from payment_events.relay.runner import build_relay

    require_existing_database(settings)
    migrate.check(settings.database_url)
    prepare_topics(settings)
    relay = build_relay(settings.database_url, settings.kafka_bootstrap_servers, settings.to_relay_config())
    progress = DrainProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        resolved = relay.drain(progress=progress)
    finally:
        relay.close()
        if progress is not None:
            progress.done()
    emit_json({"resolved": resolved})
    return EXIT_OK


class DrainProgress:
    """``relay --drain``'s progress line on a terminal: rows resolved and the rate, redrawn at most twice
    a second on stderr (stdout keeps only the final JSON)."""

    def __init__(self, stream: TextIO, interval: float = 0.5) -> None:
        import time

        self._stream = stream
        self._interval = interval
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._total = 0
        self._drawn = False

    def __call__(self, total: int) -> None:
        """Record the running total; redraw when the last line is older than the interval."""
        import time

        self._total = total
        now = time.monotonic()
        if now - self._drawn_at >= self._interval:
            self._drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        self._stream.write(f"\rdraining: {self._total:,} rows resolved, {self._total / elapsed:,.0f}/s, "
                           f"{elapsed:.0f} s ")
        self._stream.flush()
        self._drawn = True

    def done(self) -> None:
        """Draw the final figures and end the line."""
        import time

        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()


def serve_relay(settings: cfg.Settings) -> int:
    """Run a relay with metrics, health, alerts and signal handling until SIGTERM/SIGINT; return 0.

    Refuses to start (raises) when the outbox schema is not migrated or the topics are missing and may
    not be created. The HTTP server, probe and webhook threads are stopped on the way out.
    """
    import signal
    import threading

    from prometheus_client import disable_created_metrics

    from payment_events.alerts import AlertingObserver, WebhookNotifier
    from payment_events.health import HealthState, ProbeSink, ReachabilityProbe
    from payment_events.logs import get_logger
    from payment_events.metrics import FanOutObserver, PrometheusObserver
    from payment_events.outbox import migrate
    from payment_events.relay.runner import build_relay

    log = get_logger("payment_events.cli")
    require_existing_database(settings)
    migrate.check(settings.database_url)
    prepare_topics(settings)
    # No *_created series: they double the scrape size and nobody graphs them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    with contextlib.ExitStack() as stack:  # everything started below is stopped in reverse order
        metrics = PrometheusObserver(series=known_series(settings))
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
        relay = build_relay(
            settings.database_url,
            settings.kafka_bootstrap_servers,
            settings.to_relay_config(),
            observer=observer,
            kafka_statistics=metrics.kafka_statistics,
        )
        stack.callback(relay.close)  # idempotent; run() closes too, this covers a failed start
        if settings.database_url.startswith("sqlite"):
            observer.shards_owned(settings.relay_shard_count)  # one relay owns every shard on SQLite
        checks = _Checks(settings)
        stack.callback(checks.close)
        probe = ReachabilityProbe(
            ProbeSink(state, metrics, alerts),
            broker_check=checks.broker,
            database_check=checks.database,
            interval=_PROBE_INTERVAL_SECONDS,
        ).start()
        stack.callback(probe.stop)

        def on_signal(signum: int, frame: object) -> None:
            state.stopping()  # /readyz turns false at once; the relay finishes its cycle and exits
            relay.stop()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                stack.callback(signal.signal, sig, signal.signal(sig, on_signal))
        log.info(
            "relay.serving",
            database=cfg.mask_url(settings.database_url),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            metrics_port=server.port if server else None,
            shard_count=settings.relay_shard_count,
            settings=settings.masked(),
        )
        relay.run()
    log.info("relay.exited")
    return EXIT_OK


_PROBE_INTERVAL_SECONDS = 5.0


def known_series(settings: cfg.Settings) -> list[tuple[str, str]]:
    """Every registered event type with the topic it is routed to: the counters' label values, created at 0
    so that the first dead letter or retry is a visible increase."""
    from payment_events.registry import DEFAULT_REGISTRY

    return [(event_type, settings.topic_for(event_type)) for event_type in DEFAULT_REGISTRY.event_types()]


def _health_server(settings: cfg.Settings, state: HealthState, registry: CollectorRegistry) -> HealthServer:
    """Start the HTTP server; a port in use or a bad address is a configuration error (exit 2)."""
    from payment_events.health import HealthServer

    try:
        return HealthServer(state, registry, settings.metrics_host, settings.metrics_port).start()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror or exc}): choose another address with --metrics-host/--metrics-port "
            f"({cfg.env_var('metrics_port')}), or --no-metrics-enabled"
        ) from None


class _Checks:
    """The probe's two checks: broker metadata and ``SELECT 1``, each on its own small client."""

    def __init__(self, settings: cfg.Settings) -> None:
        import sqlalchemy as sa
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient({**settings.kafka_config(), "socket.timeout.ms": 3000})
        self._engine = sa.create_engine(settings.database_url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            from payment_events.outbox.sql import configure_sqlite

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


# -- demo -----------------------------------------------------------------------------------------


@cli.command("demo")
@click.option(
    "--payments", default=200, show_default=True, type=click.IntRange(1, 1_000_000), help="Payments to run."
)
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the outcome mix.")
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds to wait for the last events after writing.",
)
@settings_options("database", "kafka", "topics", "relay")
@click.pass_context
def demo_command(ctx: click.Context, /, payments: int, seed: int, timeout: float, **params: object) -> None:
    """The main job in one command: a payment service -> outbox -> relay -> Kafka -> consumer, tallied.

    Uses the embedded SQLite outbox and the local broker (`scripts/services up`) by default. Exits 0 when
    every committed event was read back from Kafka in per-key order, 1 otherwise.
    """
    import os

    state = ctx.find_object(CliState)
    quiet = state is not None and "log_level" not in state.overrides
    if state is not None and quiet and not os.environ.get(cfg.env_var("log_level")):
        state.overrides["log_level"] = "WARNING"  # the demo's own output is the progress and the table
    settings = load(ctx, params)
    from payment_events.demo import run_demo

    report = run_demo(settings, payments=payments, seed=seed, timeout=timeout)
    ctx.exit(EXIT_OK if report.ok else EXIT_FAILURE)
