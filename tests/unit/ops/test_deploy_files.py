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
