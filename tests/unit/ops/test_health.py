"""Health state and the HTTP server: /healthz, /readyz and /metrics answer from the relay's reports."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from payment_events.ops.health import HealthServer, HealthState
from payment_events.ops.metrics import PrometheusObserver
from payment_events.ops.probes import ProbeSink, ReachabilityProbe
from payment_events.relay.observer import FanOutObserver


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 -- local test server
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, body


def test_liveness_needs_a_recent_tick() -> None:
    """Alive during startup grace and while ticking; stalled once no tick came within the timeout."""
    clock = _Clock()
    state = HealthState(liveness_timeout=30, clock=clock)
    assert state.liveness()[0]
    clock.now += 31
    alive, body = state.liveness()
    assert not alive
    assert body["status"] == "stalled"
    state.backlog(0, 0.0)
    assert state.liveness()[0]


def test_readiness_needs_database_broker_and_a_shard() -> None:
    """Ready only when the database answers, the broker is reachable and a shard is owned."""
    state = HealthState()
    assert not state.readiness()[0]
    state.database_reachable(True)
    state.broker_reachable(True)
    assert not state.readiness()[0]
    state.shards_owned(4)
    ready, body = state.readiness()
    assert ready
    assert body["shards_owned"] == 4
    state.broker_reachable(False)
    ready, body = state.readiness()
    assert not ready
    assert body["checks"]["broker"] is False
    state.broker_reachable(True)
    state.stopping()
    assert not state.readiness()[0]


def test_probe_reports_failures_as_unreachable() -> None:
    """A probe check that raises or returns False reports unreachable; True reports reachable."""
    state = HealthState()

    def broken() -> bool:
        raise OSError("connection refused")

    probe = ReachabilityProbe(state, broker_check=broken, database_check=lambda: True)
    probe.probe_once()
    _, body = state.readiness()
    assert body["checks"]["broker"] is False
    assert body["checks"]["database"] is True


@pytest.fixture
def server() -> Iterator[tuple[HealthServer, HealthState, PrometheusObserver]]:
    """A health server on a free localhost port."""
    state = HealthState()
    metrics = PrometheusObserver()
    srv = HealthServer(state, metrics.registry, host="127.0.0.1", port=0).start()
    try:
        yield srv, state, metrics
    finally:
        srv.stop()


def test_http_endpoints(server: tuple[HealthServer, HealthState, PrometheusObserver]) -> None:
    """The server answers /healthz, /readyz (503 then 200) and /metrics over real HTTP."""
    srv, state, metrics = server
    base = f"http://127.0.0.1:{srv.port}"
    status, body = _get(base + "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, body = _get(base + "/readyz")
    assert status == 503
    assert json.loads(body)["status"] == "not_ready"
    fan = FanOutObserver(state, metrics)
    fan.database_reachable(True)
    fan.broker_reachable(True)
    fan.shards_owned(2)
    fan.published("PaymentSucceeded", "payment.events", [0.02])
    status, body = _get(base + "/readyz")
    assert status == 200
    assert json.loads(body)["checks"] == {
        "database": True, "broker": True, "shards": True, "running": True, "topics": True, "started": True
    }
    status, body = _get(base + "/metrics")
    assert status == 200
    assert b'payment_events_published_total{event_type="PaymentSucceeded",topic="payment.events"} 1.0' in body
    status, _ = _get(base + "/nope")
    assert status == 404


def test_server_binds_localhost_by_default() -> None:
    """Without a host the server listens on 127.0.0.1 only."""
    srv = HealthServer(HealthState(), PrometheusObserver().registry, port=0)
    try:
        assert srv.host == "127.0.0.1"
    finally:
        srv.stop()


def test_probe_sink_sets_readiness_without_a_liveness_tick() -> None:
    """Probe results change readiness and metrics, but do not count as the relay loop being alive."""
    clock = _Clock()
    state = HealthState(liveness_timeout=10, clock=clock)
    metrics = PrometheusObserver()
    sink = ProbeSink(state, metrics)
    clock.now += 11
    ReachabilityProbe(sink, broker_check=lambda: True, database_check=lambda: False).probe_once()
    assert not state.liveness()[0]
    _, body = state.readiness()
    assert body["checks"]["broker"] is True
    assert body["checks"]["database"] is False
    assert metrics.registry.get_sample_value("payment_events_database_reachable") == 0


def test_readiness_names_a_missing_topic_and_what_a_starting_relay_waits_for() -> None:
    """A missing topic and a start-up wait make /readyz not ready, naming the topic and the wait."""
    state = HealthState()
    state.set_broker(True)
    state.set_database(True)
    state.shards_owned(1)
    state.waiting_for("the Kafka broker at b:9092")
    ready, details = state.readiness()
    assert not ready
    assert details["waiting_for"] == "the Kafka broker at b:9092"
    state.waiting_for(None)
    state.topic_missing("payment.refunds", True)
    ready, details = state.readiness()
    assert not ready
    assert details["missing_topics"] == ["payment.refunds"]
    state.topic_missing("payment.refunds", False)
    assert state.readiness()[0]
