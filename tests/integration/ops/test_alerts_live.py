"""A real Prometheus (Debian's package) scraping a running relay and evaluating the shipped rules.

The short version that runs in `make test`: the first dead letter fires its alert, a target that does not
answer turns PaymentEventsRelayDown pending at once (it fires after its `for:`), and every dashboard query
is valid PromQL. The full scripted fault scenario (stuck outbox, broker unreachable on one of two relays,
relay down, each within its `for:` window) is `deploy/check-alerts`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.support import RelayProcess, cli_env, run_cli
from tests.brokers import free_port, wait_for
from tests.integration.relay_support import migrated_engine, oversized_event, payment_event, write
from tests.prometheus_live import PrometheusServer, prometheus_binary

ROOT = Path(__file__).resolve().parents[3]
JOB = "payment-events-test"


@pytest.fixture
def prometheus_present() -> None:
    """The prometheus binary exists (installed by `scripts/services up`); under CI its absence fails."""
    if prometheus_binary() is None:
        message = "prometheus is missing: install Debian's `prometheus` package (`scripts/services up` does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def dashboard_queries(job: str) -> list[str]:
    """Every query of the Grafana dashboard with its variables filled in for one job."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "payment-events.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    values = {"$job": job, "$instance": ".*", "$topic": ".*", "$__rate_interval": "1m"}
    out = []
    for expr in exprs:
        filled = expr
        for name, value in values.items():
            filled = filled.replace(name, value)
        out.append(filled)
    return out


@pytest.mark.usefixtures("prometheus_present")
def test_real_prometheus_fires_the_first_dead_letter_and_sees_a_target_down(
    tmp_path: Path, *, pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Prometheus evaluating the shipped rules fires PaymentEventsDeadLettered for the very first dead
    letter of a running relay, has PaymentEventsRelayDown pending for a target that does not answer (only
    that one), and answers every dashboard query, with data for the main panels."""
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    env = cli_env(
        database_url=pg_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic=topic,
        dlq_topic=dlq,
        relay_poll_interval="100ms",
        relay_backlog_interval="1s",
    )
    upgraded = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    relay = RelayProcess(env, tmp_path)
    prometheus: PrometheusServer | None = None
    try:
        relay.wait_serving()
        silent = f"127.0.0.1:{free_port()}"
        live = f"127.0.0.1:{relay.port}"
        prometheus = PrometheusServer(tmp_path / "prometheus", {JOB: [live, silent]}).start()
        labels = f'job="{JOB}", topic="{topic}", event_type="PaymentSucceeded"'
        series = f"payment_events_dead_lettered_total{{{labels}}}"

        def zero_samples() -> bool:
            assert prometheus is not None
            result = prometheus.query(f"count_over_time({series}[1m])")
            return bool(result) and float(result[0]["value"][1]) >= 3

        wait_for(zero_samples, 60, "three scrapes of the dead-letter counter at 0")
        assert float(prometheus.query(series)[0]["value"][1]) == 0

        engine = migrated_engine(pg_url)
        try:
            write(engine, topic, [payment_event("pay-ok", i) for i in range(10)])
            write(engine, topic, [oversized_event("pay-poison")])
        finally:
            engine.dispose()
        took = prometheus.wait_alert(
            "PaymentEventsDeadLettered", 60, job=JOB, event_type="PaymentSucceeded", topic=topic
        )
        assert took < 60
        fired = prometheus.alert("PaymentEventsDeadLettered", job=JOB, topic=topic)
        assert fired is not None
        assert fired["annotations"]["runbook_url"] == "docs/operations.md#dead-letters"

        prometheus.wait_alert("PaymentEventsRelayDown", 30, state="pending", instance=silent)
        assert prometheus.alert("PaymentEventsRelayDown", "pending", instance=live) is None
        assert prometheus.alert("PaymentEventsNoRelay", "pending") is None
        assert prometheus.alert("PaymentEventsBrokerUnreachable", "pending") is None

        dead_rows = f'payment_events_dead_rows{{job="{JOB}"}} == 1'
        wait_for(lambda: bool(prometheus and prometheus.query(dead_rows)), 30, "the dead-rows gauge at 1")
        published = f'sum(payment_events_published_total{{job="{JOB}", topic="{topic}"}}) == 10'
        wait_for(lambda: bool(prometheus and prometheus.query(published)), 30, "10 published in Prometheus")
        empty = [expr for expr in dashboard_queries(JOB) if not prometheus.query(expr)]
        # Valid PromQL everywhere (an invalid query fails in query()); these may be empty on a quiet relay:
        may_be_empty = ("failed_total", "broker_rtt", "kafka_request_retries", "process_start", "ALERTS")
        assert [e for e in empty if not any(word in e for word in may_be_empty)] == []
    finally:
        if prometheus is not None:
            prometheus.stop()
        code = relay.stop()
    assert code == 0, relay.output()
