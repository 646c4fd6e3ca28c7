"""Copies of dead rows on the dead-letter topic, made off the relay's live path.

The row's ``dead`` state in the outbox is the truth (``payment-events dlq list`` / ``replay`` read it);
the copy on the dead-letter topic is a convenience for consumers of that topic. So a dead-letter topic
that is down, deleted or slow must never hold up live traffic: the relay marks the row dead first, then
hands the copy to a :class:`DeadLetterCopier`, which sends it through its *own* producer with a short
timeout and retries failed copies later with backoff. Copies still unsent when the relay stops (or
beyond ``max_pending``) are logged (``relay.dlq_failed``) and exist only as dead rows.

Copies carry the original payload; a copy refused as too large is sent again without it (header
``dlq-payload-omitted: too-large``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from payment_events.relay.decisions import backoff_delay
from payment_events.relay.delivery import SIZE_CODES, Delivered, DeliveryError
from payment_events.relay.ports import BatchProducer, OutgoingMessage

log = logging.getLogger("payment_events.relay.dead_letter_copies")


@dataclass(frozen=True, slots=True)
class Copy:
    """One dead-letter copy to send, with the ids the logs name."""

    message: OutgoingMessage
    outbox_id: int
    event_id: str
    stripped: bool = False
    """Just refused as too large and stripped of its payload: to be sent again at once."""


def without_payload(message: OutgoingMessage) -> OutgoingMessage:
    """The copy without its payload, marked so a consumer knows why."""
    return replace(message, payload=b"", headers=(*message.headers, ("dlq-payload-omitted", b"too-large")))


class DeadLetterCopier:
    """Sends dead-letter copies with a short timeout, retrying failures later with backoff.

    ``threaded=True`` (the service) sends from a background thread: :meth:`submit` never waits. With
    ``threaded=False`` (a relay built without one, tests, the simulation) :meth:`pump` is called by the
    relay after a cycle's marks and sends at most one bounded attempt; during a backoff it returns at once.
    """

    def __init__(
        self,
        producer: BatchProducer,
        *,
        timeout: float = 5.0,
        backoff_base_seconds: float = 1.0,
        backoff_cap_seconds: float = 60.0,
        max_pending: int = 100_000,
        threaded: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._producer = producer
        self._timeout = timeout
        self._base = backoff_base_seconds
        self._cap = backoff_cap_seconds
        self._max_pending = max_pending
        self._clock = clock
        self._rand = rand
        self._pending: deque[Copy] = deque()
        self._lock = threading.Condition()
        self._failures = 0
        self._next_attempt = 0.0
        self._closed = False
        self.copied = 0
        self.dropped = 0
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="relay-dlq", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        """Copies waiting to be sent."""
        with self._lock:
            return len(self._pending)

    def submit(self, copies: Sequence[Copy]) -> None:
        """Queue copies (their rows are already dead in the outbox); never blocks on the broker."""
        with self._lock:
            for copy in copies:
                if len(self._pending) >= self._max_pending:
                    self.dropped += 1
                    _log_failed(copy, "QUEUE_FULL")
                    continue
                self._pending.append(copy)
            self._lock.notify()

    def pump(self) -> int:
        """One bounded attempt at every queued copy unless backing off; return how many were sent."""
        with self._lock:
            if not self._pending or self._clock() < self._next_attempt:
                return 0
            batch = list(self._pending)
            self._pending.clear()
        retry, sent, code = self._send(batch)
        stripped = [c for c in retry if c.stripped]
        if stripped:  # refused as too large: sent again at once without the payload
            retry = [c for c in retry if not c.stripped]
            again, more, again_code = self._send([replace(c, stripped=False) for c in stripped])
            retry += again
            sent += more
            code = code or again_code
        with self._lock:
            self.copied += sent
            if retry:
                self._failures += 1
                delay = backoff_delay(self._failures, self._base, self._cap, self._rand)
                self._next_attempt = self._clock() + delay
                self._pending.extendleft(reversed(retry))
                log.warning(
                    "dead-letter copies failed; retrying later (the rows are dead in the outbox)",
                    extra={
                        "event": "relay.dlq_retry",
                        "count": len(retry),
                        "code": code,
                        "pause_seconds": round(delay, 3),
                    },
                )
            else:
                self._failures = 0
                self._next_attempt = 0.0
        return sent

    def _send(self, batch: list[Copy]) -> tuple[list[Copy], int, str]:
        """One produce of ``batch``: (copies to retry, copies sent, first failure code). A copy refused as
        too large comes back without its payload, flagged ``stripped``."""
        outcomes = self._producer.produce_batch([c.message for c in batch], self._timeout)
        retry: list[Copy] = []
        code = ""
        sent = 0
        for copy, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Delivered):
                sent += 1
            elif isinstance(outcome, DeliveryError) and outcome.code in SIZE_CODES and copy.message.payload:
                retry.append(replace(copy, message=without_payload(copy.message), stripped=True))
            else:
                retry.append(copy)
                code = code or getattr(outcome, "code", "NO_REPORT")
        return retry, sent, code

    def close(self, timeout: float) -> None:
        """Stop the thread, try once more (bounded), then log what could not be copied."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout + self._timeout)
        with self._lock:
            healthy = self._failures == 0
            self._next_attempt = 0.0
        if self.pending and healthy:  # one last bounded try, unless the topic is known to be failing
            self.pump()
        with self._lock:
            left = list(self._pending)
            self._pending.clear()
        for copy in left:
            self.dropped += 1
            _log_failed(copy, "NOT_COPIED_AT_SHUTDOWN")
        self._producer.close(min(timeout, self._timeout))

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                wait = max(0.05, self._next_attempt - self._clock()) if self._pending else 1.0
                self._lock.wait(wait)
                if self._closed:
                    return
            try:
                self.pump()
            except Exception:
                log.exception("dead-letter copier failed", extra={"event": "relay.dlq_copier_failed"})
                time.sleep(1.0)


def _log_failed(copy: Copy, code: str) -> None:
    log.error(
        "could not copy a dead event to the dead-letter topic; it is dead in the database",
        extra={
            "event": "relay.dlq_failed",
            "outbox_id": copy.outbox_id,
            "event_id": copy.event_id,
            "topic": copy.message.topic,
            "code": code,
        },
    )
