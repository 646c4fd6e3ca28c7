"""Running the demo: prepare, start the relay and the writers, watch, and print the report."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from payment_events.demo.consumer import Summary, Tally, TopicReader, summarize
from payment_events.demo.service import EVENT_TYPES, METADATA, Ledger, run_scenario
from payment_events.relay.observer import NullObserver

if TYPE_CHECKING:
    from payment_events.config import Settings


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
    from payment_events.outbox.store import SqlOutboxStore
    from payment_events.service import build_relay

    say = _Printer(out or sys.stdout)
    engine, topics = _prepare(settings, say)
    ledger, tally, progress = Ledger(), Tally(), _Progress()
    # A short poll keeps the demo's latency honest on SQLite (PostgreSQL relays wake on NOTIFY anyway).
    config = replace(
        settings.to_relay_config(), poll_interval_seconds=min(settings.relay_poll_interval, 0.05)
    )
    relay = build_relay(settings.database_url, settings.kafka_bootstrap_servers, config, observer=progress)
    try:
        reader = TopicReader(settings.kafka_config(), topics)
    except BaseException:
        relay.close()
        engine.dispose()
        raise
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
    from payment_events.outbox import migrate
    from payment_events.outbox.sqlite import configure_sqlite
    from payment_events.service import prepare_topics

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
    METADATA.create_all(engine)
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
