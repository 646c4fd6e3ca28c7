"""The short fault-injection suite: the chaos scenarios with small counts, inside the normal test run.

Each test runs the same scenario code as ``python -m tests.chaos`` (real relay processes, real faults,
verdict from the audit of the real topic plus kcat) and asserts its verdict; the one-line figures are in
the assertion message. No wall-clock figure is asserted here (the full suite checks recovery times).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.chaos import scenarios
from tests.chaos.harness import ScenarioResult
from tests.chaos.scale import SHORT

pytestmark = [pytest.mark.usefixtures("_pg_admin_url", "kafka_bootstrap"), pytest.mark.slow]


def check(result: ScenarioResult) -> None:
    """Print the scenario's line and fail with it unless the scenario passed."""
    print(result.line())
    assert result.passed, result.line()


def test_relay_sigkill_during_a_stream_loses_nothing() -> None:
    """SIGKILLing and restarting the relay every few seconds loses no event and keeps per-key order."""
    result = scenarios.relay_sigkill(SHORT)
    check(result)
    assert result.committed == SHORT.relay_kill_events
    assert result.delivered == result.committed


def test_pg_terminate_backend_on_relay_sessions_loses_nothing() -> None:
    """Killing the relay's PostgreSQL sessions mid-stream: the relay reconnects and nothing is lost."""
    check(scenarios.pg_terminate(SHORT))


def test_visibility_gap_held_transaction_is_published_after_commit() -> None:
    """Concurrent writers with commit delays and one long-held transaction: no event is skipped."""
    result = scenarios.visibility_gap(SHORT)
    check(result)
    assert result.delivered == result.committed


def test_oversized_event_and_illegal_topic_are_dead_lettered_without_holding_others() -> None:
    """An event above the broker's size limit and a row with an illegal topic name go dead with a reason;
    every other event, including the same keys' later ones, is delivered."""
    check(scenarios.poison(SHORT, ("oversized", "illegal-topic")))


@pytest.mark.xfail(
    strict=True,
    reason="relay/store bug (see the chaos report): a row whose headers column is not valid JSON makes "
    "SqlOutboxStore.claim raise SerializationError on every cycle, blocking all keys; an empty payload "
    "is published as an empty Kafka message instead of being dead-lettered",
)
def test_malformed_rows_are_dead_lettered_without_holding_others() -> None:
    """Rows written by hand with invalid headers JSON or an empty payload go dead with a reason, and
    nothing else is held up."""
    check(scenarios.poison(replace(SHORT, drain_timeout=20.0), ("bad-headers", "empty-payload")))
