"""Retention: published rows older than ``retention_seconds`` are deleted, in small transactions, on a
thread of their own (a purge catching up on a large backlog never pauses publishing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

from payment_events.outbox.ports import OutboxStore
from payment_events.relay.settings import RelayConfig

log = logging.getLogger("payment_events.relay.retention")


class RetentionPurger:
    """Runs a purge every ``purge_interval_seconds`` (never two at once) until caught up or the run's
    ``purge_budget_seconds`` is spent. ``stopping`` ends a run early (the relay is shutting down)."""

    def __init__(
        self,
        store: OutboxStore,
        config: RelayConfig,
        clock: Callable[[], datetime],
        stopping: Callable[[], bool],
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._stopping = stopping
        self._next_run = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future[None] | None = None

    def maybe_start(self, now: float) -> None:
        """Start a background run if one is due and none is running."""
        if now < self._next_run or (self._running is not None and not self._running.done()):
            return
        self._next_run = now + self._config.purge_interval_seconds
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-purge")
        self._running = self._executor.submit(self._background)

    def purge(self) -> int:
        """Delete published rows past retention, in small transactions, until caught up or the time
        budget (``purge_budget_seconds``) is spent; return how many."""
        config = self._config
        older_than = self._clock() - timedelta(seconds=config.retention_seconds)
        total = 0
        deadline = time.monotonic() + config.purge_budget_seconds
        for _ in range(config.purge_max_batches):
            if self._stopping() or time.monotonic() >= deadline:
                break
            deleted = self._store.purge_published(older_than, config.purge_batch_size)
            total += deleted
            if deleted < config.purge_batch_size:
                break
        if total:
            log.info("purged published rows", extra={"event": "relay.purged", "count": total})
        return total

    def close(self) -> None:
        """Wait for a running purge to finish its current batch (it checks ``stopping``)."""
        if self._executor is not None:
            self._executor.shutdown()

    def _background(self) -> None:
        try:
            self.purge()
        except Exception as exc:  # noqa: BLE001 - the next run tries again; publishing is unaffected
            log.error(
                "relay purge failed",
                extra={"event": "relay.housekeeping_failed", "error": type(exc).__name__},
            )
