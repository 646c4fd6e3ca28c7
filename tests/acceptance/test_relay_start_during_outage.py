"""A relay started while its broker is down (issue 11, defect 8): it stays up, serves /healthz live and
/readyz not ready with the reason, logs what it waits for, and begins once the broker answers."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.support import RelayProcess, cli_env
from tests.brokers import ThrowawayBroker, wait_for
from tests.integration.relay_support import migrated_engine, payment_event, state_counts, write


def test_a_relay_started_during_a_broker_outage_waits_serving_health_then_begins(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """With no broker the relay is live and not ready (waiting_for names the broker) and logs
    relay.waiting_for_broker; when the broker starts the relay creates its topics and publishes."""
    broker = ThrowawayBroker(tmp_path / "kafka")  # formatted, not started: the outage
    database_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    env = cli_env(
        database_url=database_url,
        kafka_bootstrap_servers=broker.bootstrap,
        topic="outage.events",
        dlq_topic="outage.dlq",
        topic_partitions="1",
        relay_poll_interval="100ms",
        relay_backoff_cap="2s",
        relay_delivery_timeout="5s",
    )
    engine = migrated_engine(database_url)
    write(engine, "outage.events", [payment_event("pay-1", 1)])
    relay = RelayProcess(env, tmp_path)
    try:
        relay.wait_serving()
        wait_for(lambda: "waiting_for" in relay.get_json("/readyz")[1], 30, "readyz to name its wait")
        status, body = relay.get_json("/readyz")
        assert status == 503
        assert broker.bootstrap in body["waiting_for"]
        assert relay.get("/healthz")[0] == 200
        wait_for(lambda: "relay.waiting_for_broker" in relay.output(), 10, "the waiting log line")
        broker.start()
        wait_for(lambda: state_counts(engine) == {"published": 1}, 120, "the event to be published")
        wait_for(lambda: relay.get("/readyz")[0] == 200, 30, "ready once the broker answered")
        assert relay.stop() == 0
    finally:
        relay.kill()
        broker.stop()
        engine.dispose()
