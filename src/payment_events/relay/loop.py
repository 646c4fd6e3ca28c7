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

Why this module is longer than the house's 400 lines: it is the one place where the cycle's states meet
(claim, produce, overlapped marks, outage pauses, lease refresh, shutdown); what could leave it did
(decisions, delivery vocabulary, reporting, dead-letter copies, retention).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from payment_events.errors import ConfigurationError, LeaseLostError
from payment_events.outbox.ports import (
    ExcludingClaim,
    OutboxRecord,
    OutboxStore,
    PendingBacklog,
    ShardLeases,
    utc_now,
)
from payment_events.relay.dead_letter_copies import DeadLetterCopier
from payment_events.relay.decisions import (
    Resolution,
    backoff_delay,
    merge_outcomes,
    next_wait,
    producible,
    resolve_batch,
)
from payment_events.relay.delivery import Outcome
from payment_events.relay.observer import NullObserver, RelayObserver
from payment_events.relay.ports import BatchProducer, Waker
from payment_events.relay.reporting import dead_letter_copies, report
from payment_events.relay.retention import RetentionPurger
from payment_events.relay.settings import RelayConfig
from payment_events.relay.wakeup import SleepWaker

log = logging.getLogger("payment_events.relay.loop")

_STOP_CHECK_SECONDS = 0.25
"""Sleeps are cut into slices this long so ``stop()`` takes effect promptly."""



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


