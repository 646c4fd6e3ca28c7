"""The shipped Prometheus rules: promtool accepts them, every rule has a unit test that passes, and every
runbook_url lands on a real heading of the named document."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.prometheus_live import promtool_or_fail

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown document (headings inside code fences do not count)."""
    found: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6}\s+(.*)$", line)):
            found.add(github_anchor(match.group(1)))
    return found


def test_promtool_check_rules_accepts_the_rules() -> None:
    """`promtool check rules` accepts alerts.yml."""
    result = subprocess.run(
        [promtool_or_fail(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules alerts_test.yml` passes: each alert fires when and how the tests say."""
    result = subprocess.run(
        [promtool_or_fail(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_rule_has_a_firing_and_a_silent_unit_test() -> None:
    """Each alert of alerts.yml is expected to fire in some promtool test and to be silent in another
    (before its `for:` window or for a healthy series), so no rule is untested."""
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - firing == set()
    assert names - silent == set()


def test_every_rule_has_severity_summary_description_and_runbook_url() -> None:
    """Every rule carries a severity label and summary, description and runbook_url annotations."""
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        assert "runbook" not in rule["annotations"], rule["alert"]


def test_every_runbook_url_resolves_to_a_heading() -> None:
    """Each runbook_url names a file of this repository and an anchor that is one of its headings."""
    for rule in _rules():
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        document = ROOT / path
        assert document.is_file(), f"{rule['alert']}: {path} does not exist"
        assert anchor in anchors(document.read_text()), f"{rule['alert']}: no heading for #{anchor} in {path}"


def test_the_anchor_check_itself_rejects_a_missing_heading() -> None:
    """The anchor extraction follows GitHub's rules, and a heading inside a code fence does not count."""
    doc = "# Top\n## Relay down or stalled\n```\n## Not a heading\n```\n### Retries (transient)\n"
    assert anchors(doc) == {"top", "relay-down-or-stalled", "retries-transient"}
    assert "relay-down" not in anchors(doc)


def test_aggregations_keep_the_job_so_environments_never_merge() -> None:
    """Every aggregation in the rules keeps `job` (by (job ...)), and reachability is judged per relay."""
    for rule in _rules():
        expr = " ".join(str(rule["expr"]).split())
        for match in re.finditer(r"\b(sum|max|min|avg|count)\b\s*(by\s*\(([^)]*)\))?\s*\(", expr):
            if rule["alert"] == "PaymentEventsNoRelay":
                continue  # absent() across every job is the point of that rule
            assert match.group(2) is not None, f"{rule['alert']}: {expr}"
            assert "job" in match.group(3), f"{rule['alert']}: {expr}"
    broker = next(r for r in _rules() if r["alert"] == "PaymentEventsBrokerUnreachable")
    assert "max(" not in broker["expr"].replace(" ", "")
