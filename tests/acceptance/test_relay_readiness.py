"""Readiness follows the broker: a relay process reports not-ready while its (throwaway) broker is down,
alerts when the outage and the oldest pending event pass their thresholds, and is ready and publishing
again (alerts resolved) once the broker is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.support import RelayProcess, WebhookReceiver, cli_env
from tests.brokers import ThrowawayBroker, wait_for
from tests.integration.relay_support import migrated_engine, payment_event, write


@pytest.fixture
def broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[ThrowawayBroker]:
    """A broker of this test's own (the shared one is never stopped); needs the services' jars."""
    own = ThrowawayBroker(tmp_path / "kafka")
    own.start()
    yield own
    own.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A local webhook receiver."""
    r = WebhookReceiver()
    yield r
    r.close()


def test_readiness_turns_false_while_the_broker_is_down_and_true_when_it_returns(
    tmp_path: Path, broker: ThrowawayBroker, receiver: WebhookReceiver
) -> None:
    """/readyz is 503 with broker=false during the outage (broker_unreachable and outbox_stuck alerts fire),
    then 200 with the stuck event published and both alerts resolved."""
    database_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = cli_env(
        database_url=database_url,
        kafka_bootstrap_servers=broker.bootstrap,
        topic="readiness.events",
        dlq_topic="readiness.dlq",
        topic_partitions="1",
        alert_broker_unreachable="2s",
        alert_oldest_pending_age="2s",
        alert_webhook_url=receiver.url,
        relay_poll_interval="100ms",
        relay_backlog_interval="1s",
        relay_backoff_cap="2s",
        relay_delivery_timeout="5s",
    )
    migrated_engine(database_url).dispose()
    relay = RelayProcess(env, tmp_path)
    try:
        relay.wait_serving()
        wait_for(lambda: relay.get("/readyz")[0] == 200, 30, "ready with the broker up")

        broker.stop()
        wait_for(
            lambda: relay.get_json("/readyz")[1]["checks"]["broker"] is False, 60, "broker=false in /readyz"
        )
        status, body = relay.get_json("/readyz")
        assert status == 503, body
        assert body["status"] == "not_ready"
        assert relay.get("/healthz")[0] == 200  # alive: the loop still runs
        assert relay.metric("payment_events_broker_reachable") == 0
        wait_for(
            lambda: any(a["alert"] == "broker_unreachable" for a in receiver.received()),
            60,
            "the broker_unreachable webhook alert",
        )
        engine = migrated_engine(database_url)
        try:
            write(engine, "readiness.events", [payment_event("pay-stuck", 0)])
        finally:
            engine.dispose()
        wait_for(
            lambda: any(a["alert"] == "outbox_stuck" for a in receiver.received()),
            60,
            "the outbox_stuck webhook alert",
        )

        broker.start()
        wait_for(lambda: relay.get("/readyz")[0] == 200, 90, "ready again with the broker back")
        engine = migrated_engine(database_url)
        try:
            write(engine, "readiness.events", [payment_event("pay-after", i) for i in range(3)])
        finally:
            engine.dispose()
        wait_for(
            lambda: relay.metric("payment_events_published_total", {"topic": "readiness.events"}) == 4,
            60,
            "the stuck event and the new ones published after the broker returned",
        )
        wait_for(
            lambda: {(a["alert"], a["status"]) for a in receiver.received()}
            >= {("broker_unreachable", "resolved"), ("outbox_stuck", "resolved")},
            30,
            "both alerts resolved",
        )
    finally:
        code = relay.stop()
    assert code == 0, relay.output()
