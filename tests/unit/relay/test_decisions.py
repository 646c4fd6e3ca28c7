"""The relay's pure decisions: backoff, failure classification and per-key batch resolution."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payment_events.outbox.ports import OutboxRecord
from payment_events.relay.decisions import RetryPolicy, backoff_delay, is_outage, next_wait, resolve_batch
from payment_events.relay.delivery import (
    PERMANENT_CODES,
    RETRY_BUDGET_EXHAUSTED,
    TRANSIENT_CODES,
    Delivered,
    DeliveryError,
    Outcome,
    is_permanent,
)
from tests.unit.relay.fakes import T0

POLICY = RetryPolicy(base_seconds=0.5, cap_seconds=60.0, max_attempts=5)


def record(row_id: int, key: bytes, attempts: int = 0) -> OutboxRecord:
    """An outbox record with just the fields the decisions read."""
    return OutboxRecord(
        id=row_id,
        event_id=f"evt-{row_id}",
        event_type="PaymentSucceeded",
        schema_version=1,
        topic="payment.events",
        key=key,
        payload=b"{}",
        headers=(),
        shard=0,
        attempts=attempts,
        created_at=T0,
    )


TRANSIENT = DeliveryError("_MSG_TIMED_OUT", "timed out", retriable=True)
PERMANENT = DeliveryError("MSG_SIZE_TOO_LARGE", "too large", retriable=False)
OK = Delivered(0, 1)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("MSG_SIZE_TOO_LARGE", "permanent"),
        ("TOPIC_AUTHORIZATION_FAILED", "permanent"),
        ("INVALID_RECORD", "permanent"),
        ("SERIALIZATION", "permanent"),
        ("_MSG_TIMED_OUT", "transient"),
        ("_TRANSPORT", "transient"),
        ("NOT_LEADER_FOR_PARTITION", "transient"),
        ("_ALL_BROKERS_DOWN", "transient"),
        ("UNKNOWN_TOPIC_OR_PART", "transient"),
        ("_UNKNOWN_TOPIC", "transient"),
        ("NOT_ENOUGH_REPLICAS", "transient"),
        ("NO_REPORT", "transient"),
        ("SOMETHING_NEW_IN_A_LATER_CLIENT", "transient"),
    ],
)
def test_classification_table(code: str, expected: str) -> None:
    """Each librdkafka error name maps to the documented classification; unknown names are retried."""
    assert ("permanent" if is_permanent(DeliveryError(code)) else "transient") == expected


def test_code_sets_are_disjoint() -> None:
    """No code is both permanent and transient."""
    assert not PERMANENT_CODES & TRANSIENT_CODES


def test_possibly_persisted_and_fatal_are_never_permanent() -> None:
    """A message that may have been persisted, or a fatal producer error, is retried, never dead-lettered."""
    assert not is_permanent(DeliveryError("MSG_SIZE_TOO_LARGE", possibly_persisted=True))
    assert not is_permanent(DeliveryError("INVALID_RECORD", fatal=True))


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=10, max_value=3600),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_full_jitter_stays_within_bounds(attempt: int, base: float, cap: float, r: float) -> None:
    """The delay lies in [0, min(cap, base * 2**(attempt-1))] and scales with the random draw."""
    delay = backoff_delay(attempt, base, cap, lambda: r)
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    assert 0.0 <= delay <= ceiling
    assert delay == pytest.approx(r * ceiling)


def test_backoff_grows_exponentially_until_the_cap() -> None:
    """With the random draw at its maximum the ceiling doubles per attempt and stops at the cap."""
    ceilings = [backoff_delay(n, 0.5, 10.0, lambda: 1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_refuses_attempt_zero() -> None:
    """Attempts count failures, so zero is a caller bug."""
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(0, 1, 2)


def test_head_failure_blocks_later_records_of_its_key_only() -> None:
    """A key's first transient failure is retried, its later records are untouched, other keys publish."""
    records = [record(1, b"a"), record(2, b"b"), record(3, b"a"), record(4, b"b")]
    outcomes: list[Outcome] = [TRANSIENT, OK, OK, OK]
    res = resolve_batch(records, outcomes, now=T0, policy=POLICY, rand=lambda: 0.5)
    assert [p.id for p in res.published] == [2, 4]
    assert [r.id for r in res.retries] == [1]
    assert res.untouched == [3]
    assert res.retries[0].next_attempt_at == T0 + timedelta(seconds=0.25)
    assert not res.outage


def test_permanent_failure_dead_letters_and_later_records_continue() -> None:
    """A poison record is dead; the records behind it on the same key are still published."""
    records = [record(1, b"a"), record(2, b"a")]
    res = resolve_batch(records, [PERMANENT, OK], now=T0, policy=POLICY)
    assert [d.id for d in res.dead] == [1]
    assert [p.id for p in res.published] == [2]
    assert res.dead_records[0][1] == "MSG_SIZE_TOO_LARGE"


def test_retry_budget_exhaustion_dead_letters() -> None:
    """A record failing transiently for the max_attempts-th time is dead with a clear reason."""
    records = [record(1, b"a", attempts=4), record(2, b"b")]
    res = resolve_batch(records, [TRANSIENT, OK], now=T0, policy=POLICY)
    assert [d.id for d in res.dead] == [1]
    assert res.dead_records[0][1] == RETRY_BUDGET_EXHAUSTED
    assert "retry budget exhausted after 5 attempts" in res.dead[0].reason


