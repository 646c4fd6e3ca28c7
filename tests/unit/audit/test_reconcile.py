"""The audit's reconciliation on synthetic ledgers and topics (no servers)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from payment_events.audit import LedgerRow, Reconciler, TopicMessage, message_identity
from payment_events.audit.report import EXIT_CLEAN, EXIT_FAILED, AuditReport, PartitionRange

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOPIC = "payment.events"


def row(
    outbox_id: int,
    key: str = "k",
    *,
    state: str = "published",
    offset: int | None = None,
    event_type: str = "PaymentSucceeded",
    partition: int = 0,
) -> LedgerRow:
    """A ledger row with a deterministic event id; published rows record ``partition``/``offset``."""
    return LedgerRow(
        id=outbox_id, event_id=f"ev-{outbox_id}", event_type=event_type, topic=TOPIC, key=key.encode(),
        state=state, kafka_partition=partition if offset is not None else None, kafka_offset=offset,
        created_at=T0 + timedelta(seconds=outbox_id), published_at=T0 + timedelta(seconds=outbox_id + 1),
    )


def msg(event_id: str | None, offset: int, key: str = "k", *, partition: int = 0, ts_s: float = 10.0,
        event_type: str | None = "PaymentSucceeded") -> TopicMessage:
    """A topic message at ``partition``/``offset`` carrying ``event_id``."""
    return TopicMessage(TOPIC, partition, offset, key.encode(), event_id, event_type,
                        int((T0 + timedelta(seconds=ts_s)).timestamp() * 1000))


def reconcile(rows: list[LedgerRow], messages: list[TopicMessage], **report_kw: object) -> AuditReport:
    """Feed rows, then messages, and return the report over the offsets actually fed."""
    rec = Reconciler(detail_limit=int(str(report_kw.pop("detail_limit", 1000))))
    for r in rows:
        rec.add_row(r)
    for m in messages:
        rec.add_message(m)
    ends: dict[int, int] = {}
    for m in messages:
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    scanned = report_kw.pop("scanned", [PartitionRange(TOPIC, p, 0, e) for p, e in ends.items()])
    return rec.report(topics=[TOPIC], started_at=T0, finished_at=T0, scanned=scanned,  # type: ignore[arg-type]
                      **report_kw)  # type: ignore[arg-type]


def test_every_published_row_delivered_once_is_clean() -> None:
    """Three published rows each seen once at their recorded offsets give a clean report."""
    rows = [row(1, offset=0), row(2, offset=1), row(3, key="j", offset=2)]
    report = reconcile(rows, [msg("ev-1", 0), msg("ev-2", 1), msg("ev-3", 2, key="j")])
    assert report.ok
    assert report.exit_code == EXIT_CLEAN
    t = report.overall
    assert (t.committed, t.published, t.delivered, t.lost) == (3, 3, 3, 0)
    assert (t.duplicates, t.order_violations) == (0, 0)
    assert t.ledger_mismatches == 0
    assert t.unknown == 0


def test_published_row_missing_from_topic_is_lost() -> None:
    """A published row whose event never appears on the topic is lost and fails the audit."""
    report = reconcile([row(1, offset=0), row(2, offset=1)], [msg("ev-1", 0)])
    assert not report.ok
    assert report.exit_code == EXIT_FAILED
    assert report.overall.lost == 1
    assert [e.event_id for e in report.lost] == ["ev-2"]
    assert report.lost[0].outbox_id == 2


def test_pending_rows_are_reported_not_lost() -> None:
    """A pending row absent from the topic is pending (not lost); one on the topic counts delivered."""
    rows = [row(1, offset=0), row(2, state="pending"), row(3, state="pending")]
    report = reconcile(rows, [msg("ev-1", 0), msg("ev-3", 1)])
    assert report.ok
    t = report.overall
    assert (t.pending, t.pending_delivered, t.lost, t.delivered) == (2, 1, 0, 2)
    assert sorted(report.pending_event_ids) == ["ev-2", "ev-3"]


def test_dead_rows_are_reported_separately() -> None:
    """A dead-lettered row absent from the main topic is counted dead, not lost, and the audit stays ok."""
    report = reconcile([row(1, offset=0), row(2, state="dead")], [msg("ev-1", 0)])
    assert report.ok
    assert report.overall.dead == 1
    assert report.overall.lost == 0
    assert report.dead_event_ids == ["ev-2"]


def test_duplicates_are_counted_with_their_copies() -> None:
    """An event seen three times is one duplicated event with two extra copies and does not fail the audit."""
    rows = [row(1, offset=0), row(2, offset=1)]
    report = reconcile(rows, [msg("ev-1", 0), msg("ev-2", 1), msg("ev-1", 2), msg("ev-1", 3)])
    assert report.ok
    assert report.overall.duplicated_events == 1
    assert report.overall.duplicates == 2
    assert [(d.event_id, d.count) for d in report.duplicates] == [("ev-1", 3)]


def test_first_appearances_out_of_id_order_are_violations() -> None:
    """For one key, event 2 appearing before event 1 is an order violation naming both events."""
    rows = [row(1, offset=1), row(2, offset=0), row(3, key="other", offset=2)]
    report = reconcile(rows, [msg("ev-2", 0), msg("ev-1", 1), msg("ev-3", 2, key="other")])
    assert not report.ok
    assert report.overall.order_violations == 1
    violation = report.order_violations[0]
    assert (violation.event_id, violation.after_event_id, violation.key) == ("ev-1", "ev-2", "k")


def test_redelivered_earlier_event_after_later_one_is_not_a_violation() -> None:
    """Only first appearances count: 1, 2, then a retried copy of 1 keeps the order."""
    rows = [row(1, offset=0), row(2, offset=1)]
    report = reconcile(rows, [msg("ev-1", 0), msg("ev-2", 1), msg("ev-1", 2)])
    assert report.ok
    assert report.overall.order_violations == 0
    assert report.overall.duplicates == 1


def test_keys_are_ordered_independently() -> None:
    """Interleaving two keys is fine as long as each key's own events keep their id order."""
    rows = [row(1, "a", offset=0), row(2, "b", offset=1), row(3, "a", offset=3), row(4, "b", offset=2)]
    messages = [msg("ev-1", 0, "a"), msg("ev-2", 1, "b"), msg("ev-4", 2, "b"), msg("ev-3", 3, "a")]
    assert reconcile(rows, messages).overall.order_violations == 0


