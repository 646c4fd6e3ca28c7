"""The demo behind ``payment-events demo`` (``make run``): the main job, end to end, in one command.

A small payment service -- :class:`PaymentProcessingService` (succeeds, fails, asks for 3-D Secure,
captures), :class:`RefundService` (refund processed or failed), :class:`PaymentMethodService` (card added,
removed) and a :class:`WebhookHandlerService` (the gateway's 3-D Secure outcome) -- changes its own rows
and writes each event in the *same transaction* through
:class:`~payment_events.outbox.publisher.OutboxPublisher`.
The relay runs in-process and publishes to Kafka; a plain confluent-kafka consumer reads the topic back,
decodes every message, and the demo prints a table: events per type, delivered, duplicates, per-key
order, and end-to-end latency (commit to consumed) p50/p99.

Defaults: the embedded SQLite outbox (``sqlite:///payment_events.db``) and the local broker from
``scripts/services up`` (127.0.0.1:19092). It upgrades the schema and ensures the topics itself.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from payment_events.events import (
    ActionRequiredDetails,
    PaymentCaptured,
    PaymentEvent,
    PaymentFailed,
    PaymentMethodAdded,
    PaymentMethodRemoved,
    PaymentRequiresAction,
    PaymentSucceeded,
    RefundFailed,
    RefundProcessed,
)
from payment_events.observer import NullObserver
from payment_events.outbox.publisher import OutboxPublisher

if TYPE_CHECKING:
    from payment_events.config import Settings

EVENT_TYPES = (
    "PaymentSucceeded",
    "PaymentFailed",
    "PaymentRequiresAction",
    "PaymentCaptured",
    "RefundProcessed",
    "RefundFailed",
    "PaymentMethodAdded",
    "PaymentMethodRemoved",
)


# ------------------------------------------------------------------------------------------ the ledger


@dataclass
class Ledger:
    """What the writers committed (event id -> type, key, commit time), in commit order. Thread-safe."""

    order: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    committed_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, events: Sequence[PaymentEvent], at: float) -> None:
        """Remember events that were just committed."""
        with self.lock:
            for event in events:
                event_id = str(event.event_id)
                self.order.append(event_id)
                self.types[event_id] = event.event_type
                self.keys[event_id] = event.partition_key
                self.committed_at[event_id] = at

    def all_in(self, seen: set[str]) -> bool:
        """Whether every committed event id is in ``seen``."""
        with self.lock:
            return all(event_id in seen for event_id in self.order)

    def count(self) -> int:
        """How many events were committed so far."""
        with self.lock:
            return len(self.order)


# ------------------------------------------------------------------------------------ payment service

_metadata = sa.MetaData()
PAYMENTS = sa.Table(
    "demo_payments",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
REFUNDS = sa.Table(
    "demo_refunds",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("payment_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
PAYMENT_METHODS = sa.Table(
    "demo_payment_methods",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("brand", sa.String(32), nullable=False),
    sa.Column("last_four", sa.String(4), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)
"""The demo service's own tables (created next to the outbox table)."""


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment of the demo service (amount in minor units)."""

    id: str
    order_id: str
    user_id: str
    amount: int
    currency: str


class _Base:
    """One transaction = the service's own row change + its event(s) through the outbox publisher."""

    def __init__(self, engine: Engine, settings: Settings, ledger: Ledger) -> None:
        self._engine = engine
        self._router = settings.topic_router()
        self._shard_count = settings.relay_shard_count
        self._ledger = ledger

    def _commit(self, change: Callable[[Connection], object], events: Sequence[PaymentEvent]) -> None:
        with self._engine.begin() as conn:
            change(conn)
            OutboxPublisher(conn, router=self._router, shard_count=self._shard_count).publish_many(events)
            committing = time.time()  # the commit happens as the block exits
        self._ledger.record(events, committing)


def _now() -> datetime:
    return datetime.now(UTC)


