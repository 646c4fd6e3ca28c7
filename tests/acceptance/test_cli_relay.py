"""`payment-events relay` as a process: HTTP endpoints, publishing, dead letters with a webhook alert,
graceful SIGTERM, and the dlq/outbox commands on what it left behind."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.support import RelayProcess, WebhookReceiver, cli_env, run_cli
from tests.brokers import wait_for
from tests.conftest import KcatMessage
from tests.integration.relay_support import migrated_engine, oversized_event, payment_event, write


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A local webhook receiver."""
    r = WebhookReceiver()
    yield r
    r.close()


def test_relay_publishes_serves_health_alerts_and_stops_gracefully(
    tmp_path: Path,
    *,
    pg_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Callable[..., list[KcatMessage]],
    receiver: WebhookReceiver,
) -> None:
    """A relay process publishes committed events, dead-letters a poison event (webhook alert, DLQ topic),
    reports it all on /metrics, /healthz and /readyz, and exits 0 on SIGTERM; dlq tools then replay."""
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    env = cli_env(
        database_url=pg_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic=topic,
        dlq_topic=dlq,
        alert_webhook_url=receiver.url,
        relay_poll_interval="100ms",
    )
    upgrade = run_cli("db", "upgrade", "--json", env=env, cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    assert json.loads(upgrade.stdout)["to"] is not None

    relay = RelayProcess(env, tmp_path)
    try:
        relay.wait_serving()
        wait_for(lambda: relay.get("/readyz")[0] == 200, 30, "readiness")
        _, ready = relay.get_json("/readyz")
        assert ready["checks"] == {
            "database": True, "broker": True, "shards": True, "running": True, "topics": True, "started": True
        }

        engine = migrated_engine(pg_url)
        try:
            write(engine, topic, [payment_event("pay-ok", i) for i in range(20)])
            write(engine, topic, [oversized_event("pay-poison"), oversized_event("pay-poison")])
        finally:
            engine.dispose()

        messages = kcat_consume(topic, 20)
        assert len({m.headers.get("ce_id") for m in messages}) == 20
        dead_copies = kcat_consume(dlq, 2)
        assert len(dead_copies) == 2
        assert all(m.headers.get("dlq-error-code") == b"MSG_SIZE_TOO_LARGE" for m in dead_copies)

        wait_for(lambda: bool(receiver.received()), 30, "the dead-letter webhook alert")
        alert = receiver.received()[0]
        assert alert["alert"] == "event_dead_lettered"
        assert alert["status"] == "firing"
        assert alert["labels"]["event_type"] == "PaymentSucceeded"
        assert alert["labels"]["topic"] == topic

        def published() -> float:
            return relay.metric("payment_events_published_total", {"topic": topic}) or 0.0

        wait_for(lambda: published() == 20, 30, "published_total == 20 on /metrics")
        assert relay.metric("payment_events_dead_lettered_total", {"topic": topic}) == 2
        latency_count = "payment_events_commit_to_ack_seconds_count"
        assert relay.metric(latency_count, {"event_type": "PaymentSucceeded"}) == 20
        assert relay.metric("payment_events_broker_reachable") == 1
        assert relay.get_json("/healthz")[0] == 200
        assert "alert.firing" in relay.output()
    finally:
        code = relay.stop()
    assert code == 0, relay.output()
    assert "relay.stopped" in relay.output()
    assert "x" * 100 not in relay.output()  # the poison payload never reached the logs

    status_out = run_cli("outbox", "status", "--json", env=env, cwd=tmp_path)
    assert status_out.returncode == 0, status_out.stderr
    stats = json.loads(status_out.stdout)
    assert stats["dead"] == 2
    assert stats["pending"] == 0
    assert stats["published_last_minute"] == 20

    listed = run_cli("dlq", "list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    dead = json.loads(listed.stdout)
    assert [d["key"] for d in dead] == ["pay-poison", "pay-poison"]
    first, second = dead[0]["id"], dead[1]["id"]
    assert first < second

    shown = run_cli("dlq", "show", str(first), "--json", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["state"] == "dead"
    assert "payload" not in row
    assert row["payload_bytes"] > 1_000_000
    assert run_cli("dlq", "show", "999999", env=env, cwd=tmp_path).returncode == 1

    replayed = run_cli("dlq", "replay", "--all", "--yes", "--json", env=env, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout) == {"replayed": 2}
    after = json.loads(run_cli("outbox", "status", "--json", env=env, cwd=tmp_path).stdout)
    assert (after["pending"], after["dead"]) == (2, 0)
    # Replay is in place: same ids, so the key's events keep their order.
    for row_id in (first, second):
        again = json.loads(run_cli("dlq", "show", str(row_id), "--json", env=env, cwd=tmp_path).stdout)
        assert (again["state"], again["attempts"], again["key"]) == ("pending", 0, "pay-poison")
