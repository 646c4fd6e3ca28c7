"""Prometheus metrics for the relay, recorded through the :class:`~payment_events.ops.observer.RelayObserver`.

Each relay gets its own ``CollectorRegistry`` (never the process-global one), so several relays or tests in
one process do not collide. Labels are low-cardinality: event type, topic and a short reason code; reason
codes are sanitised and capped (:data:`MAX_REASONS` distinct values, then ``other``). Observer methods
never raise: a metrics problem must never stop publishing.

Metric names (all prefixed ``payment_events_``) are listed in :data:`METRIC_NAMES` and in
docs/operations.md; the alert rules in deploy/prometheus/alerts.yml and the Grafana dashboard use them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from payment_events.ops.observer import RelayObserver

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
    "payment_events_shards_owned",
    "payment_events_broker_reachable",
    "payment_events_database_reachable",
    "payment_events_last_tick_timestamp_seconds",
)
"""Every metric this module exports (histograms add _bucket/_sum/_count, counters _total)."""

_REASON_RE = re.compile(r"[^a-z0-9_]+")


class PrometheusObserver:
    """A :class:`RelayObserver` that records into a dedicated Prometheus registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._reasons: set[str] = set()
        self._lock = threading.Lock()
        r = self.registry
        self._published = Counter(
            "payment_events_published",
            "Events acknowledged by the broker and marked published.",
            ["event_type", "topic"],
            registry=r,
        )
        self._failed = Counter(
            "payment_events_failed",
            "Failed delivery attempts (retried or dead-lettered), by short reason.",
            ["event_type", "topic", "reason"],
            registry=r,
        )
        self._retried = Counter(
            "payment_events_retried",
            "Events scheduled for another attempt after a transient failure.",
            ["event_type", "topic", "reason"],
            registry=r,
        )
        self._dead = Counter(
            "payment_events_dead_lettered",
            "Events moved to the dead-letter state and topic.",
            ["event_type", "topic", "reason"],
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
            code = self._reason(reason)
            self._retried.labels(event_type, topic, code).inc(count)
            self._failed.labels(event_type, topic, code).inc(count)
            self._tick.set_to_current_time()
        except Exception:  # noqa: BLE001 -- an observer must never stop publishing
            _log.debug("metrics.observer_failed", exc_info=True)

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Count events given up on."""
        try:
            code = self._reason(reason)
            self._dead.labels(event_type, topic, code).inc(count)
            self._failed.labels(event_type, topic, code).inc(count)
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

    # -- helpers ----------------------------------------------------------------------------------

    def _reason(self, reason: str) -> str:
        """A label-safe reason code; after :data:`MAX_REASONS` distinct codes, ``other``."""
        code = _REASON_RE.sub("_", reason.lower()).strip("_")[:40] or "unknown"
        with self._lock:
            if code in self._reasons:
                return code
            if len(self._reasons) >= MAX_REASONS:
                return "other"
            self._reasons.add(code)
            return code


class FanOutObserver:
    """Forwards every report to several observers; one failing observer never affects the others."""

    def __init__(self, *observers: RelayObserver) -> None:
        self.observers: tuple[RelayObserver, ...] = observers

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.published, event_type, topic, commit_to_ack_seconds)

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.retried, event_type, topic, reason, count)

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.dead_lettered, event_type, topic, reason, count)

    def batch(self, size: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.batch, size)

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.backlog, pending, oldest_pending_age_seconds)

    def shards_owned(self, count: int) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.shards_owned, count)

    def broker_reachable(self, reachable: bool) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.broker_reachable, reachable)

    def database_reachable(self, reachable: bool) -> None:
        """Forward."""
        for o in self.observers:
            _safe(o.database_reachable, reachable)


def _safe(method: Callable[..., object], *args: object) -> None:
    try:
        method(*args)
    except Exception:  # noqa: BLE001 -- an observer must never stop publishing
        _log.warning("observer.failed", extra={"observer_method": getattr(method, "__qualname__", "?")})