class PaymentProcessingService(_Base):
    """Authorises payments with a (simulated) gateway: success, decline, or 3-D Secure; captures."""

    def create(self, payment: Payment) -> None:
        """Insert a new payment row (no event: nothing happened yet)."""
        with self._engine.begin() as conn:
            conn.execute(
                PAYMENTS.insert().values(
                    id=payment.id,
                    order_id=payment.order_id,
                    user_id=payment.user_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    status="created",
                    updated_at=_now(),
                )
            )

    def succeed(self, payment: Payment, via_webhook: bool = False) -> None:
        """The gateway authorised the payment: status ``succeeded`` and a PaymentSucceeded event."""
        event = PaymentSucceeded(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            amount_paid=payment.amount,
            currency=payment.currency,
            payment_gateway="stripe",
            gateway_payment_intent_id=f"pi_{payment.id}",
            processed_at=_now(),
            correlation_id="webhook" if via_webhook else None,
        )
        self._commit(_status(payment.id, "succeeded"), [event])

    def fail(self, payment: Payment, code: str = "card_declined") -> None:
        """The gateway declined: status ``failed`` and a PaymentFailed event (no card data in it)."""
        event = PaymentFailed(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            amount=payment.amount,
            currency=payment.currency,
            failure_reason="The card was declined by the issuer.",
            gateway_error_code=code,
            failed_at=_now(),
            retryable=code != "card_declined",
        )
        self._commit(_status(payment.id, "failed"), [event])

    def require_action(self, payment: Payment) -> None:
        """The issuer asks for 3-D Secure: status ``requires_action`` and a PaymentRequiresAction event."""
        details = ActionRequiredDetails(
            type="three_d_secure",
            redirect_url=f"https://pay.example.com/3ds/{payment.id}",
            expires_at=_now() + timedelta(minutes=15),
        )
        event = PaymentRequiresAction(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            action_required_details=details,
        )
        self._commit(_status(payment.id, "requires_action"), [event])

    def capture(self, payment: Payment) -> None:
        """Capture an authorised payment: status ``captured`` and a PaymentCaptured event."""
        event = PaymentCaptured(
            payment_id=payment.id,
            order_id=payment.order_id,
            amount_captured=payment.amount,
            currency=payment.currency,
            gateway_transaction_id=f"txn_{payment.id}",
            captured_at=_now(),
        )
        self._commit(_status(payment.id, "captured"), [event])


class RefundService(_Base):
    """Refunds (part of) a captured payment: RefundProcessed or RefundFailed."""

    def refund(self, payment: Payment, amount: int, succeed: bool) -> None:
        """Insert the refund row and its outcome event in one transaction."""
        refund_id = f"re_{uuid.uuid4().hex[:12]}"
        event: PaymentEvent
        if succeed:
            event = RefundProcessed(
                refund_id=refund_id,
                payment_id=payment.id,
                order_id=payment.order_id,
                amount_refunded=amount,
                currency=payment.currency,
                processed_at=_now(),
            )
        else:
            event = RefundFailed(
                refund_id=refund_id,
                payment_id=payment.id,
                order_id=payment.order_id,
                amount=amount,
                currency=payment.currency,
                failure_reason="The charge was disputed.",
                gateway_error_code="charge_disputed",
                failed_at=_now(),
            )
        status = "processed" if succeed else "failed"

        def change(conn: Connection) -> None:
            conn.execute(
                REFUNDS.insert().values(
                    id=refund_id, payment_id=payment.id, amount=amount, status=status, updated_at=_now()
                )
            )

        self._commit(change, [event])


