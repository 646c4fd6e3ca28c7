"""Workload 1: what the outbox insert adds to a payment transaction (PostgreSQL, synchronous_commit on).

Variant A is a payment transaction alone: ``UPDATE payments SET status, updated_at, version`` of one row
(chosen at random from 10,000), then ``COMMIT``. Variant B is the same transaction plus
``OutboxPublisher(conn).publish(event)`` -- the real publisher: encoding (the event model itself is built
before the clock starts, as the application has it already), the one-statement insert with its ``pg_notify``
wake-up and the key's commit-order lock. Variant BU is B with ``key_order=False`` (no advisory lock), to
show what the commit-order lock costs. Variant C is B with ``notify=False`` (the relay then relies on
polling), to show what the notification costs. For context, R and RB repeat A and B with a more typical
payment transaction: read the payment ``FOR UPDATE``, update it, and insert a ``payment_attempts`` row.
F and RF are A and R plus one ``SELECT 1``: the floor of anything that adds one statement (one more round
trip to the server) to the transaction, whatever the statement does. The gap between B and F is what the
insert itself costs (index entries, the WAL to flush at commit); the gap between F and A is the round trip,
which no outbox inside the caller's transaction avoids unless the caller sends its own statements in the
same round trip (a pipeline). The
variants are interleaved (A B BU C R RB, then in reverse, ...) on one connection so drift (other processes,
checkpoints, autovacuum) hits them alike. Each transaction is timed from ``BEGIN`` to the return of
``COMMIT`` with ``time.perf_counter``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bench.events import EventFactory
from bench.stats import ratio, summary_ms

PAYMENTS_DDL = """
CREATE TABLE payments (
    id BIGINT PRIMARY KEY,
    order_id TEXT NOT NULL,
    user_id TEXT,
    status TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency CHAR(3) NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX ix_payments_order_id ON payments (order_id);
CREATE TABLE payment_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id BIGINT NOT NULL REFERENCES payments (id),
    status TEXT NOT NULL,
    gateway_code TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_payment_attempts_payment ON payment_attempts (payment_id);
"""
PAYMENT_ROWS = 10_000
_STATUSES = ("authorized", "failed", "captured", "requires_action")
_UPDATE = sa.text(
    "UPDATE payments SET status = :status, updated_at = now(), version = version + 1 WHERE id = :id"
)
_LOCK = sa.text("SELECT id, status, amount, currency, version FROM payments WHERE id = :id FOR UPDATE")
_NOOP = sa.text("SELECT 1")
_ATTEMPT = sa.text(
    "INSERT INTO payment_attempts (payment_id, status, gateway_code) VALUES (:id, :status, 'do_not_honor')"
)


def create_payments(engine: sa.Engine) -> None:
    """Create and fill the ``payments`` table the payment transactions update."""
    with engine.begin() as conn:
        for statement in PAYMENTS_DDL.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "INSERT INTO payments (id, order_id, user_id, status, amount, currency, updated_at, version)"
            " SELECT g, 'ord_' || g, 'usr_' || (g %% 997), 'pending', 1000 + g, 'EUR', now(), 0"
            f" FROM generate_series(1, {PAYMENT_ROWS}) AS g"
        )
        conn.exec_driver_sql("ANALYZE payments")


def run_write_path(database_url: str, pairs: int, warmup: int = 200) -> dict[str, Any]:
    """Interleave ``pairs`` transactions of each variant (after ``warmup`` of each); return the numbers."""
    from payment_events.outbox.migrate import upgrade
    from payment_events.outbox.publisher import OutboxPublisher

    engine = sa.create_engine(database_url)
    try:
        upgrade(engine)
        create_payments(engine)
        factory = EventFactory(keys=1000)
        rng = random.Random(7)
        timings: dict[str, list[float]] = {
            "A": [], "B": [], "BU": [], "C": [], "R": [], "RB": [], "F": [], "RF": []
        }

        with engine.connect() as conn:
            conn.exec_driver_sql("SET synchronous_commit = on")  # explicit, although it is the default
            conn.commit()

            def alone(extra_round_trip: bool = False) -> Callable[[], float]:
                def variant() -> float:
                    started = time.perf_counter()
                    with conn.begin():
                        conn.execute(
                            _UPDATE, {"status": rng.choice(_STATUSES), "id": rng.randint(1, PAYMENT_ROWS)}
                        )
                        if extra_round_trip:
                            conn.execute(_NOOP)
                    return time.perf_counter() - started

                return variant

            def with_outbox(notify: bool, key_order: bool = True) -> Callable[[], float]:
                def variant() -> float:
                    event = factory.model()  # the application has its event before the transaction
                    started = time.perf_counter()
                    with conn.begin():
                        conn.execute(
                            _UPDATE, {"status": rng.choice(_STATUSES), "id": rng.randint(1, PAYMENT_ROWS)}
                        )
                        OutboxPublisher(conn, notify=notify, key_order=key_order).publish(event)
                    return time.perf_counter() - started

                return variant

            def typical(outbox: bool, extra_round_trip: bool = False) -> Callable[[], float]:
                def variant() -> float:
                    event = factory.model()
                    payment = rng.randint(1, PAYMENT_ROWS)
                    status = rng.choice(_STATUSES)
                    started = time.perf_counter()
                    with conn.begin():
                        conn.execute(_LOCK, {"id": payment}).one()
                        conn.execute(_UPDATE, {"status": status, "id": payment})
                        conn.execute(_ATTEMPT, {"id": payment, "status": status})
                        if outbox:
                            OutboxPublisher(conn).publish(event)
                        if extra_round_trip:
                            conn.execute(_NOOP)
                    return time.perf_counter() - started

                return variant

            variants = {
                "A": alone(), "B": with_outbox(True), "BU": with_outbox(True, key_order=False),
                "C": with_outbox(False), "R": typical(False), "RB": typical(True),
                "F": alone(extra_round_trip=True), "RF": typical(False, extra_round_trip=True),
            }
            order = ["A", "B", "BU", "C", "R", "RB", "F", "RF"]
            for i in range(warmup + pairs):
                for name in order if i % 2 == 0 else reversed(order):
                    elapsed = variants[name]()
                    if i >= warmup:
                        timings[name].append(elapsed)
            rows = conn.execute(sa.text("SELECT count(*) FROM payment_events_outbox")).scalar_one()
    finally:
        engine.dispose()

    a, b, bu, c, r, rb, f, rf = (summary_ms(timings[k]) for k in ("A", "B", "BU", "C", "R", "RB", "F", "RF"))
    return {
        "transactions_per_variant": pairs,
        "warmup_per_variant": warmup,
        "outbox_rows_written": int(rows),
        "payment_alone_ms": a,
        "payment_plus_outbox_ms": b,
        "payment_plus_outbox_no_notify_ms": c,
        "payment_plus_outbox_without_key_lock_ms": bu,
        "key_lock_ratio_p50": ratio(b["p50"], bu["p50"]),
        "key_lock_ratio_p99": ratio(b["p99"], bu["p99"]),
        "ratio_p50": ratio(b["p50"], a["p50"]),
        "ratio_p99": ratio(b["p99"], a["p99"]),
        "ratio_p50_no_notify": ratio(c["p50"], a["p50"]),
        "ratio_p99_no_notify": ratio(c["p99"], a["p99"]),
        "typical_payment_alone_ms": r,
        "typical_payment_plus_outbox_ms": rb,
        "typical_ratio_p50": ratio(rb["p50"], r["p50"]),
        "typical_ratio_p99": ratio(rb["p99"], r["p99"]),
        "payment_plus_round_trip_ms": f,
        "typical_payment_plus_round_trip_ms": rf,
        "floor_ratio_p50": ratio(f["p50"], a["p50"]),
        "typical_floor_ratio_p50": ratio(rf["p50"], r["p50"]),
        "method": "interleaved A,B,BU,C,R,RB,F,RF / reversed, one connection; BEGIN..COMMIT timed"
        " (perf_counter)",
    }
