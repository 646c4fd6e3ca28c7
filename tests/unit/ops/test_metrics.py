"""The Prometheus observer: what each relay report does to the metrics, in its own registry."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata

import confluent_kafka
from prometheus_client import CollectorRegistry, generate_latest

from payment_events.kafka.producer import KafkaBatchProducer, producer_config
from payment_events.ops.metrics import (
    MAX_REASONS,
    METRIC_NAMES,
    PrometheusObserver,
    known_reasons,
)
from payment_events.relay.observer import FanOutObserver, NullObserver, RelayObserver
from payment_events.relay.ports import OutgoingMessage


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
    """Retries and dead letters count per type/topic, and failed_total counts both by outcome and reason."""
    obs = PrometheusObserver()
    obs.retried("RefundFailed", "payment.events", "TIMED_OUT", 2)
    obs.dead_lettered("RefundFailed", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
    r = obs.registry
    base = {"event_type": "RefundFailed", "topic": "payment.events"}
    assert _value(r, "payment_events_retried_total", base) == 2
    assert _value(r, "payment_events_dead_lettered_total", base) == 1
    failed = {"topic": "payment.events"}
    retried = {**failed, "outcome": "retried", "reason": "timed_out"}
    assert _value(r, "payment_events_failed_total", retried) == 2
    dead = {**failed, "outcome": "dead_lettered", "reason": "msg_size_too_large"}
    assert _value(r, "payment_events_failed_total", dead) == 1


def test_counters_exist_at_zero_for_every_known_series() -> None:
    """Before anything happens, every known (type, topic) counter and every known reason is scraped as 0,
    so increase() sees the first dead letter."""
    obs = PrometheusObserver(series=[("PaymentSucceeded", "payment.events"), ("RefundFailed", "refunds")])
    r = obs.registry
    for event_type, topic in [("PaymentSucceeded", "payment.events"), ("RefundFailed", "refunds")]:
        labels = {"event_type": event_type, "topic": topic}
        for name in ("published", "retried", "dead_lettered"):
            assert r.get_sample_value(f"payment_events_{name}_total", labels) == 0
        latency = {"event_type": event_type, "le": "+Inf"}
        assert r.get_sample_value("payment_events_commit_to_ack_seconds_bucket", latency) == 0
    for topic in ("payment.events", "refunds"):
        for outcome, reasons in known_reasons().items():
            for reason in reasons:
                labels = {"topic": topic, "outcome": outcome, "reason": reason}
                assert r.get_sample_value("payment_events_failed_total", labels) == 0
    dead = {"topic": "refunds", "outcome": "dead_lettered"}
    for reason in ("retry_budget_exhausted", "msg_size_too_large", "malformed_row"):
        assert r.get_sample_value("payment_events_failed_total", {**dead, "reason": reason}) == 0
    obs.dead_lettered("RefundFailed", "refunds", "MSG_SIZE_TOO_LARGE", 1)
    assert r.get_sample_value("payment_events_failed_total", {**dead, "reason": "msg_size_too_large"}) == 1


def test_reason_labels_are_capped() -> None:
    """Past MAX_REASONS distinct unknown reasons, new ones are counted as 'other' (bounded cardinality)."""
    obs = PrometheusObserver()
    for i in range(MAX_REASONS + 5):
        obs.retried("X", "t", f"reason {i}", 1)
    samples = [
        s for m in obs.registry.collect() if m.name == "payment_events_failed" for s in m.samples
        if s.name.endswith("_total")
    ]
    reasons = {s.labels["reason"] for s in samples}
    assert len(reasons) == MAX_REASONS + 1
    assert "other" in reasons


def test_known_reasons_never_count_against_the_cap() -> None:
    """A known code keeps its own label even after MAX_REASONS unknown codes were seen."""
    obs = PrometheusObserver()
    for i in range(MAX_REASONS + 5):
        obs.retried("X", "t", f"odd {i}", 1)
    obs.dead_lettered("X", "t", "RETRY_BUDGET_EXHAUSTED", 1)
    labels = {"topic": "t", "outcome": "dead_lettered", "reason": "retry_budget_exhausted"}
    assert _value(obs.registry, "payment_events_failed_total", labels) == 1


def test_gauges_and_batch_histogram() -> None:
    """Backlog, oldest age, shards, reachability and batch sizes are exported."""
    obs = PrometheusObserver()
    obs.backlog(42, 12.5)
    obs.dead_rows(3)
    obs.shards_owned(8)
    obs.broker_reachable(False)
    obs.database_reachable(True)
    obs.batch(250)
    r = obs.registry
    assert _value(r, "payment_events_backlog_pending") == 42
    assert _value(r, "payment_events_oldest_pending_age_seconds") == 12.5
    assert _value(r, "payment_events_dead_rows") == 3
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
    obs.kafka_statistics(json.dumps(_STATS))
    text = generate_latest(obs.registry).decode()
    for name in METRIC_NAMES:
        assert name in text


def test_build_info_and_process_metrics() -> None:
    """build_info carries the version labels with value 1; process_* and python_info are on the registry."""
    obs = PrometheusObserver(version="1.2.3")
    r = obs.registry
    librdkafka = confluent_kafka.libversion()[0]
    labels = {"version": "1.2.3", "librdkafka": librdkafka, "python": platform.python_version()}
    assert _value(r, "payment_events_build_info", labels) == 1
    assert _value(r, "process_resident_memory_bytes") > 0
    assert _value(r, "process_cpu_seconds_total") >= 0
    names = {m.name for m in r.collect()}
    assert "python_info" in names
    assert PrometheusObserver(process_metrics=False).registry.get_sample_value("process_open_fds") is None


def test_default_build_version_is_the_installed_package() -> None:
    """Without an explicit version, build_info names the installed payment-events version."""
    registry = PrometheusObserver().registry
    samples = [s for m in registry.collect() if m.name == "payment_events_build_info" for s in m.samples]
    assert [s.labels["version"] for s in samples] == [metadata.version("payment-events")]


_STATS: dict[str, object] = {
    "name": "rdkafka#producer-1",
    "type": "producer",
    "msg_cnt": 120,
    "msg_size": 168_000,
    "txretries": 7,
    "brokers": {
        "127.0.0.1:19092/bootstrap": {"nodeid": -1, "nodename": "127.0.0.1:19092", "state": "UP",
                                       "txretries": 0, "rtt": {"avg": 0}},
        "127.0.0.1:19092/1": {"nodeid": 1, "nodename": "127.0.0.1:19092", "state": "UP", "txretries": 7,
                              "rtt": {"avg": 2500, "p99": 9000}},
        "127.0.0.1:19093/2": {"nodeid": 2, "nodename": "127.0.0.1:19093", "state": "DOWN", "txretries": 0,
                              "rtt": {"avg": 0}},
    },
}


def test_librdkafka_statistics_become_gauges_and_a_retry_counter() -> None:
    """Queue depth, bytes, per-broker rtt (seconds), brokers up and retries come from the stats JSON; a
    smaller txretries (a fresh producer) counts from zero again."""
    obs = PrometheusObserver()
    r = obs.registry
    obs.kafka_statistics(json.dumps(_STATS))
    assert _value(r, "payment_events_kafka_queue_messages") == 120
    assert _value(r, "payment_events_kafka_queue_bytes") == 168_000
    assert _value(r, "payment_events_kafka_broker_rtt_seconds", {"broker": "127.0.0.1:19092/1"}) == 0.0025
    down = {"broker": "127.0.0.1:19093/2"}
    assert r.get_sample_value("payment_events_kafka_broker_rtt_seconds", down) is None
    assert _value(r, "payment_events_kafka_brokers_up") == 1
    assert _value(r, "payment_events_kafka_request_retries_total") == 7
    obs.kafka_statistics(json.dumps({**_STATS, "txretries": 10}))
    assert _value(r, "payment_events_kafka_request_retries_total") == 10
    obs.kafka_statistics(json.dumps({**_STATS, "txretries": 2}))  # a rebuilt producer starts at 0
    assert _value(r, "payment_events_kafka_request_retries_total") == 12
    obs.kafka_statistics("not json")  # never raises
    assert _value(r, "payment_events_kafka_queue_messages") == 120


def test_real_librdkafka_statistics_reach_the_gauges() -> None:
    """A real librdkafka producer (no broker needed) calls the statistics callback through the relay's
    producer adapter, and its JSON sets the queue gauge."""
    obs = PrometheusObserver()
    clients: list[confluent_kafka.Producer] = []

    def factory(config: dict[str, object]) -> confluent_kafka.Producer:
        clients.append(confluent_kafka.Producer(config))
        return clients[-1]

    producer = KafkaBatchProducer(
        producer_config("127.0.0.1:1", {"statistics.interval.ms": 100}),
        factory=factory,
        statistics=obs.kafka_statistics,
    )
    try:
        producer._send([OutgoingMessage("t", b"k", b"v", ())])  # queue without waiting (no broker here)
        deadline = time.monotonic() + 10
        while obs.registry.get_sample_value("payment_events_kafka_queue_messages") != 1:
            assert time.monotonic() < deadline, "no statistics arrived"
            clients[0].poll(0.1)  # serves stats_cb (the adapter's wait() would purge at its deadline)
        assert _value(obs.registry, "payment_events_kafka_brokers_up") == 0
    finally:
        producer.close(0.0)


class _Exploding(NullObserver):
    def published(self, event_type: str, topic: str, commit_to_ack_seconds: object) -> None:
        raise RuntimeError("boom")


def test_fan_out_survives_a_failing_observer() -> None:
    """One observer raising does not stop the others from getting the report."""
    obs = PrometheusObserver()
    fan: RelayObserver = FanOutObserver(_Exploding(), obs)
    fan.published("A", "t", [0.1])
    fan.backlog(1, 2.0)
    fan.dead_rows(4)
    assert _value(obs.registry, "payment_events_published_total", {"event_type": "A", "topic": "t"}) == 1
    assert _value(obs.registry, "payment_events_backlog_pending") == 1
    assert _value(obs.registry, "payment_events_dead_rows") == 4
