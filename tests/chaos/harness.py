"""The scenario harness: steady writers, relay processes, a progress watch and the audited verdict."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition

from payment_events.audit import audit
from payment_events.audit_report import AuditReport
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
from payment_events.outbox.table import outbox_table
from tests.chaos.infra import ROOT, create_topics, delete_topics, fresh_database, relay_url

EVENT_MODELS: tuple[type[BaseEvent], ...] = (
    PaymentSucceeded,
    PaymentCaptured,
    PaymentFailed,
    RefundProcessed,
    RefundFailed,
    PaymentRequiresAction,
)
LOG_DIR = Path(os.environ.get("PAYMENT_EVENTS_CHAOS_LOGS", ROOT / ".services" / "chaos-logs"))


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


# ---------------------------------------------------------------------------------------- relays
def relay_options(dlq_topic: str, **overrides: Any) -> dict[str, Any]:
    """RelayConfig options for chaos runs: fast lease takeover and short backoff caps."""
    return {
        "batch_size": 500,
        "poll_interval_seconds": 0.5,
        "lease_refresh_seconds": 1.0,
        "backoff_base_seconds": 0.1,
        "backoff_cap_seconds": 3.0,
        "backlog_interval_seconds": 5.0,
        "dlq_topic": dlq_topic,
        **overrides,
    }


_RUNNING: set[RelayProcess] = set()


def kill_leftover_relays() -> int:
    """SIGKILL every relay process this suite started and did not stop (after an error or Ctrl-C)."""
    leftovers = [r for r in _RUNNING if r.alive]
    for relay in leftovers:
        relay.kill()
    _RUNNING.clear()
    return len(leftovers)


atexit.register(kill_leftover_relays)


class RelayProcess:
    """One real relay in its own process (``tests.chaos.relay_main``); SIGKILL and restart at will."""

    def __init__(self, name: str, database_url: str, bootstrap: str, options: dict[str, Any]) -> None:
        self.name, self.options = name, options
        self.url, self.bootstrap = relay_url(database_url), bootstrap
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.unexpected_exits: list[int] = []
        self._ready_mark = 0

    _READY = '"relay.shards"'
    """The log event that shows a started relay has reached its loop (it logs its first shard lease)."""

    @property
    def ready(self) -> bool:
        """True once the current process reached its relay loop."""
        return self.alive and self._log_text().count(self._READY) > self._ready_mark

    def start(self, *, wait: bool = False, timeout: float = 60.0) -> None:
        """Start (or restart) the relay process; with ``wait``, return once it owns its shards."""
        self._check_exit()
        marker = self._READY
        seen = self._ready_mark = self._log_text().count(marker)
        # This checkout's code (src first), so a suite run from an exported snapshot tests that snapshot.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.chaos.relay_main",
                    self.url,
                    self.bootstrap,
                    json.dumps(self.options),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while wait and self._log_text().count(marker) <= seen:
            if time.monotonic() > deadline or not self.alive:
                raise RuntimeError(f"relay {self.name} did not start; see {self.log_path}")
            time.sleep(0.1)

    def log_count(self, marker: str) -> int:
        """How often ``marker`` appears in this relay's log (all its runs)."""
        return self._log_text().count(marker)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _check_exit(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self.unexpected_exits.append(self._proc.returncode)
            self._proc = None

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to finish a batch or mark anything."""
        self._check_exit()
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(30)
            self._proc = None
            self.kills += 1

    def terminate(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait for the graceful stop; SIGKILL after ``timeout``. Returns the exit code."""
        self._check_exit()
        if self._proc is None:
            return None
        self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait(30)
        self._proc = None
        return code

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the relay's log (for a failing scenario's report)."""
        return "\n".join(self._log_text().splitlines()[-lines:])


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
    report = audit(database_url, bootstrap, list(topics), detail_limit=50, timeout=300)
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
