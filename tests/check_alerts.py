"""The scripted fault scenario behind `deploy/check-alerts`: a real Prometheus evaluating the shipped rules
fires each alert within its `for:` window.

Two relay processes share one PostgreSQL outbox: relay A publishes to the shared broker (127.0.0.1:19092),
relay B to a throwaway broker of its own. Prometheus (Debian's binary, free port, temporary config) scrapes
both every second. Then, each fault at a known instant:

1. dead letter: an event larger than the broker accepts -> PaymentEventsDeadLettered (no `for:`);
2. stuck outbox: a row committed 10 minutes ago and waiting for a retry in an hour
   -> PaymentEventsOutboxStuck (`for: 2m`);
3. broker unreachable on one of two relays: relay B's broker stops -> PaymentEventsBrokerUnreachable for
   relay B only (`for: 1m`);
4. relay down: relay A is killed with SIGKILL -> PaymentEventsRelayDown for relay A (`for: 1m`).

Each alert must fire within its `for:` plus a slack of 45 s (scrape, evaluation and the relay's 5 s
reachability probe). About 3 minutes. Prints one line per alert; exit status 0 when all fired in time.
Needs `scripts/services up` (PostgreSQL, Kafka, Java for the throwaway broker, Debian's prometheus).

    deploy/check-alerts            # or: .venv/bin/python -m tests.check_alerts
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from payment_events.outbox.table import outbox_table
from tests.acceptance.support import RelayProcess, cli_env, run_cli
from tests.brokers import ThrowawayBroker, wait_for
from tests.conftest import KAFKA_BOOTSTRAP, PG_ADMIN_URL
from tests.integration.relay_support import migrated_engine, oversized_event, payment_event, write
from tests.prometheus_live import PrometheusServer

JOB = "payment-events-check"
SLACK = 45.0
FOR = {
    "PaymentEventsDeadLettered": 0.0,
    "PaymentEventsOutboxStuck": 120.0,
    "PaymentEventsBrokerUnreachable": 60.0,
    "PaymentEventsRelayDown": 60.0,
}


def main(argv: list[str] | None = None) -> int:
    """Run the scenario; 0 when every alert fired within its window."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, config)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="check-alerts-"))
    name = f"pe_alerts_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    suffix = uuid.uuid4().hex[:8]
    topic, dlq = f"check-alerts-{suffix}", f"check-alerts-{suffix}.dlq"
    broker = ThrowawayBroker(workdir / "broker-b")
    relays: list[RelayProcess] = []
    prometheus: PrometheusServer | None = None
    results: dict[str, float | None] = dict.fromkeys(FOR)
    wrong = False
    try:
        broker.start()
        common = {
            "database_url": db_url,
            "topic": topic,
            "dlq_topic": dlq,
            "relay_poll_interval": "200ms",
            "relay_backlog_interval": "1s",
        }
        env_a = cli_env(kafka_bootstrap_servers=KAFKA_BOOTSTRAP, **common)
        env_b = cli_env(kafka_bootstrap_servers=broker.bootstrap, **common)
        upgraded = run_cli("db", "upgrade", env=env_a, cwd=workdir)
        assert upgraded.returncode == 0, upgraded.stderr
        engine = migrated_engine(db_url)
        _stuck_row(engine, topic)
        relays = [RelayProcess(env_a, workdir), RelayProcess(env_b, workdir)]
        for relay in relays:
            relay.wait_serving()
        relay_a, relay_b = (f"127.0.0.1:{r.port}" for r in relays)
        prometheus = PrometheusServer(workdir / "prometheus", {JOB: [relay_a, relay_b]}).start()
        series = f'payment_events_dead_lettered_total{{job="{JOB}", topic="{topic}"}}'
        wait_for(
            lambda: len(_query(prometheus, f"count by (instance) (count_over_time({series}[1m]) >= 3)")) == 2,
            90,
            "three scrapes of both relays' dead-letter counters at 0",
        )
        print(f"relays {relay_a} (shared broker) and {relay_b} (own broker) scraped by {prometheus.base}")

        write(engine, topic, [payment_event("pay-ok", i) for i in range(20)])
        write(engine, topic, [oversized_event("pay-poison")])
        engine.dispose()
        faults_at = time.monotonic()
        broker.stop()  # relay B's only broker: unreachable for B, not for A
        relays[0].kill()  # relay A down
        watch = {
            "PaymentEventsDeadLettered": {"topic": topic},
            "PaymentEventsOutboxStuck": {"job": JOB},
            "PaymentEventsBrokerUnreachable": {"instance": relay_b},
            "PaymentEventsRelayDown": {"instance": relay_a},
        }
        deadline = faults_at + max(FOR.values()) + SLACK
        while time.monotonic() < deadline and any(v is None for v in results.values()):
            for alert, labels in watch.items():
                if results[alert] is None and prometheus.alert(alert, **labels) is not None:
                    results[alert] = time.monotonic() - faults_at
            time.sleep(1)
        # Relay A reached its broker until it was killed: no broker alert may name it.
        wrong = any(
            a["labels"].get("alertname") == "PaymentEventsBrokerUnreachable"
            and a["labels"].get("instance") == relay_a
            for a in prometheus.alerts()
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
        for relay in relays:
            relay.kill()
        broker.stop()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    ok = not wrong
    print(f"{'alert':<34} {'for':>6} {'fired after':>12}  within for + {SLACK:.0f} s")
    for alert, took in results.items():
        window = FOR[alert] + SLACK
        fine = took is not None and took <= window
        ok = ok and fine
        shown = "never" if took is None else f"{took:.0f} s"
        print(f"{alert:<34} {FOR[alert]:>5.0f}s {shown:>12}  {'yes' if fine else 'NO'}")
    if wrong:
        print("PaymentEventsBrokerUnreachable also raised for relay A, which reaches its broker: wrong")
    if args.keep:
        print(f"logs and config kept in {workdir}")
    return 0 if ok else 1


def _stuck_row(engine: sa.Engine, topic: str) -> None:
    """One event committed 10 minutes ago whose next attempt is an hour away: a stuck outbox."""
    write(engine, topic, [payment_event("pay-stuck", 0)])
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            outbox_table.update().values(
                created_at=now - timedelta(minutes=10), attempts=1, next_attempt_at=now + timedelta(hours=1)
            )
        )


def _query(prometheus: PrometheusServer | None, expr: str) -> list[object]:
    assert prometheus is not None
    return list(prometheus.query(expr))


if __name__ == "__main__":
    sys.exit(main())
