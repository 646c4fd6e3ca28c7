"""Prometheus metrics of the relay, through its :class:`~payment_events.relay.observer.RelayObserver`.

Each relay gets its own ``CollectorRegistry`` (never the process-global one), so several relays or tests in
one process do not collide. Labels are low-cardinality: event type, topic and a short reason code; reason
codes are sanitised and capped (:data:`MAX_REASONS` distinct values, then ``other``). Observer methods
never raise: a metrics problem must never stop publishing.

Metric names (all prefixed ``payment_events_``) are listed in :data:`METRIC_NAMES` and in
docs/operations.md; the alert rules in deploy/prometheus/alerts.yml and the Grafana dashboard use them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_log = logging.getLogger(__name__)

LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Commit-to-ack latency buckets, 1 ms to 60 s."""

BATCH_BUCKETS: tuple[float, ...] = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
"""Batch size buckets (rows per claimed batch)."""

MAX_REASONS = 20
"""Distinct failure reason label values kept; further ones are counted as ``other``."""

METRIC_NAMES: tuple[str, ...] = (
    "payment_events_published_total",
    "payment_events_failed_total",
    "payment_events_retried_total",
    "payment_events_dead_lettered_total",
    "payment_events_commit_to_ack_seconds",
    "payment_events_batch_size",
    "payment_events_backlog_pending",
    "payment_events_oldest_pending_age_seconds",
    "payment_events_dead_rows",
    "payment_events_shards_owned",
    "payment_events_broker_reachable",
    "payment_events_database_reachable",
    "payment_events_last_tick_timestamp_seconds",
    "payment_events_build_info",
    "payment_events_kafka_queue_messages",
    "payment_events_kafka_queue_bytes",
    "payment_events_kafka_broker_rtt_seconds",
    "payment_events_kafka_brokers_up",
    "payment_events_kafka_request_retries_total",
)
"""Every metric this module exports (histograms add _bucket/_sum/_count, counters _total). The relay's
registry also carries prometheus_client's ``process_*`` and ``python_info`` series."""

RETRIED = "retried"
DEAD_LETTERED = "dead_lettered"
OUTCOMES: tuple[str, ...] = (RETRIED, DEAD_LETTERED)
"""Values of the ``outcome`` label of ``payment_events_failed_total``."""

_REASON_RE = re.compile(r"[^a-z0-9_]+")


def reason_code(reason: str) -> str:
    """A label-safe reason: lower case, ``[a-z0-9_]``, at most 40 characters (``unknown`` when empty)."""
    return _REASON_RE.sub("_", reason.lower()).strip("_")[:40] or "unknown"


def known_reasons() -> dict[str, tuple[str, ...]]:
    """The reason codes each failure outcome is known to carry (label values created at 0 up front)."""
    from payment_events.relay.delivery import (
        MALFORMED_ROW,
        PERMANENT_CODES,
        RETRY_BUDGET_EXHAUSTED,
        TRANSIENT_CODES,
    )

    dead = {*PERMANENT_CODES, MALFORMED_ROW, RETRY_BUDGET_EXHAUSTED}
    return {
        RETRIED: tuple(sorted({reason_code(c) for c in TRANSIENT_CODES})),
        DEAD_LETTERED: tuple(sorted({reason_code(c) for c in dead})),
    }


