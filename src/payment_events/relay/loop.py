"""The relay loop: claim -> produce -> wait for delivery reports -> resolve, until stopped.

Only I/O lives here; every decision comes from :mod:`payment_events.relay.decisions`. One cycle is
synchronous: a batch is claimed (owned shards, due pending rows, id order), produced, its delivery
reports awaited (bounded), and its outcomes written back in one transaction. The next claim happens only
after that, so no key is ever in flight twice and rows are marked only after their ack.

Crash safety needs nothing from this loop: a row is marked published only after its ack; anything
unmarked when the process dies is pending and is claimed again (a duplicate is possible, a loss is not).
``stop()`` only sets a flag (safe from a signal handler): the current cycle finishes (its reports are
awaited, bounded by ``delivery_timeout_seconds``, and marked), then leases are released and ``run``
returns.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from payment_events.errors import ConfigurationError
from payment_events.observer import NullObserver, RelayObserver
from payment_events.outbox.ports import OutboxRecord, OutboxStore, ShardLeases
from payment_events.relay.decisions import (
    SIZE_CODES,
    Delivered,
    Resolution,
    backoff_delay,
    group_counts,
    next_wait,
    resolve_batch,
)
from payment_events.relay.ports import BatchProducer, OutgoingMessage, Waker
from payment_events.relay.settings import RelayConfig
from payment_events.relay.wakeup import SleepWaker

log = logging.getLogger("payment_events.relay.loop")

_STOP_CHECK_SECONDS = 0.25
"""Sleeps are cut into slices this long so ``stop()`` takes effect promptly."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the relay's default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one claim-produce-resolve cycle did (for tests, the CLI and benchmarks)."""

    claimed: int
    published: int
    retried: int
    dead: int
    untouched: int
    outage: bool


_EMPTY = CycleReport(0, 0, 0, 0, 0, False)


