"""Per-key commit order on PostgreSQL (issue 11, defect 4): writers of one key serialise from their
insert to their commit, so a key's outbox ids follow the order its transactions committed."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from payment_events.events.codec import encode
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox.publisher import OutboxPublisher
from tests.integration.relay_support import migrated_engine, payment_event


def _insert(conn: sa.Connection, key: str, seq: int) -> None:
    OutboxPublisher(conn, router=TopicRouter("t")).publish_encoded([encode(payment_event(key, seq))])


def _ids(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, event_id FROM payment_events_outbox ORDER BY id")).all()
    return {str(event_id): int(row_id) for row_id, event_id in rows}


def test_a_second_writer_of_a_key_waits_for_the_first_and_takes_a_later_id(pg_url: str) -> None:
    """T1 inserts for key K and stays open; T2's insert for K waits until T1 commits and then gets an id
    above a row of another key committed meanwhile, so K's id order is its commit order."""
    engine = migrated_engine(pg_url)
    try:
        t1 = engine.connect()
        tx1 = t1.begin()
        _insert(t1, "pay-k", 1)
        done = threading.Event()
        errors: list[BaseException] = []

        def second_writer() -> None:
            try:
                with engine.begin() as conn:
                    _insert(conn, "pay-k", 2)
                done.set()
            except BaseException as exc:  # noqa: BLE001 - reported in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(1.0)
        assert not done.is_set(), "the second writer of the key committed while the first was open"
        with engine.begin() as conn:
            _insert(conn, "pay-other", 3)
        tx1.commit()
        t1.close()
        thread.join(30)
        assert not errors
        assert done.is_set()
        ids = sorted(_ids(engine).values())
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, key FROM payment_events_outbox ORDER BY id")
            ).all()
        assert [bytes(r.key) for r in rows] == [b"pay-k", b"pay-other", b"pay-k"], ids
    finally:
        engine.dispose()


def test_writers_of_different_keys_do_not_wait_for_each_other(pg_url: str) -> None:
    """An open transaction on key A does not hold up a writer of key B."""
    engine = migrated_engine(pg_url)
    try:
        with engine.connect() as t1:
            tx1 = t1.begin()
            _insert(t1, "pay-a", 1)
            with engine.connect() as t2, t2.begin():
                t2.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                _insert(t2, "pay-b", 2)
            tx1.rollback()
    finally:
        engine.dispose()
