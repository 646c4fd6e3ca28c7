"""Chaos writers: steady streams of real events through the real OutboxPublisher, and a held transaction."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from payment_events.events import (
    BaseEvent,
    PaymentCaptured,
    PaymentFailed,
    PaymentRequiresAction,
    PaymentSucceeded,
    RefundFailed,
    RefundProcessed,
)
from payment_events.events.examples import example_fields
from payment_events.outbox.publisher import OutboxPublisher

EVENT_MODELS: tuple[type[BaseEvent], ...] = (
    PaymentSucceeded,
    PaymentCaptured,
    PaymentFailed,
    RefundProcessed,
    RefundFailed,
    PaymentRequiresAction,
)


def make_event(model: type[BaseEvent], key: str) -> BaseEvent:
    """A valid event of ``model`` for payment ``key`` with a fresh event id."""
    fields = example_fields(model)
    del fields["event_id"]
    fields["payment_id"] = key
    fields["event_timestamp"] = datetime.now(UTC)
    return model(**fields)


# ---------------------------------------------------------------------------------------- writers
@dataclass
class WriteLog:
    """What the writers know: ids whose COMMIT returned, ids whose COMMIT failed midway (unknown)."""

    committed: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    failed_transactions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Writers:
    """``writers`` threads writing ``total`` events at ``rate`` events/s through the real OutboxPublisher,
    ``batch`` events per transaction. Each key belongs to one writer, which writes it sequentially, so
    per-key outbox id order is per-key commit order (as a payment service serialising a payment would)."""

    def __init__(
        self,
        database_url: str,
        topic: str,
        *,
        total: int,
        rate: float,
        writers: int = 4,
        keys_per_writer: int = 50,
        batch: int = 5,
        commit_delay: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.url, self.topic, self.total, self.rate = database_url, topic, total, rate
        self.writers, self.keys_per_writer, self.batch, self.commit_delay = (
            writers,
            keys_per_writer,
            batch,
            commit_delay,
        )
        self.log = WriteLog()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.prefix = uuid.uuid4().hex[:6]

    def start(self) -> Writers:
        """Start the writer threads."""
        share = [
            self.total // self.writers + (1 if i < self.total % self.writers else 0)
            for i in range(self.writers)
        ]
        for i, count in enumerate(share):
            thread = threading.Thread(target=self._write, args=(i, count), name=f"writer-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def join(self, timeout: float = 600.0) -> None:
        """Wait for every writer to finish its share."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Ask the writers to stop early."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        """True while some writer still writes."""
        return any(t.is_alive() for t in self._threads)

    def _write(self, index: int, count: int) -> None:
        rnd = random.Random(index)
        keys = [f"pay_{self.prefix}_{index}_{k}" for k in range(self.keys_per_writer)]
        engine = sa.create_engine(self.url, pool_size=1, max_overflow=0, pool_pre_ping=True)
        interval = self.batch / (self.rate / self.writers)
        next_at = time.monotonic()
        written = 0
        try:
            while written < count and not self._stop.is_set():
                wait = next_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                next_at += interval
                n = min(self.batch, count - written)
                events = [
                    make_event(EVENT_MODELS[rnd.randrange(len(EVENT_MODELS))], rnd.choice(keys))
                    for _ in range(n)
                ]
                if self._transaction(engine, events, rnd):
                    written += n
        finally:
            engine.dispose()

    def _transaction(self, engine: sa.Engine, events: list[BaseEvent], rnd: random.Random) -> bool:
        ids = [str(e.event_id) for e in events]
        try:
            conn = engine.connect()
        except sa.exc.OperationalError:
            with self.log.lock:
                self.log.failed_transactions += 1
            time.sleep(0.2)
            return False
        with conn:
            try:
                tx = conn.begin()
                OutboxPublisher(conn, router=lambda _t: self.topic).publish_many(events)  # type: ignore[arg-type]
                low, high = self.commit_delay
                if high > 0:
                    time.sleep(rnd.uniform(low, high))
            except sa.exc.SQLAlchemyError:
                with self.log.lock:
                    self.log.failed_transactions += 1
                time.sleep(0.2)
                return False
            try:
                tx.commit()
            except sa.exc.SQLAlchemyError:
                with self.log.lock:
                    self.log.uncertain.extend(ids)
                time.sleep(0.2)
                return False
        with self.log.lock:
            self.log.committed.extend(ids)
        return True


def hold_transaction(database_url: str, topic: str, seconds: float, out: dict[str, Any]) -> threading.Thread:
    """Start a thread that inserts one event, keeps its transaction open ``seconds``, then commits.
    ``out`` receives ``event_id`` and ``committed_at`` (wall clock, UTC, taken right after COMMIT)."""

    def run() -> None:
        engine = sa.create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            with engine.connect() as conn:
                tx = conn.begin()
                event = make_event(PaymentSucceeded, f"pay_held_{uuid.uuid4().hex[:8]}")
                OutboxPublisher(conn, router=lambda _t: topic).publish(event)  # type: ignore[arg-type]
                out["event_id"] = str(event.event_id)
                time.sleep(seconds)
                tx.commit()
                out["committed_at"] = datetime.now(UTC)
        finally:
            engine.dispose()

    thread = threading.Thread(target=run, name="held-transaction", daemon=True)
    thread.start()
    return thread