@dataclass(slots=True)
class _Marking:
    """A decided batch whose marks are being committed in the background (overlapped marks)."""

    future: Future[None]
    ids: list[int]
    resolution: Resolution
    decided_at: datetime


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
        dead_letters: DeadLetterCopier | None = None,
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
        # Dead-letter copies go through their own producer in the service (kafka.guard + a thread); a
        # relay built without one copies through its producer after the marks, bounded and backing off.
        self._dead_letters = dead_letters or DeadLetterCopier(
            producer, timeout=min(5.0, self.config.delivery_timeout_seconds), rand=rand
        )
        self._own_copier = dead_letters is None
        self._closed = False
        self._overlap = self.config.overlap_marks and isinstance(store, ExcludingClaim)
        self._marking: _Marking | None = None
        self._marker: ThreadPoolExecutor | None = None
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
        self._retention = RetentionPurger(store, self.config, clock, lambda: self._stopping)
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
                cycle = self._guarded_cycle()
                if cycle is None or self._stopping:
                    continue
                wait = next_wait(cycle.claimed, self.config.batch_size, self.config.poll_interval_seconds)
                if wait > 0 and not cycle.outage and self._settle_marks():
                    self._wake_or_poll(wait)
        finally:
            self._settle_marks()
            self._shutdown()

    def drain(self, max_cycles: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Run cycles until a claim comes back short of a full batch (or ``max_cycles``); return the
        number of rows resolved (published, retried or dead). Does not sleep, purge or release shards.
        ``progress`` receives the running total after every cycle (e.g. for a progress line)."""
        total = 0
        cycles = 0
        try:
            while max_cycles is None or cycles < max_cycles:
                self._refresh_leases(force=cycles == 0)
                cycle = self.run_once()
                cycles += 1
                total += cycle.published + cycle.retried + cycle.dead
                if progress is not None:
                    progress(total)
                if cycle.claimed < self.config.batch_size or cycle.outage:
                    break
        finally:
            self._join_marking()  # a failure to commit the last marks propagates, like a failed resolve
        return total

    # ------------------------------------------------------------------ one cycle
    def run_once(self) -> CycleReport:
        """One cycle: claim a batch, produce it, wait for its reports, resolve it. Store errors propagate."""
        if self._leases is not None and self._shards is None:
            self._refresh_leases(force=True)
        shards = self._shards
        if shards is not None and not shards:
            return _EMPTY
        records = self._claim(shards)
        if not records:
            return _EMPTY
        # Malformed rows (OutboxRecord.defect) are never produced: they go straight to dead.
        produced = self._producer.produce_batch(producible(records), self.config.delivery_timeout_seconds)
        return self._finish(records, merge_outcomes(records, produced))

    def _claim(self, shards: frozenset[int] | None) -> list[OutboxRecord]:
        if self._marking is not None:
            # The previous batch's rows stay pending until its marks commit: skip them.
            store = cast(ExcludingClaim, self._store)
            records = store.claim_excluding(shards, self.config.batch_size, self._clock(), self._marking.ids)
        else:
            records = self._store.claim(shards, self.config.batch_size, self._clock())
        self._observer.database_reachable(True)
        if records:
            self._observer.batch(len(records))
        return records

    def _finish(self, records: list[OutboxRecord], outcomes: list[Outcome]) -> CycleReport:
        """Resolve a produced batch: decide, copy dead rows to the DLQ, mark, report.

        Overlapped marks (``RelayConfig.overlap_marks``): the previous batch's marks must have committed
        first (if they failed, this batch is not marked either: its rows stay pending and are sent
        again, never marked ahead of an earlier row of their key). A batch whose every row is published
        or dead is then marked in the background while the next batch is claimed and produced; any
        retry or untouched row makes the marks synchronous, so a key's head in backoff is in the
        database before the next claim.
        """
        decided_at = self._clock()
        resolution = resolve_batch(records, outcomes, now=decided_at, policy=self._policy, rand=self._rand)
        copies = dead_letter_copies(self.config.dlq_topic, resolution) if resolution.dead_records else []
        self._join_marking()
        if self._overlap and not (resolution.retries or resolution.untouched or resolution.outage):
            if self._marker is None:
                self._marker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-marks")
            future = self._marker.submit(
                self._store.resolve, resolution.published, resolution.retries, resolution.dead
            )
            self._marking = _Marking(future, [r.id for r in records], resolution, decided_at)
        else:
            self._store.resolve(resolution.published, resolution.retries, resolution.dead)
            report(self._observer, resolution, self._clock())
        if copies:
            self._dead_letters.submit(copies)  # after the dead marks were handed to the store
        if self._own_copier:
            self._dead_letters.pump()
        return CycleReport(
            claimed=len(records),
            published=len(resolution.published),
            retried=len(resolution.retries),
            dead=len(resolution.dead),
            untouched=len(resolution.untouched),
            outage=resolution.outage,
        )

    def _join_marking(self) -> None:
        """Wait for the background marks of the previous batch (if any) and report it; a failure to
        commit them is raised here (their rows stay pending and are claimed again)."""
        marking = self._marking
        if marking is None:
            return
        self._marking = None
        marking.future.result()
        report(self._observer, marking.resolution, marking.decided_at)

    def _settle_marks(self) -> bool:
        """:meth:`_join_marking` for the loop's quiet moments (before sleeping, refreshing shards or
        stopping): a failure is logged and paused on, like a failed cycle. True if all went well."""
        try:
            self._join_marking()
        except Exception as exc:  # noqa: BLE001 - the rows stay pending and are claimed again
            self._lease_check(exc)
            self._errors += 1
            delay = backoff_delay(
                self._errors, self.config.backoff_base_seconds, self.config.backoff_cap_seconds, self._rand
            )
            log.error(
                "committing a batch's marks failed; its rows will be sent again",
                extra={"event": "relay.cycle_failed", "error": type(exc).__name__, "pause_seconds": delay},
            )
            self._observer.database_reachable(False)
            self._paused_until = time.monotonic() + delay
            return False
        return True

    def _guarded_cycle(self) -> CycleReport | None:
        """One cycle; an unexpected error is logged and paused on, never fatal to the loop."""
        try:
            report = self.run_once()
        except Exception as exc:  # the relay must survive database and client hiccups
            self._lease_check(exc)
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

    def _lease_check(self, exc: Exception) -> None:
        """A fenced mark found a shard lost: refresh the leases before the next claim."""
        if isinstance(exc, LeaseLostError):
            self._next_lease_refresh = 0.0

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self) -> None:
        now = time.monotonic()
        try:
            self._refresh_leases(force=False)
            self._retention.maybe_start(now)
            if now >= self._next_backlog:
                self._next_backlog = now + self.config.backlog_interval_seconds
                self._report_backlog()
        except Exception as exc:  # noqa: BLE001 - housekeeping must never stop publishing
            log.error(
                "relay housekeeping failed",
                extra={"event": "relay.housekeeping_failed", "error": type(exc).__name__},
            )
            self._observer.database_reachable(False)

    def _report_backlog(self) -> None:
        # Only pending, the oldest age and the dead count are reported: a store that can answer just
        # those skips the other counts (the published-in-the-last-minute count cost 70 ms at 600,000
        # rows; issue 16).
        if isinstance(self._store, PendingBacklog):
            pending, age, dead = self._store.pending_backlog(self._clock())
        else:
            stats = self._store.backlog(self._clock())
            pending, age, dead = stats.pending, stats.oldest_pending_age_seconds, stats.dead
        self._observer.backlog(pending, age)
        self._observer.dead_rows(dead)

    def _refresh_leases(self, *, force: bool) -> None:
        if self._leases is None:
            return
        if not force and time.monotonic() < self._next_lease_refresh:
            return
        self._join_marking()  # shards change hands only with every mark committed
        self._next_lease_refresh = time.monotonic() + self.config.lease_refresh_seconds
        shards = self._leases.refresh()
        if shards != self._shards:
            log.info("shards changed", extra={"event": "relay.shards", "count": len(shards)})
        self._shards = shards
        self._observer.shards_owned(len(shards))

    def purge(self) -> int:
        """Delete published rows past retention now (see :class:`RetentionPurger`); return how many."""
        return self._retention.purge()

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
            try:
                if self._waker.wait(min(left, _STOP_CHECK_SECONDS)):
                    return
            except Exception as exc:  # noqa: BLE001 - a waker failure (e.g. EMFILE) must never end the relay
                log.warning(
                    "waiting for notifications failed; polling",
                    extra={"event": "relay.wait_failed", "error": type(exc).__name__},
                )
                self._sleep(left)
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
            self._settle_marks,
            *([self._marker.shutdown] if self._marker is not None else []),
            self._retention.close,  # stops after its batch
            lambda: self._dead_letters.close(min(5.0, self.config.delivery_timeout_seconds))
            if not self._own_copier
            else self._dead_letters.pump(),
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