def test_recorded_position_holding_another_event_is_a_ledger_mismatch() -> None:
    """A published row whose recorded offset holds a different event is a ledger mismatch."""
    rows = [row(1, offset=0), row(2, offset=0)]
    report = reconcile(rows, [msg("ev-1", 0), msg("ev-2", 1)])
    assert report.overall.ledger_mismatches == 1
    mismatch = report.ledger_mismatches[0]
    assert mismatch.offset == 0
    assert {mismatch.event_id, mismatch.found_event_id} == {"ev-1", "ev-2"}


def test_recorded_position_inside_read_range_without_message_is_a_mismatch() -> None:
    """A recorded offset inside the range read that held no message is a mismatch found as nothing."""
    rows = [row(1, offset=0), row(2, offset=5)]
    report = reconcile(rows, [msg("ev-1", 0), msg("ev-2", 1)],
                       scanned=[PartitionRange(TOPIC, 0, 0, 10)])
    assert report.overall.ledger_mismatches == 1
    assert report.ledger_mismatches[0].found_event_id is None


def test_recorded_position_outside_read_range_is_not_judged() -> None:
    """A recorded offset before the first offset read (time-range audit) is not called a mismatch."""
    rows = [row(1, offset=3)]
    report = reconcile(rows, [msg("ev-1", 7)], scanned=[PartitionRange(TOPIC, 0, 5, 10)])
    assert report.overall.ledger_mismatches == 0


def test_published_row_before_the_first_readable_offset_is_expired_not_lost() -> None:
    """A published row whose offset Kafka's retention already deleted is counted expired, not lost."""
    rows = [row(1, offset=2), row(2, offset=7)]
    report = reconcile(rows, [msg("ev-2", 7)], scanned=[PartitionRange(TOPIC, 0, 5, 8)])
    assert report.ok
    assert (report.overall.expired, report.overall.lost) == (1, 0)


