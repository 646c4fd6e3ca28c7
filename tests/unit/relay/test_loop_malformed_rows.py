"""Malformed outbox rows (``OutboxRecord.defect``): dead-lettered without being produced, never blocking."""

from __future__ import annotations

from dataclasses import replace

import pytest

from payment_events.outbox.headers import (
    HEADERS_NOT_HEADER_JSON,
    HEADERS_NOT_JSON,
    dump_headers,
    load_headers,
    parse_headers,
)
from payment_events.outbox.ports import DEAD, PENDING, PUBLISHED, OutboxRecord, row_defect
from payment_events.relay import Relay, RelayConfig
from payment_events.relay.decisions import RetryPolicy, is_outage, merge_outcomes, producible, resolve_batch
from payment_events.relay.delivery import MALFORMED_ROW, PERMANENT_CODES, Delivered, DeliveryError
from payment_events.relay.observer import NullObserver
from tests.unit.relay.fakes import T0, FakeClock, FakeLeases, FakeProducer, FakeStore, event_id_of

POLICY = RetryPolicy(base_seconds=0.5, cap_seconds=60.0, max_attempts=5)
TRANSIENT = DeliveryError("_MSG_TIMED_OUT", "timed out", retriable=True)


def record(row_id: int, key: bytes, defect: str | None = None) -> OutboxRecord:
    """An outbox record with just the fields the decisions read."""
    return OutboxRecord(
        row_id, f"evt-{row_id}", "PaymentSucceeded", 1, "payment.events", key, b"{}", (), 0, 0, T0, defect
    )


# ------------------------------------------------------------------------------ detecting defects
def test_a_sound_row_has_no_defect_and_the_field_defaults_to_none() -> None:
    """A row with a key, a payload and parseable headers has no defect; old call sites need no change."""
    assert row_defect(b"k", b"{}") is None
    legacy = OutboxRecord(1, "e", "PaymentSucceeded", 1, "t", b"k", b"{}", (), 0, 0, T0)
    assert legacy.defect is None


def test_row_defect_names_every_problem_without_content() -> None:
    """An empty key, an empty payload and a headers problem are all named, and nothing else."""
    assert row_defect(b"k", b"") == "payload is empty"
    assert row_defect(b"", b"{}") == "key is empty"
    assert row_defect(b"", b"", HEADERS_NOT_JSON) == f"key is empty; payload is empty; {HEADERS_NOT_JSON}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", HEADERS_NOT_JSON),
        ("", HEADERS_NOT_JSON),
        (None, HEADERS_NOT_JSON),
        (b"\xff\xfe", HEADERS_NOT_JSON),
        ('{"a": 1}', HEADERS_NOT_HEADER_JSON),
        ('[["a"]]', HEADERS_NOT_HEADER_JSON),
        ('[[1, "x"]]', HEADERS_NOT_HEADER_JSON),
        ('[["a", "!!", "base64"]]', HEADERS_NOT_HEADER_JSON),
        ('[["a","b"]] x', HEADERS_NOT_JSON),
        ("[" * 100_000 + "]" * 100_000, HEADERS_NOT_JSON),
    ],
)
def test_parse_headers_reports_a_problem_instead_of_raising(text: object, problem: str) -> None:
    """Malformed headers text gives no headers and a fixed description, never an exception."""
    assert parse_headers(text) == ((), problem)


def test_parse_headers_reads_text_and_base64_values() -> None:
    """Sound headers parse exactly, including non-UTF-8 values stored as base64, surrounding whitespace
    and bytes; the result equals load_headers' for what dump_headers wrote."""
    assert parse_headers('[["a","x"],["b","/w==","base64"]]') == ((("a", b"x"), ("b", b"\xff")), None)
    assert parse_headers(' [["a","x"]] ') == ((("a", b"x"),), None)
    assert parse_headers(b'[["a","x"]]') == ((("a", b"x"),), None)
    headers = (("ce_id", b"1"), ("ce_type", "é".encode()), ("bin", b"\x00\xff"), ("ce_id", b"dup"))
    stored = dump_headers(headers)
    assert parse_headers(stored) == (headers, None) == (load_headers(stored), None)


