"""The shipped alert rules and dashboard only use metrics the relay exports, so they cannot rot silently."""

from __future__ import annotations

import json
import re
from pathlib import Path

from payment_events.ops.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[3]
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in METRIC_NAMES:
            return name.removesuffix(suffix)
    return name


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"\bpayment_events_[a-z_]+", text))


def test_alert_rules_use_exported_metrics() -> None:
    """Every payment_events_* name in deploy/prometheus/alerts.yml is an exported metric."""
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    names = _referenced(text)
    assert names, "the rules reference no metric"
    unknown = {n for n in names if n not in METRIC_NAMES and _base(n) not in METRIC_NAMES}
    assert unknown == set()
    assert text.count("- alert:") >= 8
    assert "severity: critical" in text


def test_dashboard_is_valid_json_over_exported_metrics() -> None:
    """The Grafana dashboard parses, has panels with queries, and queries only exported metrics."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "payment-events.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(expressions) >= 10
    names = set().union(*(_referenced(e) for e in expressions))
    unknown = {n for n in names if n not in METRIC_NAMES and _base(n) not in METRIC_NAMES}
    assert unknown == set()
    covered = {_base(n) for n in names}
    assert {
        "payment_events_published_total",
        "payment_events_commit_to_ack_seconds",
        "payment_events_backlog_pending",
        "payment_events_oldest_pending_age_seconds",
        "payment_events_shards_owned",
    } <= covered


def _dashboard() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((ROOT / "deploy" / "grafana" / "payment-events.json").read_text())
    return loaded


def _targets() -> list[str]:
    panels = _dashboard()["panels"]
    assert isinstance(panels, list)
    return [t["expr"] for panel in panels for t in panel["targets"]]


def test_dashboard_has_job_instance_and_topic_variables() -> None:
    """The dashboard offers job (one environment at a time), instance and topic variables."""
    templating = _dashboard()["templating"]
    assert isinstance(templating, dict)
    variables = {v["name"]: v for v in templating["list"]}
    assert {"datasource", "job", "instance", "topic"} <= set(variables)
    assert variables["job"]["multi"] is False
    assert variables["job"]["includeAll"] is False
    assert variables["instance"]["includeAll"]
    assert variables["topic"]["includeAll"]


def test_every_query_is_filtered_by_job_and_instance() -> None:
    """Each metric selector in every panel carries the job and instance filters, and selectors of
    metrics that have a topic label carry the topic filter: two environments never merge."""
    selector = re.compile(r"\b((?:payment_events|process)_[a-z_]+|up)\{([^}]*)\}")
    selectors = [m for e in _targets() for m in selector.finditer(e)]
    bare = [e for e in _targets() if re.search(r"\b(payment_events_[a-z_]+|process_[a-z_]+)\b(?!\{)", e)]
    assert bare == []
    assert selectors
    for match in selectors:
        assert 'job=~"$job"' in match.group(2), match.group(0)
        assert 'instance=~"$instance"' in match.group(2), match.group(0)
        if match.group(1) in {"payment_events_published_total", "payment_events_failed_total",
                              "payment_events_dead_lettered_total", "payment_events_retried_total"}:
            assert 'topic=~"$topic"' in match.group(2), match.group(0)


def test_dashboard_and_alert_agree_on_broker_reachability() -> None:
    """The broker stat shows min() (0 when ANY relay cannot reach the brokers) and the alert fires per
    relay, so both go red together when one of two relays loses the broker."""
    broker = [e for e in _targets() if "payment_events_broker_reachable" in e]
    assert any(e.startswith("min(") for e in broker)
    assert not any("max(" in e for e in broker)
    rules = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert "expr: payment_events_broker_reachable == 0" in rules


def test_dashboard_annotates_firing_alerts() -> None:
    """An annotation query marks the shipped alerts firing for the selected job."""
    annotations = _dashboard()["annotations"]
    assert isinstance(annotations, dict)
    exprs = [a.get("expr", "") for a in annotations["list"]]
    assert any('ALERTS{alertname=~"PaymentEvents.*"' in e and 'job=~"$job"' in e for e in exprs)