def test_unknown_events_split_into_purged_and_unknown() -> None:
    """Events the ledger lacks are unknown; those older than the oldest published row are marked purged."""
    rows = [row(5, offset=2)]
    messages = [msg("old", 0, ts_s=1.0), msg("stray", 1, ts_s=20.0), msg("ev-5", 2)]
    report = reconcile(rows, messages, retention_horizon=T0 + timedelta(seconds=6))
    assert report.overall.unknown == 2
    assert report.overall.purged == 1
    assert {(u.event_id, u.purged) for u in report.unknown} == {("old", True), ("stray", False)}
    assert report.ok


def test_messages_older_than_the_horizon_are_purged_without_a_lookup() -> None:
    """With a retention horizon set, an unknown message older than it is counted purged at once and is
    not among the ids to look up in the database."""
    rec = Reconciler()
    rec.add_row(row(9, offset=2))
    rec.set_retention_horizon(T0 + timedelta(seconds=5))
    rec.add_message(msg("old-1", 0, ts_s=1.0, event_type="RefundProcessed"))
    rec.add_message(msg("stray", 1, ts_s=30.0))
    rec.add_message(msg("ev-9", 2, ts_s=31.0))
    assert rec.unknown_candidates() == ["stray"]
    report = rec.report(topics=[TOPIC], started_at=T0, finished_at=T0)
    assert report.by_type["RefundProcessed"].purged == 1
    assert (report.overall.unknown, report.overall.purged) == (2, 1)
    assert report.retention_horizon == T0 + timedelta(seconds=5)


def test_events_known_to_the_database_outside_the_snapshot_are_not_unknown() -> None:
    """A message whose event was committed after the ledger snapshot is left out of unknown."""
    rec = Reconciler()
    rec.add_row(row(1, offset=0))
    rec.add_message(msg("ev-1", 0))
    rec.add_message(msg("late", 1))
    assert rec.unknown_candidates() == ["late"]
    report = rec.report(topics=[TOPIC], started_at=T0, finished_at=T0, known_elsewhere=["late"])
    assert report.overall.unknown == 0


def test_time_range_ignores_foreign_messages_outside_the_range() -> None:
    """With since/until, a message outside the range whose event the window lacks is not unknown."""
    rec = Reconciler(since=T0 + timedelta(seconds=100), until=T0 + timedelta(seconds=200))
    rec.add_row(row(150, offset=1))
    rec.add_message(msg("before", 0, ts_s=50))
    rec.add_message(msg("ev-150", 1, ts_s=151))
    rec.add_message(msg("inside", 2, ts_s=160))
    rec.add_message(msg("after", 3, ts_s=250))
    assert rec.unknown_candidates() == ["inside"]


def test_tallies_per_event_type_sum_to_overall() -> None:
    """Counts are kept per event type and the overall tally is their sum."""
    rows = [row(1, offset=0, event_type="PaymentSucceeded"), row(2, offset=1, event_type="RefundProcessed"),
            row(3, event_type="RefundProcessed"), row(4, state="pending", event_type="PaymentFailed")]
    messages = [msg("ev-1", 0), msg("ev-2", 1, event_type="RefundProcessed"),
                msg("x", 2, event_type="PaymentFailed")]
    report = reconcile(rows, messages)
    assert report.by_type["RefundProcessed"].committed == 2
    assert report.by_type["RefundProcessed"].lost == 1
    assert report.by_type["PaymentFailed"].pending == 1
    assert report.by_type["PaymentFailed"].unknown == 1
    assert report.overall.committed == 4
    assert report.overall.lost == sum(t.lost for t in report.by_type.values()) == 1


def test_messages_without_an_event_id_are_counted_undecodable() -> None:
    """A message with neither ce_id header nor eventId field is counted, not crashed on."""
    report = reconcile([row(1, offset=1)], [msg(None, 0, event_type=None), msg("ev-1", 1)])
    assert report.undecodable_messages == 1
    assert report.ok


def test_details_are_capped_but_counts_are_exact() -> None:
    """With detail_limit=2, five lost events are counted five times but only two are listed."""
    report = reconcile([row(i, offset=i) for i in range(5)], [], detail_limit=2, scanned=[])
    assert report.overall.lost == 5
    assert len(report.lost) == 2


def test_identity_from_cloudevents_headers() -> None:
    """The event id and type come from ce_id/ce_type headers without parsing the value."""
    headers: list[tuple[str, bytes | str | None]] = [("ce_id", b"abc"), ("ce_type", b"PaymentFailed")]
    assert message_identity(headers, b"not json") == ("abc", "PaymentFailed")