# ---------------------------------------------------------------------------------- the decisions
def test_a_malformed_record_is_dead_with_its_reason_and_its_key_continues() -> None:
    """A record with a defect is dead (MALFORMED_ROW, reason naming the defect); later rows publish."""
    records = [record(1, b"a", "payload is empty"), record(2, b"a"), record(3, b"b")]
    outcomes = merge_outcomes(records, [Delivered(0, 1), Delivered(0, 2)])
    result = resolve_batch(records, outcomes, now=T0, policy=POLICY)
    assert [d.id for d in result.dead] == [1]
    assert result.dead[0].reason == "MALFORMED_ROW: malformed outbox row: payload is empty"
    assert [(r.id, code) for r, code, _ in result.dead_records] == [(1, MALFORMED_ROW)]
    assert [p.id for p in result.published] == [2, 3]
    assert not result.outage
    assert MALFORMED_ROW in PERMANENT_CODES


def test_a_malformed_record_is_dead_even_if_an_ack_is_claimed_for_it() -> None:
    """The decision never marks a defective record published, whatever outcome it is given."""
    result = resolve_batch([record(1, b"a", "key is empty")], [Delivered(0, 7)], now=T0, policy=POLICY)
    assert result.published == []
    assert [d.id for d in result.dead] == [1]


def test_a_batch_of_only_malformed_records_is_not_an_outage() -> None:
    """Nothing produced and nothing acked, yet no outage: the defective rows are simply dead."""
    records = [record(1, b"a", "payload is empty"), record(2, b"b", HEADERS_NOT_JSON)]
    outcomes = merge_outcomes(records, [])
    assert not is_outage(outcomes)
    result = resolve_batch(records, outcomes, now=T0, policy=POLICY)
    assert [d.id for d in result.dead] == [1, 2]


def test_a_malformed_record_is_dead_during_an_outage_of_the_others() -> None:
    """When every produced record failed transiently the others wait untouched; the defective one dies."""
    records = [record(1, b"a"), record(2, b"b", "payload is empty")]
    outcomes = merge_outcomes(records, [TRANSIENT])
    result = resolve_batch(records, outcomes, now=T0, policy=POLICY)
    assert result.outage
    assert result.untouched == [1]
    assert [d.id for d in result.dead] == [2]


def test_producible_leaves_out_defective_records_and_merge_puts_outcomes_back_in_place() -> None:
    """Only sound records are produced; the merged outcomes line up with the claimed batch."""
    sound = [record(1, b"a"), record(3, b"c")]
    assert producible(sound) is sound
    records = [sound[0], record(2, b"b", "key is empty"), sound[1]]
    assert [r.id for r in producible(records)] == [1, 3]
    merged = merge_outcomes(records, [Delivered(0, 1), TRANSIENT])
    assert merged[0] == Delivered(0, 1)
    assert isinstance(merged[1], DeliveryError)
    assert merged[1].code == MALFORMED_ROW
    assert merged[2] == TRANSIENT
    with pytest.raises(ValueError, match="more outcomes"):
        merge_outcomes(records, [TRANSIENT] * 4)


# -------------------------------------------------------------------------------------- the loop
class DeadCounter(NullObserver):
    """Counts dead letters by reason code."""

    def __init__(self) -> None:
        self.dead: dict[str, int] = {}

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        self.dead[reason] = self.dead.get(reason, 0) + count


def test_the_relay_dead_letters_a_malformed_row_without_producing_it() -> None:
    """The defective row is never produced to its topic; it is dead, copied to the DLQ with its code,
    reported to the observer, and its key's later row and other keys are published."""
    clock = FakeClock()
    store = FakeStore(clock)
    bad = store.add(b"k", payload=b"")
    store.rows[bad].record = replace(store.rows[bad].record, defect="payload is empty")
    later = store.add(b"k")
    other = store.add(b"other", shard=1)
    producer = FakeProducer()
    observer = DeadCounter()
    config = RelayConfig(batch_size=8, poll_interval_seconds=0.01)
    leases = FakeLeases(frozenset({0, 1}))
    relay = Relay(store, producer, config, leases=leases, observer=observer, clock=clock)
    relay.drain()
    assert store.rows[bad].state == DEAD
    assert store.rows[bad].last_error == "MALFORMED_ROW: malformed outbox row: payload is empty"
    assert store.rows[later].state == PUBLISHED
    assert store.rows[other].state == PUBLISHED
    assert not any(r.state == PENDING for r in store.rows.values())
    produced = sorted(event_id_of(m) for m in producer.topic("payment.events"))
    assert produced == [f"evt-{later}", f"evt-{other}"]
    (copy,) = producer.topic("payment.events.dlq")
    headers = dict(copy.headers)
    assert headers["dlq-error-code"] == MALFORMED_ROW.encode()
    assert headers["dlq-reason"] == b"MALFORMED_ROW: malformed outbox row: payload is empty"
    assert headers["dlq-outbox-id"] == str(bad).encode()
    assert observer.dead == {MALFORMED_ROW: 1}
