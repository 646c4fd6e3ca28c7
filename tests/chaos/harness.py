"""The scenario harness: a progress watch, the drain wait, scenario spaces and the audited verdict.

Writers live in :mod:`tests.chaos.writers`, relay processes in :mod:`tests.chaos.relays`; both are
re-exported here for the scenarios.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition

from payment_events.audit import audit
from payment_events.audit.report import AuditReport
from payment_events.outbox.table import outbox_table
from tests.chaos.infra import create_topics, delete_topics, fresh_database
from tests.chaos.relays import RelayProcess, delivery_mode, kill_leftover_relays, relay_options
from tests.chaos.writers import WriteLog, Writers, hold_transaction, make_event

__all__ = [
    "ProgressWatch",
    "RelayProcess",
    "ScenarioResult",
    "WriteLog",
    "Writers",
    "hold_transaction",
    "kcat_ids",
    "kill_leftover_relays",
    "make_event",
    "relay_options",
    "scenario_space",
    "timed",
    "verdict",
    "wait_drained",
]


# ---------------------------------------------------------------------------------------- progress
class ProgressWatch:
    """Samples the sum of the topic's high watermarks every ``interval`` s (independent of the relay), to
    tell when delivery resumed after a fault."""

    def __init__(self, bootstrap: str, topic: str, interval: float = 0.2) -> None:
        self.bootstrap, self.topic, self.interval = bootstrap, topic, interval
        self.samples: list[tuple[float, int]] = []
        self.fault_ends: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-watch", daemon=True)

    def __enter__(self) -> ProgressWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def fault_ended(self) -> None:
        """Mark the moment a fault was healed (a relay restarted, a broker back, the network healed)."""
        self.fault_ends.append(time.monotonic())

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"chaos-watch-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "socket.timeout.ms": 2000,
            }
        )
        try:
            partitions: list[int] = []
            while not self._stop.is_set():
                try:
                    if not partitions:
                        meta = consumer.list_topics(self.topic, timeout=2).topics[self.topic]
                        partitions = sorted(meta.partitions)
                    total = sum(
                        consumer.get_watermark_offsets(
                            TopicPartition(self.topic, p), timeout=1, cached=False
                        )[1]
                        for p in partitions
                    )
                    self.samples.append((time.monotonic(), total))
                except Exception:  # noqa: BLE001 - broker down or unreachable: skip this sample
                    partitions = []  # re-read the metadata next time
                self._stop.wait(self.interval)
        finally:
            consumer.close()

    def max_gap(self) -> float:
        """The longest interval between two samples (a large one makes ``recoveries`` coarse)."""
        times = [t for t, _ in self.samples]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def recoveries(self) -> list[float]:
        """Per healed fault: seconds until the topic grew beyond everything seen before the heal."""
        out = []
        for end in self.fault_ends:
            before = max((total for t, total in self.samples if t <= end), default=0)
            later = [t for t, total in self.samples if t > end and total > before]
            if later:
                out.append(later[0] - end)
        return out


def wait_drained(database_url: str, timeout: float, relays: Sequence[RelayProcess] = ()) -> float:
    """Wait until the outbox holds no pending row (the relays caught up); return seconds waited. Gives
    up early when every one of ``relays`` has died on its own (nothing would drain the outbox)."""
    started = time.monotonic()
    engine = sa.create_engine(database_url, pool_pre_ping=True)
    query = sa.select(sa.func.count()).select_from(outbox_table).where(outbox_table.c.state == "pending")
    try:
        while time.monotonic() - started < timeout:
            try:
                with engine.connect() as conn:
                    if conn.execute(query).scalar_one() == 0:
                        break
            except sa.exc.OperationalError:
                pass
            if relays and not any(r.alive for r in relays):
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------- verdict
@dataclass
class ScenarioResult:
    """One scenario's figures, all from the audit of the real topic (and kcat)."""

    name: str
    committed: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    recover_seconds: float | None = None
    pending: int = 0
    dead: int = 0
    passed: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    report: AuditReport | None = None

    def line(self) -> str:
        """The one line the suite prints for this scenario."""
        recover = "-" if self.recover_seconds is None else f"{self.recover_seconds:.2f}s"
        extra = f"; {'; '.join(self.notes)}" if self.notes else ""
        return (
            f"{self.name:<22} committed={self.committed:<6} delivered={self.delivered:<6} lost={self.lost} "
            f"duplicates={self.duplicates} order_violations={self.order_violations} recover={recover} "
            f"{'PASS' if self.passed else 'FAIL'} ({self.seconds:.0f}s{extra})"
        )