def test_identity_from_json_value_when_headers_are_missing() -> None:
    """Without headers, eventId/eventType are read from the JSON value; garbage gives None."""
    value = json.dumps({"eventId": "e1", "eventType": "RefundFailed", "x": 1}).encode()
    assert message_identity(None, value) == ("e1", "RefundFailed")
    assert message_identity([], b"\xff\x00garbage") == (None, None)
    assert message_identity([("ce_id", None)], b"[1, 2]") == (None, None)


def test_report_json_and_text_name_the_verdict_and_the_lost_event() -> None:
    """The JSON report carries ok/exit_code and counts; the text report says FAILED and names the event."""
    report = reconcile([row(1, offset=0), row(2, offset=1)], [msg("ev-1", 0)])
    doc = json.loads(report.to_json())
    assert doc["ok"] is False
    assert doc["exit_code"] == EXIT_FAILED
    assert doc["overall"]["lost"] == 1
    assert doc["lost"][0]["event_id"] == "ev-2"
    text = report.render_text()
    assert "FAILED" in text
    assert "ev-2" in text


def test_large_ledger_reconciles_exactly() -> None:
    """200,000 events across 5,000 keys and 6 partitions reconcile with exact counts."""
    rec = Reconciler()
    n, keys, parts = 200_000, 5_000, 6
    next_offset = [0] * parts
    ids = [str(uuid.UUID(int=i)) for i in range(n)]
    for i in range(n):
        key = f"key-{i % keys}"
        part = (i % keys) % parts
        rec.add_row(LedgerRow(i + 1, ids[i], "PaymentSucceeded", TOPIC, key.encode(), "published",
                              part, next_offset[part]))
        rec.add_message(
            TopicMessage(TOPIC, part, next_offset[part], key.encode(), ids[i], "PaymentSucceeded"))
        next_offset[part] += 1
    rec.add_message(TopicMessage(TOPIC, 0, next_offset[0], b"key-0", ids[0], "PaymentSucceeded"))
    report = rec.report(topics=[TOPIC], started_at=T0, finished_at=T0,
                        scanned=[PartitionRange(TOPIC, p, 0, next_offset[p] + 1) for p in range(parts)])
    assert report.ok
    assert report.overall.delivered == n
    assert report.overall.duplicates == 1
    assert report.overall.ledger_mismatches == 0


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), min_size=1, max_size=40),
    drop=st.sets(st.integers(0, 39), max_size=5),
    seed=st.randoms(use_true_random=False),
)
def test_property_per_key_ordered_delivery_never_violates_and_drops_are_lost(
    plan: list[tuple[int, int]], drop: set[int], seed: object
) -> None:
    """Any interleaving that keeps each key's order (with extra copies) has no violations, and exactly the
    dropped published events are lost."""
    import random

    assert isinstance(seed, random.Random)
    rows = [row(i + 1, key=f"k{k}") for i, (k, _) in enumerate(plan)]
    queues: dict[str, list[int]] = {}
    for i, (k, _copies) in enumerate(plan):
        queues.setdefault(f"k{k}", []).append(i)
    messages: list[TopicMessage] = []
    while any(queues.values()):
        key = seed.choice([k for k, q in queues.items() if q])
        i = queues[key].pop(0)
        if i in drop:
            continue
        for _ in range(1 + plan[i][1]):
            messages.append(msg(f"ev-{i + 1}", len(messages), key=key))
    report = reconcile(rows, messages, scanned=[])
    assert report.overall.order_violations == 0
    assert report.overall.lost == len([i for i in drop if i < len(plan)])
    assert report.overall.duplicates == sum(c for i, (_, c) in enumerate(plan) if i not in drop)


def test_an_exactly_once_audit_fails_on_any_duplicate() -> None:
    """The same duplicate that an at-least-once audit accepts fails an exactly-once audit (exit 1)."""
    report = reconcile([row(1, offset=0)], [msg("ev-1", 0), msg("ev-1", 1)])
    assert report.ok
    report.exactly_once = True
    assert not report.ok
    assert report.exit_code == EXIT_FAILED
    clean = reconcile([row(1, offset=0)], [msg("ev-1", 0)])
    clean.exactly_once = True
    assert clean.exit_code == EXIT_CLEAN