class Relay:
    """Publishes pending outbox rows to Kafka; see the module docstring for the cycle.

    ``leases`` is ``None`` for a single relay over every shard (SQLite). ``waker`` defaults to plain
    polling. ``closers`` run after shutdown (close the store's engine, the lease connection). ``clock``
    and ``rand`` exist for tests.
    """

    def __init__(
        self,
        store: OutboxStore,
        producer: BatchProducer,
        config: RelayConfig | None = None,
        *,
        leases: ShardLeases | None = None,
        observer: RelayObserver | None = None,
        waker: Waker | None = None,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        closers: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.config = config or RelayConfig()
        message_timeout = getattr(producer, "message_timeout", None)
        if message_timeout is not None and message_timeout <= self.config.delivery_timeout_seconds:
            raise ConfigurationError(
                "producer option message.timeout.ms must be longer than the relay's "
                f"delivery_timeout_seconds ({self.config.delivery_timeout_seconds} s): the relay, not "
                "librdkafka, must end a batch's wait, so that a later message never gets through after "
                "an earlier one of its partition timed out"
            )
        self._closers = list(closers)
        self._closed = False
        self._store = store
        self._producer = producer
        self._leases = leases
        self._observer: RelayObserver = observer or NullObserver()
        self._waker: Waker = waker or SleepWaker()
        self._clock = clock
        self._rand = rand
        self._policy = self.config.retry_policy
        self._stopping = False
        self._shards: frozenset[int] | None = None
        self._next_lease_refresh = 0.0
        self._next_purge = 0.0
        self._next_backlog = 0.0
        self._paused_until = 0.0
        self._outages = 0
        self._errors = 0

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        """Ask the relay to finish its current cycle and return from :meth:`run`. Signal-safe."""
        self._stopping = True

    @property
    def shards(self) -> frozenset[int] | None:
        """The shards this instance owned at its last lease refresh (``None``: all, no leases)."""
        return self._shards

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def run(self) -> None:
        """Relay until :meth:`stop`; then release shards, close the producer and the waker."""
        log.info("relay started", extra={"event": "relay.started", "batch_size": self.config.batch_size})
        try:
            while not self._stopping:
                self._housekeeping()
                if time.monotonic() < self._paused_until:
                    self._sleep(self._paused_until - time.monotonic())
                    continue
                report = self._guarded_cycle()
                if report is None or self._stopping:
                    continue
                wait = next_wait(report.claimed, self.config.batch_size, self.config.poll_interval_seconds)
                if wait > 0 and not report.outage:
                    self._wake_or_poll(wait)
        finally:
            self._shutdown()

    def drain(self, max_cycles: int | None = None) -> int:
        """Run cycles until a claim comes back short of a full batch (or ``max_cycles``); return the
        number of rows resolved (published, retried or dead). Does not sleep, purge or release shards."""
        total = 0
        cycles = 0
        while max_cycles is None or cycles < max_cycles:
            self._refresh_leases(force=cycles == 0)
            report = self.run_once()
            cycles += 1
            total += report.published + report.retried + report.dead
            if report.claimed < self.config.batch_size or report.outage:
                break
        return total

    # ------------------------------------------------------------------ one cycle
    def run_once(self) -> CycleReport:
        """Claim one batch, produce it, wait for the reports, resolve. Store errors propagate."""
        shards: frozenset[int] | None = None
        if self._leases is not None:
            if self._shards is None:
                self._refresh_leases(force=True)
            shards = self._shards
            if not shards:
                return _EMPTY
        records = self._store.claim(shards, self.config.batch_size, self._clock())
        self._observer.database_reachable(True)
        if not records:
            return _EMPTY
        self._observer.batch(len(records))
        outcomes = self._producer.produce_batch(records, self.config.delivery_timeout_seconds)
        resolution = resolve_batch(
            records, outcomes, now=self._clock(), policy=self._policy, rand=self._rand
        )
        if resolution.dead_records and self.config.dlq_topic:
            self._dead_letter(resolution)
        self._store.resolve(resolution.published, resolution.retries, resolution.dead)
        self._report(resolution)
        return CycleReport(
            claimed=len(records),
            published=len(resolution.published),
            retried=len(resolution.retries),
            dead=len(resolution.dead),
            untouched=len(resolution.untouched),
            outage=resolution.outage,
        )

    def _guarded_cycle(self) -> CycleReport | None:
        """One cycle; an unexpected error is logged and paused on, never fatal to the loop."""
        try:
            report = self.run_once()
        except Exception as exc:  # the relay must survive database and client hiccups
            self._errors += 1
            delay = backoff_delay(
                self._errors, self.config.backoff_base_seconds, self.config.backoff_cap_seconds, self._rand
            )
            log.error(
                "relay cycle failed; retrying after a pause",
                extra={"event": "relay.cycle_failed", "error": type(exc).__name__, "pause_seconds": delay},
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            self._observer.database_reachable(False)
            self._paused_until = time.monotonic() + delay
            return None
        self._errors = 0
        if report.outage:
            self._outages += 1
            delay = backoff_delay(
                self._outages, self.config.backoff_base_seconds, self.config.backoff_cap_seconds, self._rand
            )
            self._paused_until = time.monotonic() + max(delay, 0.05)
            log.warning(
                "no message of the batch got through; pausing the relay",
                extra={"event": "relay.outage", "pause_seconds": round(delay, 3), "claimed": report.claimed},
            )
        elif report.published:
            self._outages = 0
        return report

    # ------------------------------------------------------------------ outcomes
    def _dead_letter(self, resolution: Resolution) -> None:
        """Copy dead rows to the dead-letter topic; the database state stays the source of truth."""
        topic = self.config.dlq_topic
        assert topic is not None
        messages = [_dlq_message(topic, rec, code, reason) for rec, code, reason in resolution.dead_records]
        outcomes = self._producer.produce_batch(messages, self.config.delivery_timeout_seconds)
        for (record, code, _), outcome in zip(resolution.dead_records, outcomes, strict=True):
            failed = not isinstance(outcome, Delivered)
            log.warning(
                "event dead-lettered",
                extra={
                    "event": "relay.dead_lettered",
                    "outbox_id": record.id,
                    "event_id": record.event_id,
                    "topic": record.topic,
                    "attempt": record.attempts + 1,
                    "code": code,
                    "dlq_produced": not failed,
                },
            )
            if failed:
                log.error(
                    "could not copy a dead event to the dead-letter topic; it is dead in the database",
                    extra={
                        "event": "relay.dlq_failed",
                        "outbox_id": record.id,
                        "event_id": record.event_id,
                        "topic": topic,
                        "code": getattr(outcome, "code", "NO_REPORT"),
                    },
                )

    def _report(self, resolution: Resolution) -> None:
        """Tell the observer (grouped, low-cardinality) and log summaries (no keys, no payloads)."""
        observer = self._observer
        if resolution.published_records:
            now = self._clock()
            latencies: dict[tuple[str, str], list[float]] = {}
            for record in resolution.published_records:
                latencies.setdefault((record.event_type, record.topic), []).append(
                    (now - record.created_at).total_seconds()
                )
            for (event_type, topic), values in latencies.items():
                observer.published(event_type, topic, values)
            observer.broker_reachable(True)
            log.debug(
                "batch published",
                extra={"event": "relay.published", "count": len(resolution.published_records)},
            )
        if resolution.retried_records:
            for (event_type, topic, code), count in group_counts(
                (r.event_type, r.topic, e.code) for r, e in resolution.retried_records
            ).items():
                observer.retried(event_type, topic, code, count)
            first, error = resolution.retried_records[0]
            log.info(
                "events scheduled for retry",
                extra={
                    "event": "relay.retry_scheduled",
                    "count": len(resolution.retried_records),
                    "outbox_id": first.id,
                    "event_id": first.event_id,
                    "topic": first.topic,
                    "attempt": first.attempts + 1,
                    "code": error.code,
                },
            )
        if resolution.dead_records:
            for (event_type, topic, code), count in group_counts(
                (r.event_type, r.topic, code) for r, code, _ in resolution.dead_records
            ).items():
                observer.dead_lettered(event_type, topic, code, count)
        if resolution.outage:
            observer.broker_reachable(False)

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self) -> None:
        now = time.monotonic()
        try:
            self._refresh_leases(force=False)
            if now >= self._next_purge:
                self._next_purge = now + self.config.purge_interval_seconds
                self.purge()
            if now >= self._next_backlog:
                self._next_backlog = now + self.config.backlog_interval_seconds
                stats = self._store.backlog(self._clock())
                self._observer.backlog(stats.pending, stats.oldest_pending_age_seconds)
        except Exception as exc:  # noqa: BLE001 - housekeeping must never stop publishing
            log.error(
                "relay housekeeping failed",
                extra={"event": "relay.housekeeping_failed", "error": type(exc).__name__},
            )
            self._observer.database_reachable(False)

    def _refresh_leases(self, *, force: bool) -> None:
        if self._leases is None or (not force and time.monotonic() < self._next_lease_refresh):
            return
        self._next_lease_refresh = time.monotonic() + self.config.lease_refresh_seconds
        shards = self._leases.refresh()
        if shards != self._shards:
            log.info("shards changed", extra={"event": "relay.shards", "count": len(shards)})
        self._shards = shards
        self._observer.shards_owned(len(shards))

    def purge(self) -> int:
        """Delete published rows past retention, in small transactions; return how many."""
        older_than = self._clock() - timedelta(seconds=self.config.retention_seconds)
        total = 0
        for _ in range(self.config.purge_max_batches):
            if self._stopping:
                break
            deleted = self._store.purge_published(older_than, self.config.purge_batch_size)
            total += deleted
            if deleted < self.config.purge_batch_size:
                break
        if total:
            log.info("purged published rows", extra={"event": "relay.purged", "count": total})
        return total

    # ------------------------------------------------------------------ waiting and shutdown
    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _STOP_CHECK_SECONDS))

    def _wake_or_poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._waker.wait(min(left, _STOP_CHECK_SECONDS)):
                return

    def _shutdown(self) -> None:
        log.info("relay stopping", extra={"event": "relay.stopping"})
        self.close()
        log.info("relay stopped", extra={"event": "relay.stopped"})

    def close(self) -> None:
        """Close the producer (bounded flush), release shards, close the waker and run the closers.

        ``run`` does this on its way out; call it yourself only for a relay you never ran. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        steps: list[Callable[[], object]] = [
            lambda: self._producer.close(self.config.delivery_timeout_seconds),
            *([self._leases.release_all] if self._leases is not None else []),
            self._waker.close,
            *self._closers,
        ]
        for step in steps:
            try:
                step()
            except Exception:  # every resource gets its chance to close
                log.exception("closing a relay resource failed", extra={"event": "relay.close_failed"})


def _dlq_message(topic: str, record: OutboxRecord, code: str, reason: str) -> OutgoingMessage:
    """The dead-letter copy: same key and headers plus the reason; a too-large payload is left out."""
    headers = (
        *record.headers,
        ("dlq-reason", reason.encode()),
        ("dlq-error-code", code.encode()),
        ("dlq-original-topic", record.topic.encode()),
        ("dlq-attempts", str(record.attempts + 1).encode()),
        ("dlq-outbox-id", str(record.id).encode()),
    )
    payload = record.payload
    if code in SIZE_CODES:
        payload = b""
        headers = (*headers, ("dlq-payload-omitted", b"too-large"))
    return OutgoingMessage(topic=topic, key=record.key, payload=payload, headers=headers)