def kcat_ids(bootstrap: str, topics: Sequence[str]) -> set[str]:
    """Event ids (``ce_id`` headers) that the independent kcat client reads from ``topics``."""
    from tests.conftest import kcat_read

    ids: set[str] = set()
    for topic in topics:
        for message in kcat_read(bootstrap, topic):
            ce_id = message.headers.get("ce_id")
            if ce_id:
                ids.add(ce_id.decode())
    return ids


def verdict(
    result: ScenarioResult,
    database_url: str,
    bootstrap: str,
    topics: Sequence[str],
    writes: WriteLog,
    *,
    expected_dead: int = 0,
    recoveries: Sequence[float] = (),
    relays: Sequence[RelayProcess] = (),
) -> ScenarioResult:
    """Audit the topics against the ledger, cross-check with kcat and the writers' own log, and fill in
    ``result``: committed, delivered, lost, duplicates, order violations, pass/fail."""
    exactly_once = delivery_mode() == "exactly-once"  # then any read_committed duplicate fails
    report = audit(
        database_url, bootstrap, list(topics), detail_limit=50, timeout=300, exactly_once=exactly_once
    )
    result.report = report
    t = report.overall
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox_table.c.event_id, outbox_table.c.state, outbox_table.c.topic)
            ).all()
    finally:
        engine.dispose()
    ledger = {event_id: state for event_id, state, topic in rows if topic in topics}
    everything = {r.event_id for r in rows}
    missing_from_ledger = [i for i in writes.committed if i not in everything]
    witnessed = kcat_ids(bootstrap, topics)
    kcat_missing = [i for i, state in ledger.items() if state != "dead" and i not in witnessed]
    undelivered_pending = t.pending - t.pending_delivered
    result.committed = t.committed
    result.delivered = t.delivered
    result.lost = t.lost + len(missing_from_ledger)
    result.duplicates = t.duplicates
    result.order_violations = t.order_violations
    result.pending = undelivered_pending
    result.dead = t.dead
    if recoveries:
        result.recover_seconds = max(recoveries)
    if missing_from_ledger:
        result.notes.append(f"{len(missing_from_ledger)} committed writes missing from the outbox")
    if len(kcat_missing) != t.lost + undelivered_pending:
        result.notes.append(f"kcat misses {len(kcat_missing)} events, audit {t.lost + undelivered_pending}")
    if undelivered_pending:
        result.notes.append(f"{undelivered_pending} still pending")
    if t.dead != expected_dead:
        result.notes.append(f"dead={t.dead} expected {expected_dead}")
    if t.ledger_mismatches or t.unknown:
        result.notes.append(f"ledger_mismatches={t.ledger_mismatches} unknown={t.unknown}")
    for relay in relays:
        relay.terminate()
        if relay.unexpected_exits:
            result.notes.append(f"{relay.name} exited on its own {relay.unexpected_exits}: {relay.log_path}")
    if writes.uncertain:
        result.notes.append(f"{len(writes.uncertain)} writes with unknown commit outcome")
    result.passed = (
        report.ok
        and result.lost == 0
        and undelivered_pending == 0
        and t.dead == expected_dead
        and not t.ledger_mismatches
        and not t.unknown
        and len(kcat_missing) == t.lost
    )
    return result


@contextlib.contextmanager
def scenario_space(
    bootstrap: str, partitions: int = 6, replication: int = 1, topic_config: dict[str, str] | None = None
) -> Iterator[tuple[str, str, str]]:
    """A fresh database and fresh topic + dead-letter topic; yields (database_url, topic, dlq_topic)."""
    suffix = uuid.uuid4().hex[:10]
    topic, dlq = f"chaos.{suffix}", f"chaos.{suffix}.dlq"
    create_topics(bootstrap, [topic, dlq], partitions, replication, topic_config)
    try:
        with fresh_database() as url:
            yield url, topic, dlq
    finally:
        delete_topics(bootstrap, [topic, dlq])


def timed(fn: Callable[[], ScenarioResult]) -> ScenarioResult:
    """Run a scenario and record its wall time; an exception becomes a failed result with the reason."""
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the others' figures
        name = getattr(fn, "__name__", "scenario")
        result = ScenarioResult(name=name, notes=[f"error: {type(exc).__name__}: {str(exc)[:300]}"])
    finally:
        kill_leftover_relays()
    result.seconds = time.monotonic() - started
    return result