class PrometheusObserver:
    """A :class:`RelayObserver` that records into a dedicated Prometheus registry.

    ``series`` are the ``(event_type, topic)`` pairs the relay can meet (every registered type on the
    topic it is routed to): their counters exist at 0 from the first scrape, so ``increase()`` and
    ``rate()`` see the very first dead letter or retry. A counter series born at 1 is invisible to
    ``increase()`` until its second increment. ``version`` is exported as ``payment_events_build_info``;
    ``process_metrics`` adds prometheus_client's process and platform collectors to the registry.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        series: Iterable[tuple[str, str]] = (),
        version: str | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._known = known_reasons()
        self._reasons: set[str] = set()
        """Reason codes seen beyond the known ones (capped at :data:`MAX_REASONS`)."""
        self._kafka_retries_seen = 0
        r = self.registry
        self._published = Counter(
            "payment_events_published",
            "Events acknowledged by the broker and marked published.",
            ["event_type", "topic"],
            registry=r,
        )
        self._failed = Counter(
            "payment_events_failed",
            "Failed delivery attempts by outcome (retried or dead_lettered) and short reason code.",
            ["topic", "outcome", "reason"],
            registry=r,
        )
        self._retried = Counter(
            "payment_events_retried",
            "Events scheduled for another attempt after a transient failure (reasons: failed_total).",
            ["event_type", "topic"],
            registry=r,
        )
        self._dead = Counter(
            "payment_events_dead_lettered",
            "Events moved to the dead-letter state and topic (reasons: failed_total).",
            ["event_type", "topic"],
            registry=r,
        )
        self._latency = Histogram(
            "payment_events_commit_to_ack_seconds",
            "Seconds from the outbox commit to the broker acknowledgement.",
            ["event_type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._batch = Histogram(
            "payment_events_batch_size",
            "Rows claimed and produced per relay batch.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._pending = Gauge(
            "payment_events_backlog_pending", "Outbox rows not yet published (pending).", registry=r
        )
        self._oldest = Gauge(
            "payment_events_oldest_pending_age_seconds",
            "Age of the oldest pending outbox row since its commit (0 when none).",
            registry=r,
        )
        self._dead_rows = Gauge(
            "payment_events_dead_rows",
            "Outbox rows in the dead state (given up on, waiting for `dlq replay`).",
            registry=r,
        )
        self._shards = Gauge("payment_events_shards_owned", "Shards this relay instance owns.", registry=r)
        self._broker = Gauge(
            "payment_events_broker_reachable", "1 when the producer reaches the brokers, else 0.", registry=r
        )
        self._database = Gauge(
            "payment_events_database_reachable", "1 when the outbox database answers, else 0.", registry=r
        )
        self._tick = Gauge(
            "payment_events_last_tick_timestamp_seconds",
            "Unix time of the relay's last report (any observer call): a liveness signal.",
            registry=r,
        )
        self._build = Gauge(
            "payment_events_build_info",
            "Always 1; the labels say which payment-events, librdkafka and Python this relay runs.",
            ["version", "librdkafka", "python"],
            registry=r,
        )
        self._queue_messages = Gauge(
            "payment_events_kafka_queue_messages",
            "Messages waiting in the producer's queues (librdkafka msg_cnt).",
            registry=r,
        )
        self._queue_bytes = Gauge(
            "payment_events_kafka_queue_bytes",
            "Bytes waiting in the producer's queues (librdkafka msg_size).",
            registry=r,
        )
        self._rtt = Gauge(
            "payment_events_kafka_broker_rtt_seconds",
            "Average request round-trip time to each broker over the last statistics window.",
            ["broker"],
            registry=r,
        )
        self._brokers_up = Gauge(
            "payment_events_kafka_brokers_up",
            "Brokers the producer holds an UP connection to (bootstrap entries excluded).",
            registry=r,
        )
        self._kafka_retries = Counter(
            "payment_events_kafka_request_retries",
            "Produce requests librdkafka retried (its txretries), summed over producer rebuilds.",
            registry=r,
        )
        self._build.labels(*build_labels(version)).set(1)
        for event_type, topic in series:
            self._published.labels(event_type, topic)
            self._retried.labels(event_type, topic)
            self._dead.labels(event_type, topic)
            self._latency.labels(event_type)  # the histogram too: rate() over it is defined from the start
        for topic in sorted({topic for _, topic in series}):
            for outcome, reasons in self._known.items():
                for reason in reasons:
                    self._failed.labels(topic, outcome, reason)
        if process_metrics:
            from prometheus_client import PlatformCollector, ProcessCollector

            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    # -- RelayObserver ----------------------------------------------------------------------------

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Count acknowledged events and observe each one's commit-to-ack latency."""
        try:
            self._published.labels(event_type, topic).inc(len(commit_to_ack_seconds))
            histogram = self._latency.labels(event_type)
            for seconds in commit_to_ack_seconds:
                histogram.observe(max(0.0, seconds))
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Count transient failures that will be retried."""
        try:
            self._retried.labels(event_type, topic).inc(count)
            self._failed.labels(topic, RETRIED, self._reason(RETRIED, reason)).inc(count)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Count events given up on."""
        try:
            self._dead.labels(event_type, topic).inc(count)
            self._failed.labels(topic, DEAD_LETTERED, self._reason(DEAD_LETTERED, reason)).inc(count)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def batch(self, size: int) -> None:
        """Observe one claimed batch's size."""
        try:
            self._batch.observe(size)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Set the backlog gauges."""
        try:
            self._pending.set(pending)
            self._oldest.set(max(0.0, oldest_pending_age_seconds))
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def dead_rows(self, count: int) -> None:
        """Set the dead-rows gauge."""
        try:
            self._dead_rows.set(count)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def shards_owned(self, count: int) -> None:
        """Set the owned-shards gauge."""
        try:
            self._shards.set(count)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def broker_reachable(self, reachable: bool) -> None:
        """Set the broker-reachable gauge (1/0)."""
        try:
            self._broker.set(1 if reachable else 0)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def database_reachable(self, reachable: bool) -> None:
        """Set the database-reachable gauge (1/0)."""
        try:
            self._database.set(1 if reachable else 0)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    # -- librdkafka statistics --------------------------------------------------------------------

    def kafka_statistics(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: export queue depth, per-broker round-trip time and retries.

        Called from ``poll()`` on the relay thread every ``statistics.interval.ms``. ``txretries`` is
        cumulative per producer; a smaller value than last time means a fresh producer (after a fatal
        error or a purge), so it counts from zero again.
        """
        try:
            stats = json.loads(stats_json)
            self._queue_messages.set(float(stats.get("msg_cnt", 0)))
            self._queue_bytes.set(float(stats.get("msg_size", 0)))
            brokers = stats.get("brokers") or {}
            up = 0
            retries = 0
            for name, broker in brokers.items():
                retries += int(broker.get("txretries", 0))
                if int(broker.get("nodeid", -1)) < 0:
                    continue  # the bootstrap placeholder, not a real broker connection
                up += broker.get("state") == "UP"
                rtt = (broker.get("rtt") or {}).get("avg")
                if isinstance(rtt, int | float) and rtt > 0:
                    self._rtt.labels(_broker_label(name, broker)).set(rtt / 1_000_000)
            self._brokers_up.set(up)
            total = int(stats.get("txretries", retries))
            with self._lock:
                delta = total - self._kafka_retries_seen if total >= self._kafka_retries_seen else total
                self._kafka_retries_seen = total
            if delta > 0:
                self._kafka_retries.inc(delta)
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.kafka_statistics_failed", exc_info=True)

    # -- helpers ----------------------------------------------------------------------------------

    def _reason(self, outcome: str, reason: str) -> str:
        """A label-safe reason code; a code outside the known ones counts against :data:`MAX_REASONS`,
        after which further new codes are counted as ``other``."""
        code = reason_code(reason)
        if code in self._known[outcome]:
            return code
        with self._lock:
            if code in self._reasons:
                return code
            if len(self._reasons) >= MAX_REASONS:
                return "other"
            self._reasons.add(code)
            return code


def build_labels(version: str | None = None) -> tuple[str, str, str]:
    """(payment-events version, librdkafka version, Python version) for ``payment_events_build_info``."""
    import platform
    from importlib import metadata

    if version is None:
        try:
            version = metadata.version("payment-events")
        except metadata.PackageNotFoundError:
            version = "unknown"
    try:
        import confluent_kafka

        librdkafka = str(confluent_kafka.libversion()[0])
    except Exception:  # noqa: BLE001 -- build info must never stop a relay
        librdkafka = "unknown"
    return version, librdkafka, platform.python_version()


def _broker_label(name: str, broker: Mapping[str, Any]) -> str:
    """``host:port/id`` as librdkafka names it, without the ``sasl_ssl://`` style prefix."""
    label = str(broker.get("nodename") or name)
    return f"{label}/{broker.get('nodeid')}"
