"""``payment-events relay``: the relay as a service, with metrics, health, probes, alerts and signal
handling, started even while the broker is away (it waits, live and not ready, saying why)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from payment_events.config import Settings, env_var, mask_url
from payment_events.errors import ConfigurationError
from payment_events.relay.loop import Relay
from payment_events.service import build_relay, prepare_topics, relay_gc, stop_on_signals

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from payment_events.ops.alerts import AlertingObserver
    from payment_events.ops.health import HealthServer, HealthState

_PROBE_INTERVAL_SECONDS = 5.0
_TOPIC_CHECK_TIMEOUT_SECONDS = 10.0


def serve(settings: Settings) -> int:
    """Run a relay with metrics, health, alerts and signal handling until SIGTERM/SIGINT; return 0.

    Refuses to start (raises) when the outbox schema is not migrated or the topics are missing and may
    not be created. The HTTP server, probe and webhook threads are stopped on the way out.
    """
    from prometheus_client import disable_created_metrics

    from payment_events.ops.health import HealthState
    from payment_events.ops.logs import get_logger
    from payment_events.ops.metrics import PrometheusObserver
    from payment_events.ops.probes import ProbeSink, ReachabilityChecks, ReachabilityProbe
    from payment_events.outbox import migrate
    from payment_events.relay.observer import FanOutObserver

    log = get_logger("payment_events.service")
    migrate.check(settings.database_url)
    # No *_created series: they double the scrape size and nobody graphs them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    with contextlib.ExitStack() as stack:  # everything started below is stopped in reverse order
        metrics = PrometheusObserver(series=known_series(settings))
        state = HealthState(settings.health_liveness_timeout)
        # Signals first: a SIGTERM that arrives while the rest starts up (the HTTP server may already
        # answer) must stop the relay cleanly, not kill the process with the default handler.
        stop_requested = threading.Event()
        relays: list[Relay] = []

        def on_stop() -> None:
            state.stopping()  # /readyz turns false at once; the relay finishes its cycle and exits
            stop_requested.set()
            for relay in relays:
                relay.stop()

        stack.enter_context(stop_on_signals(on_stop))
        stack.enter_context(relay_gc())
        server = _health_server(settings, state, metrics.registry) if settings.metrics_enabled else None
        if server is not None:
            stack.callback(server.stop)
        alerts = _alerting(settings, stack)
        observer = FanOutObserver(metrics, alerts, state)
        checks = ReachabilityChecks(settings.kafka_config(), settings.database_url)
        stack.callback(checks.close)
        probe = ReachabilityProbe(
            ProbeSink(state, metrics, alerts),
            broker_check=checks.broker,
            database_check=checks.database,
            interval=_PROBE_INTERVAL_SECONDS,
        ).start()
        stack.callback(probe.stop)
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
            kafka_statistics=metrics.kafka_statistics,
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


def _alerting(settings: Settings, stack: contextlib.ExitStack) -> AlertingObserver:
    """The alerting observer, with its webhook notifier (stopped by ``stack``) when one is configured."""
    from payment_events.ops.alerts import AlertingObserver, WebhookNotifier

    webhook = settings.alert_webhook()
    notifier = WebhookNotifier(webhook).start() if webhook else None
    if notifier is not None:
        stack.callback(notifier.close, 10.0)
    return AlertingObserver(
        oldest_pending_age=settings.alert_oldest_pending_age,
        broker_unreachable=settings.alert_broker_unreachable,
        cooldown=settings.alert_cooldown,
        sink=notifier,
    )


def known_series(settings: Settings) -> list[tuple[str, str]]:
    """Every registered event type with the topic it is routed to: the counters' label values, created
    at 0 so that the first dead letter or retry is a visible increase."""
    from payment_events.events.registry import DEFAULT_REGISTRY

    router = settings.topic_router()
    return [(event_type, router.topic_for(event_type)) for event_type in DEFAULT_REGISTRY.event_types()]


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
