"""The Prometheus observer: what each relay report does to the metrics, in its own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from payment_events.ops.metrics import MAX_REASONS, METRIC_NAMES, FanOutObserver, PrometheusObserver
from payment_events.ops.observer import NullObserver, RelayObserver


def _value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


def test_each_observer_gets_its_own_registry() -> None:
    """Two observers in one process do not share counters (no global registry)."""
    first, second = PrometheusObserver(), PrometheusObserver()
    first.published("PaymentSucceeded", "payment.events", [0.01])
    assert first.registry is not second.registry
    assert second.registry.get_sample_value(
        "payment_events_published_total", {"event_type": "PaymentSucceeded", "topic": "payment.events"}
    ) is None


def test_published_counts_and_latency_histogram() -> None:
    """Acknowledged events count per type/topic and each latency lands in the histogram."""
    obs = PrometheusObserver()
    obs.published("PaymentSucceeded", "payment.events", [0.004, 0.2, 3.0])
    r = obs.registry
    labels = {"event_type": "PaymentSucceeded", "topic": "payment.events"}
    assert _value(r, "payment_events_published_total", labels) == 3
    assert _value(r, "payment_events_commit_to_ack_seconds_count", {"event_type": "PaymentSucceeded"}) == 3
    bucket = {"event_type": "PaymentSucceeded", "le": "0.005"}
    assert _value(r, "payment_events_commit_to_ack_seconds_bucket", bucket) == 1
    assert _value(r, "payment_events_commit_to_ack_seconds_bucket", {**bucket, "le": "60.0"}) == 3


def test_failures_retries_and_dead_letters() -> None:
    """Retries and dead letters count separately and both count as failures, by reason."""
    obs = PrometheusObserver()
    obs.retried("RefundFailed", "payment.events", "TIMED_OUT", 2)
    obs.dead_lettered("RefundFailed", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
    r = obs.registry
    base = {"event_type": "RefundFailed", "topic": "payment.events"}
    assert _value(r, "payment_events_retried_total", {**base, "reason": "timed_out"}) == 2
    assert _value(r, "payment_events_dead_lettered_total", {**base, "reason": "msg_size_too_large"}) == 1
    assert _value(r, "payment_events_failed_total", {**base, "reason": "timed_out"}) == 2
    assert _value(r, "payment_events_failed_total", {**base, "reason": "msg_size_too_large"}) == 1


def test_reason_labels_are_capped() -> None:
    """Past MAX_REASONS distinct reasons, new ones are counted as 'other' (bounded cardinality)."""
    obs = PrometheusObserver()
    for i in range(MAX_REASONS + 5):
        obs.retried("X", "t", f"reason {i}", 1)
    samples = [
        s for m in obs.registry.collect() if m.name == "payment_events_retried" for s in m.samples
        if s.name.endswith("_total")
    ]
    reasons = {s.labels["reason"] for s in samples}
    assert len(reasons) == MAX_REASONS + 1
    assert "other" in reasons


def test_gauges_and_batch_histogram() -> None:
    """Backlog, oldest age, shards, reachability and batch sizes are exported."""
    obs = PrometheusObserver()
    obs.backlog(42, 12.5)
    obs.shards_owned(8)
    obs.broker_reachable(False)
    obs.database_reachable(True)
    obs.batch(250)
    r = obs.registry
    assert _value(r, "payment_events_backlog_pending") == 42
    assert _value(r, "payment_events_oldest_pending_age_seconds") == 12.5
    assert _value(r, "payment_events_shards_owned") == 8
    assert _value(r, "payment_events_broker_reachable") == 0
    assert _value(r, "payment_events_database_reachable") == 1
    assert _value(r, "payment_events_batch_size_count") == 1
    assert _value(r, "payment_events_last_tick_timestamp_seconds") > 0


def test_exposition_names_every_documented_metric() -> None:
    """Every name in METRIC_NAMES appears in the text exposition."""
    obs = PrometheusObserver()
    obs.published("A", "t", [0.1])
    obs.retried("A", "t", "r", 1)
    obs.dead_lettered("A", "t", "r", 1)
    text = generate_latest(obs.registry).decode()
    for name in METRIC_NAMES:
        assert name in text


class _Exploding(NullObserver):
    def published(self, event_type: str, topic: str, commit_to_ack_seconds: object) -> None:
        raise RuntimeError("boom")


def test_fan_out_survives_a_failing_observer() -> None:
    """One observer raising does not stop the others from getting the report."""
    obs = PrometheusObserver()
    fan: RelayObserver = FanOutObserver(_Exploding(), obs)
    fan.published("A", "t", [0.1])
    fan.backlog(1, 2.0)
    assert _value(obs.registry, "payment_events_published_total", {"event_type": "A", "topic": "t"}) == 1
    assert _value(obs.registry, "payment_events_backlog_pending") == 1