class PaymentMethodService(_Base):
    """Stores a customer's cards (brand and last four only) and removes them."""

    def add(self, user_id: str, brand: str, last_four: str) -> str:
        """Add a card: the method row and a PaymentMethodAdded event; returns the method id."""
        method_id = f"pm_{uuid.uuid4().hex[:12]}"
        event = PaymentMethodAdded(
            payment_method_id=method_id,
            user_id=user_id,
            type="card",
            card_brand=brand,
            card_last_four=last_four,
        )

        def change(conn: Connection) -> None:
            conn.execute(
                PAYMENT_METHODS.insert().values(
                    id=method_id, user_id=user_id, brand=brand, last_four=last_four, active=True
                )
            )

        self._commit(change, [event])
        return method_id

    def remove(self, user_id: str, method_id: str) -> None:
        """Deactivate a card: the row change and a PaymentMethodRemoved event."""
        event = PaymentMethodRemoved(payment_method_id=method_id, user_id=user_id)

        def change(conn: Connection) -> None:
            methods = PAYMENT_METHODS
            conn.execute(methods.update().where(methods.c.id == method_id).values(active=False))

        self._commit(change, [event])


class WebhookHandlerService:
    """Handles the gateway's webhooks; a 3-D Secure outcome changes the payment and publishes its event."""

    def __init__(self, payments: PaymentProcessingService) -> None:
        self._payments = payments

    def handle(self, gateway_event: str, payment: Payment) -> None:
        """``payment_intent.succeeded`` -> PaymentSucceeded, ``payment_intent.payment_failed`` ->
        PaymentFailed."""
        if gateway_event == "payment_intent.succeeded":
            self._payments.succeed(payment, via_webhook=True)
        elif gateway_event == "payment_intent.payment_failed":
            self._payments.fail(payment, code="authentication_failed")


def _status(payment_id: str, status: str) -> Callable[[Connection], object]:
    def change(conn: Connection) -> object:

        return conn.execute(
            PAYMENTS.update().where(PAYMENTS.c.id == payment_id).values(status=status, updated_at=_now())
        )

    return change


# ------------------------------------------------------------------------------------------ scenario