def test_missing_report_leaves_record_untouched_and_blocks_its_key() -> None:
    """No delivery report means unknown: nothing is marked for that key from there on, no attempt counted."""
    records = [record(1, b"a"), record(2, b"a"), record(3, b"b")]
    res = resolve_batch(records, [None, OK, OK], now=T0, policy=POLICY)
    assert res.untouched == [1, 2]
    assert [p.id for p in res.published] == [3]
    assert not res.retries


def test_whole_batch_failing_is_an_outage_that_counts_no_attempt() -> None:
    """When nothing got through and failures are transient, rows stay untouched (budget kept)."""
    records = [record(1, b"a", attempts=4), record(2, b"b")]
    res = resolve_batch(records, [TRANSIENT, TRANSIENT], now=T0, policy=POLICY)
    assert res.outage
    assert res.untouched == [1, 2]
    assert not res.retries
    assert not res.dead


def test_outage_detection() -> None:
    """An outage needs no ack and at least one transient failure; only-permanent batches are not one."""
    assert is_outage([TRANSIENT, None])
    assert is_outage([PERMANENT, TRANSIENT])
    assert not is_outage([PERMANENT])
    assert not is_outage([TRANSIENT, OK])
    assert not is_outage([])


def test_unlimited_budget_never_dead_letters_transient_failures() -> None:
    """max_attempts=None retries transient failures forever."""
    policy = RetryPolicy(max_attempts=None)
    records = [record(1, b"a", attempts=10_000), record(2, b"b")]
    res = resolve_batch(records, [TRANSIENT, OK], now=T0, policy=policy)
    assert [r.id for r in res.retries] == [1]


def test_length_mismatch_is_refused() -> None:
    """Outcomes must match records one to one."""
    with pytest.raises(ValueError, match="outcomes"):
        resolve_batch([record(1, b"a")], [], now=T0, policy=POLICY)


def test_adaptive_polling() -> None:
    """A full batch means claim again at once; a short one means wait the poll interval."""
    assert next_wait(100, 100, 1.0) == 0.0
    assert next_wait(99, 100, 1.0) == 1.0
    assert next_wait(0, 100, 0.2) == 0.2


outcome_strategy = st.one_of(
    st.just(OK),
    st.just(TRANSIENT),
    st.just(PERMANENT),
    st.none(),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[OutboxRecord], list[Outcome]]:
    """A batch of records over a few keys (ids increasing, attempts varied) with arbitrary outcomes."""
    n = draw(st.integers(min_value=0, max_value=40))
    keys = draw(st.lists(st.sampled_from([b"a", b"b", b"c", b"d"]), min_size=n, max_size=n))
    attempts = draw(st.lists(st.integers(min_value=0, max_value=6), min_size=n, max_size=n))
    records = [record(i + 1, k, a) for i, (k, a) in enumerate(zip(keys, attempts, strict=True))]
    outcomes = draw(st.lists(outcome_strategy, min_size=n, max_size=n))
    shuffled = draw(st.permutations(list(range(n))))
    return [records[i] for i in shuffled], [outcomes[i] for i in shuffled]


@settings(max_examples=300)
@given(batch=batches(), r=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_resolution_properties(batch: tuple[list[OutboxRecord], list[Outcome]], r: float) -> None:
    """Every record lands in exactly one list; per key the resolved records are a prefix in id order,
    nothing after a key's failed head is published, and only acked records are published."""
    records, outcomes = batch
    res = resolve_batch(records, outcomes, now=T0, policy=POLICY, rand=lambda: r)
    by_id = {rec.id: (rec, out) for rec, out in zip(records, outcomes, strict=True)}
    published = {p.id for p in res.published}
    retried = {x.id for x in res.retries}
    dead = {d.id for d in res.dead}
    untouched = set(res.untouched)
    assert published | retried | dead | untouched == set(by_id)
    assert len(published) + len(retried) + len(dead) + len(untouched) == len(records)
    for p in res.published:
        outcome = by_id[p.id][1]
        assert isinstance(outcome, Delivered)
        assert (p.partition, p.offset) == (outcome.partition, outcome.offset)
    for d in res.dead:
        outcome = by_id[d.id][1]
        assert isinstance(outcome, DeliveryError)
        rec = by_id[d.id][0]
        assert is_permanent(outcome) or POLICY.exhausted(rec.attempts + 1)
    for x in res.retries:
        assert T0 <= x.next_attempt_at <= T0 + timedelta(seconds=POLICY.cap_seconds)
        assert not res.outage
    for key in {rec.key for rec in records}:
        ids = sorted(rec.id for rec in records if rec.key == key)
        states = ["u" if i in untouched else "r" if i in retried else "x" for i in ids]
        # Resolved prefix, then at most one retry, then only untouched records.
        first_blocking = next((n for n, s in enumerate(states) if s in "ur"), len(states))
        assert all(s == "x" for s in states[:first_blocking])
        assert all(s == "u" for s in states[first_blocking + 1 :])
        assert states.count("r") <= 1