def run_scenario(
    engine: Engine, settings: Settings, ledger: Ledger, *, payments: int, seed: int, stop: threading.Event
) -> None:
    """Drive the services for ``payments`` payments with a seeded mix of outcomes (the spec's callers)."""
    rng = random.Random(seed)
    processing = PaymentProcessingService(engine, settings, ledger)
    refunds = RefundService(engine, settings, ledger)
    methods = PaymentMethodService(engine, settings, ledger)
    webhooks = WebhookHandlerService(processing)
    run = uuid.uuid4().hex[:8]
    cards: dict[str, list[str]] = defaultdict(list)
    for i in range(payments):
        if stop.is_set():
            return
        user = f"usr_{run}_{i % max(1, payments // 4)}"
        if not cards[user] or rng.random() < 0.1:
            brand = rng.choice(["visa", "mastercard", "amex"])
            cards[user].append(methods.add(user, brand, f"{rng.randrange(10000):04d}"))
        payment = Payment(
            id=f"pay_{run}_{i}",
            order_id=f"ord_{run}_{i}",
            user_id=user,
            amount=rng.randrange(100, 50_000),
            currency=rng.choice(["EUR", "USD", "GBP"]),
        )
        processing.create(payment)
        outcome = rng.random()
        authorised = False
        if outcome < 0.6:
            processing.succeed(payment)
            authorised = True
        elif outcome < 0.8:
            processing.fail(payment)
        else:
            processing.require_action(payment)
            if rng.random() < 0.8:
                webhooks.handle("payment_intent.succeeded", payment)
                authorised = True
            else:
                webhooks.handle("payment_intent.payment_failed", payment)
        if authorised and rng.random() < 0.7:
            processing.capture(payment)
            if rng.random() < 0.25:
                refunds.refund(payment, max(1, payment.amount // 2), succeed=rng.random() < 0.85)
        if len(cards[user]) > 1 and rng.random() < 0.05:
            methods.remove(user, cards[user].pop(0))


# ------------------------------------------------------------------------------------------ consumer


@dataclass
class Arrival:
    """One message as the consumer read it."""

    event_id: str
    event_type: str
    key: str
    received: float


@dataclass
class Tally:
    """Everything the consumer read, in arrival order. Matching against the ledger happens at the end:
    a message can arrive before its writer thread has recorded the commit, so nothing is judged early."""

    arrivals: list[Arrival] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    undecodable: int = 0


@dataclass
class Summary:
    """The consumer's view matched with the ledger."""

    delivered: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    order_by_key: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    first_seen: set[str] = field(default_factory=set)
    foreign: int = 0


def summarize(tally: Tally, ledger: Ledger) -> Summary:
    """Per-type delivered and duplicate counts, commit-to-consumed latencies and per-key arrival order."""
    summary = Summary()
    with ledger.lock:
        committed = dict(ledger.committed_at)
    for arrival in tally.arrivals:
        at = committed.get(arrival.event_id)
        if at is None:
            summary.foreign += 1
        elif arrival.event_id in summary.first_seen:
            summary.duplicates[arrival.event_type] += 1
        else:
            summary.first_seen.add(arrival.event_id)
            summary.delivered[arrival.event_type] += 1
            summary.order_by_key[arrival.key].append(arrival.event_id)
            summary.latencies.append(max(0.0, arrival.received - at))
    return summary


class TopicReader:
    """A confluent-kafka consumer assigned to every partition of ``topics`` at their current end, so it
    reads exactly what this demo run produces (and nothing from earlier runs)."""

    def __init__(self, kafka_config: dict[str, Any], topics: Iterable[str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"payment-events-demo-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        metadata = self._consumer.list_topics(timeout=10)
        assignment = []
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                high = self._end_offset(TopicPartition(topic, partition))
                assignment.append(TopicPartition(topic, partition, high))
        self._consumer.assign(assignment)

    def _end_offset(self, partition: Any, attempts: int = 40) -> int:
        """The partition's high watermark; a just-created topic may need a moment to elect its leader."""
        from confluent_kafka import KafkaException

        for attempt in range(attempts):
            try:
                _, high = self._consumer.get_watermark_offsets(partition, timeout=10)
                return int(high)
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def poll_into(self, tally: Tally, seconds: float) -> None:
        """Read for up to ``seconds`` and record what arrived."""
        from payment_events.codec import decode

        for message in self._consumer.consume(num_messages=500, timeout=seconds):
            if message.error() is not None:
                continue
            received = time.time()
            try:
                event = decode(message.value() or b"", message.headers())
            except Exception:  # noqa: BLE001 -- a foreign message on a shared topic is counted, not fatal
                tally.undecodable += 1
                continue
            event_id = str(event.event_id)
            tally.arrivals.append(Arrival(event_id, event.event_type, event.partition_key, received))
            tally.seen.add(event_id)

    def close(self) -> None:
        """Leave the assignment and close the client."""
        self._consumer.close()


class _Progress(NullObserver):
    """Counts what the relay published and dead-lettered (read by the progress line)."""

    def __init__(self) -> None:
        self.published_count = 0
        self.dead_count = 0

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Count acknowledged events."""
        self.published_count += len(commit_to_ack_seconds)

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Count dead-lettered events."""
        self.dead_count += count


# ------------------------------------------------------------------------------------------ the run


@dataclass
class DemoReport:
    """The outcome of a demo run; ``ok`` when every committed event was read back in per-key order."""

    written: Counter[str]
    summary: Summary
    order_violations: int
    pending: int
    dead: int
    seconds: float

    @property
    def missing(self) -> int:
        """Committed events the consumer never saw."""
        return sum(self.written.values()) - len(self.summary.first_seen)

    @property
    def ok(self) -> bool:
        """All delivered, in per-key order."""
        return self.missing == 0 and self.order_violations == 0


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_demo(
    settings: Settings,
    *,
    payments: int = 200,
    seed: int = 7,
    timeout: float = 60.0,
    out: IO[str] | None = None,
) -> DemoReport:
    """Run the whole demo and return its report (also printed to ``out``, default stdout).

    ``timeout`` bounds the wait for the last events after the writers finished.
    """
    from payment_events.outbox.sql import SqlOutboxStore
    from payment_events.relay.runner import build_relay

    say = _Printer(out or sys.stdout)
    engine, topics = _prepare(settings, say)
    ledger, tally, progress = Ledger(), Tally(), _Progress()
    # A short poll keeps the demo's latency honest on SQLite (PostgreSQL relays wake on NOTIFY anyway).
    config = replace(
        settings.to_relay_config(), poll_interval_seconds=min(settings.relay_poll_interval, 0.05)
    )
    relay = build_relay(settings.database_url, settings.kafka_bootstrap_servers, config, observer=progress)
    reader = TopicReader(settings.kafka_config(), topics)
    writer = _Writer(engine, settings, ledger, payments, seed)
    relay_thread = threading.Thread(target=relay.run, name="demo-relay", daemon=True)
    started = time.monotonic()
    relay_thread.start()
    writer.start()
    try:
        _watch(writer, reader, tally=tally, ledger=ledger, progress=progress, say=say, timeout=timeout)
    finally:
        writer.stop.set()
        writer.join(30)
        relay.stop()
        relay_thread.join(60)
        reader.close()
        engine.dispose()
        say.end_progress()
    elapsed = time.monotonic() - started
    if writer.error is not None:
        raise writer.error
    with SqlOutboxStore.from_url(settings.database_url, shard_count=settings.relay_shard_count) as store:
        stats = store.backlog(datetime.now(UTC))
    written: Counter[str] = Counter(ledger.types.values())
    summary = summarize(tally, ledger)
    violations = _order_violations(ledger, summary)
    report = DemoReport(written, summary, violations, stats.pending, stats.dead, elapsed)
    _print_report(say, report)
    return report


def _require_broker(settings: Settings, timeout: float = 5.0) -> None:
    """Fail fast, with the fix in the message, when no broker answers."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from payment_events.errors import TransientPublishError

    try:
        AdminClient(settings.kafka_config()).list_topics(timeout=timeout)
    except KafkaException:
        raise TransientPublishError(
            f"no Kafka broker answers at {settings.kafka_bootstrap_servers}: start the local services with "
            "`scripts/services up` (or `make run`), or point --kafka-bootstrap-servers at your cluster"
        ) from None


def _prepare(settings: Settings, say: _Printer) -> tuple[Engine, list[str]]:
    """Upgrade the outbox schema, ensure the topics, create the demo tables; return the engine, topics."""
    from payment_events.cli import prepare_topics
    from payment_events.outbox import migrate
    from payment_events.outbox.sql import configure_sqlite

    say.line(
        "payment-events demo: a payment service (processing, 3-D Secure webhooks, captures, refunds,"
        " payment methods) writes each change and its event in one transaction; a relay publishes the"
        " outbox to Kafka; a consumer reads the topic back."
    )
    say.line(f"outbox database : {_mask(settings.database_url)}")
    say.line(f"kafka           : {settings.kafka_bootstrap_servers}")
    _require_broker(settings)
    migrate.upgrade(settings.database_url)
    statuses = prepare_topics(settings)
    say.line(f"topics          : {', '.join(s.name + (' (created)' if s.created else '') for s in statuses)}")
    engine = sa.create_engine(settings.database_url)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    _metadata.create_all(engine)
    return engine, sorted(settings.topic_router().topics)


class _Writer(threading.Thread):
    """Runs the scenario in its own thread; keeps the first error for the caller."""

    def __init__(self, engine: Engine, settings: Settings, ledger: Ledger, payments: int, seed: int) -> None:
        super().__init__(name="demo-writer", daemon=True)
        self.stop = threading.Event()
        self.error: Exception | None = None
        self._args = (engine, settings, ledger, payments, seed)

    def run(self) -> None:
        engine, settings, ledger, payments, seed = self._args
        try:
            run_scenario(engine, settings, ledger, payments=payments, seed=seed, stop=self.stop)
        except Exception as exc:  # noqa: BLE001 -- re-raised in the main thread after a clean stop
            self.error = exc


def _watch(
    writer: _Writer,
    reader: TopicReader,
    *,
    tally: Tally,
    ledger: Ledger,
    progress: _Progress,
    say: _Printer,
    timeout: float,
) -> None:
    """Consume and show progress until every committed event was read (or ``timeout`` after writing)."""
    deadline: float | None = None
    while True:
        reader.poll_into(tally, 0.02)
        say.progress(
            f"written {ledger.count():>6}  published {progress.published_count:>6}  "
            f"consumed {len(tally.seen):>6}  dead {progress.dead_count}"
        )
        if writer.is_alive():
            continue
        if deadline is None:
            deadline = time.monotonic() + timeout
        if time.monotonic() > deadline or (len(tally.seen) >= ledger.count() and ledger.all_in(tally.seen)):
            return


def _order_violations(ledger: Ledger, tally: Summary) -> int:
    """Keys whose events were first read in a different order than they were committed."""
    committed: dict[str, list[str]] = defaultdict(list)
    for event_id in ledger.order:
        if event_id in tally.first_seen:
            committed[ledger.keys[event_id]].append(event_id)
    return sum(1 for key, ids in committed.items() if tally.order_by_key.get(key, []) != ids)


def _print_report(say: _Printer, report: DemoReport) -> None:
    tally = report.summary
    say.line("")
    say.line(f"{'event type':<24}{'written':>9}{'delivered':>11}{'duplicates':>12}")
    say.line("-" * 56)
    for event_type in EVENT_TYPES:
        say.line(
            f"{event_type:<24}{report.written[event_type]:>9}{tally.delivered[event_type]:>11}"
            f"{tally.duplicates[event_type]:>12}"
        )
    say.line("-" * 56)
    total_dup = sum(tally.duplicates.values())
    say.line(f"{'total':<24}{sum(report.written.values()):>9}{len(tally.first_seen):>11}{total_dup:>12}")
    say.line("")
    p50 = percentile(tally.latencies, 0.50) * 1000
    p99 = percentile(tally.latencies, 0.99) * 1000
    say.line(f"end-to-end latency (commit -> consumed): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    order = "OK" if report.order_violations == 0 else f"{report.order_violations} key(s) out of order"
    say.line(f"per-key order     : {order}")
    say.line(f"missing           : {report.missing}")
    say.line(f"outbox now        : {report.pending} pending, {report.dead} dead")
    say.line(f"took              : {report.seconds:.1f} s")
    result = "every committed event was delivered" if report.ok else "PROBLEMS (see above)"
    say.line(f"result            : {result}")
    if report.ok:
        say.line("next              : `payment-events relay` runs the relay as a service (metrics on")
        say.line("                    http://127.0.0.1:9464/metrics); see docs/operations.md")


def _mask(url: str) -> str:
    from payment_events.config import mask_url

    return mask_url(url)


class _Printer:
    """Lines to a stream; the progress line rewrites itself on a terminal and is throttled otherwise."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last = 0.0
        self._shown = False
        self._text = ""

    def line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def progress(self, text: str) -> None:
        self._text = text
        now = time.monotonic()
        if self._tty:
            self._stream.write("\r" + text)
            self._stream.flush()
            self._shown = True
        elif now - self._last >= 2.0:
            self._last = now
            self.line(text)

    def end_progress(self) -> None:
        if self._tty and self._shown:
            self._stream.write("\n")
            self._stream.flush()
        elif not self._tty and self._text:
            self.line(self._text)
