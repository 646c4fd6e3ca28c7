"""Alerts when delivery is stuck: logged at ERROR with stable keys and, if configured, POSTed to a webhook.

:class:`AlertingObserver` is a :class:`~payment_events.relay.observer.RelayObserver`; it raises

* ``outbox_stuck`` (critical) -- the oldest pending event is older than ``oldest_pending_age`` seconds;
* ``event_dead_lettered`` (critical) -- events were moved to the dead-letter state (per type and reason);
* ``broker_unreachable`` (critical) -- the broker was unreachable for longer than ``broker_unreachable``;

and a ``resolved`` notice when a stuck/unreachable condition clears. The same alert (name and labels) is
repeated at most once per ``cooldown``; the next one says how many were suppressed meanwhile.

:class:`WebhookNotifier` sends alerts from its own thread through a bounded queue, with retries and
exponential backoff. ``notify`` never blocks: when the queue is full the alert is dropped (and logged), so
an unreachable or slow webhook can never hold up publishing. The webhook URL is a secret (chat webhooks
embed tokens) and is never logged.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from payment_events.ops.logs import get_logger

_log = get_logger(__name__)

OUTBOX_STUCK = "outbox_stuck"
EVENT_DEAD_LETTERED = "event_dead_lettered"
BROKER_UNREACHABLE = "broker_unreachable"
TOPIC_MISSING = "topic_missing"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert notice. ``labels`` are low-cardinality (event type, topic, reason), never ids or data."""

    name: str
    severity: Literal["critical", "warning", "info"]
    status: Literal["firing", "resolved"]
    summary: str
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    suppressed: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, object]:
        """The webhook body."""
        return {
            "source": "payment-events",
            "host": socket.gethostname(),
            "alert": self.name,
            "severity": self.severity,
            "status": self.status,
            "summary": self.summary,
            "labels": dict(self.labels),
            "value": self.value,
            "suppressed": self.suppressed,
            "at": self.at.isoformat(),
        }


class AlertSink(Protocol):
    """Where alerts go besides the log (a webhook, a test list)."""

    def notify(self, alert: Alert) -> bool:
        """Hand over ``alert`` without blocking; False if it was dropped."""
        ...


class AlertingObserver:
    """Turns relay reports into alerts, de-duplicated within a cool-down. Cheap; never raises."""

    def __init__(
        self,
        *,
        oldest_pending_age: float = 300.0,
        broker_unreachable: float = 60.0,
        cooldown: float = 300.0,
        sink: AlertSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._oldest_pending_age = oldest_pending_age
        self._broker_unreachable = broker_unreachable
        self._cooldown = cooldown
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sent: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._suppressed: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._firing: set[str] = set()
        self._broker_down_since: float | None = None
        self._missing_topics: set[str] = set()

    # -- RelayObserver ----------------------------------------------------------------------------

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """An acknowledgement means the broker is back."""
        if commit_to_ack_seconds:
            self.broker_reachable(True)

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Retries alone do not alert (the backlog age and broker checks catch a stuck relay)."""
        self._check_broker()

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Every dead-lettered event type/reason alerts (de-duplicated within the cool-down)."""
        self._fire(
            EVENT_DEAD_LETTERED,
            f"{count} {event_type} event(s) dead-lettered from topic {topic}: {reason}",
            {"event_type": event_type, "topic": topic, "reason": reason},
            float(count),
        )

    def batch(self, size: int) -> None:
        """Re-check the broker timer."""
        self._check_broker()

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Alert when the oldest pending event waited longer than the threshold; resolve when it clears."""
        if oldest_pending_age_seconds > self._oldest_pending_age and pending > 0:
            self._fire(
                OUTBOX_STUCK,
                f"oldest pending event waited {oldest_pending_age_seconds:.0f}s "
                f"(threshold {self._oldest_pending_age:.0f}s); {pending} pending",
                {},
                oldest_pending_age_seconds,
            )
        else:
            self._resolve(OUTBOX_STUCK, "outbox backlog is moving again")
        self._check_broker()

    def dead_rows(self, count: int) -> None:
        """Ignored: each dead letter alerts when it happens (``dead_lettered``)."""

    def shards_owned(self, count: int) -> None:
        """Re-check the broker timer."""
        self._check_broker()

    def broker_reachable(self, reachable: bool) -> None:
        """Start or clear the unreachable timer; alert once it passes the threshold."""
        with self._lock:
            if reachable:
                self._broker_down_since = None
            elif self._broker_down_since is None:
                self._broker_down_since = self._clock()
        if reachable:
            self._resolve(BROKER_UNREACHABLE, "the broker is reachable again")
        else:
            self._check_broker()

    def database_reachable(self, reachable: bool) -> None:
        """Re-check the broker timer (database outages show as a stuck backlog)."""
        self._check_broker()

    def topic_missing(self, topic: str, missing: bool) -> None:
        """A topic the relay produces to does not exist (its rows wait), or exists again."""
        with self._lock:
            if missing:
                self._missing_topics.add(topic)
            else:
                self._missing_topics.discard(topic)
            left = len(self._missing_topics)
        if missing:
            self._fire(
                TOPIC_MISSING,
                f"topic {topic} does not exist: its events wait (and are dead-lettered after their retry "
                "budget); create it or fix the routing",
                {"topic": topic},
                1.0,
            )
        elif not left:
            self._resolve(TOPIC_MISSING, f"topic {topic} exists again")

    # -- internals --------------------------------------------------------------------------------

    def _check_broker(self) -> None:
        with self._lock:
            since = self._broker_down_since
        if since is None:
            return
        down_for = self._clock() - since
        if down_for >= self._broker_unreachable:
            self._fire(
                BROKER_UNREACHABLE,
                f"the Kafka broker has been unreachable for {down_for:.0f}s "
                f"(threshold {self._broker_unreachable:.0f}s)",
                {},
                down_for,
            )

    def _fire(self, name: str, summary: str, labels: Mapping[str, str], value: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        now = self._clock()
        with self._lock:
            self._firing.add(name)
            last = self._last_sent.get(key)
            if last is not None and now - last < self._cooldown:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last_sent[key] = now
            suppressed = self._suppressed.pop(key, 0)
        alert = Alert(name, "critical", "firing", summary, dict(labels), value, suppressed)
        self._emit(alert)

    def _resolve(self, name: str, summary: str) -> None:
        with self._lock:
            if name not in self._firing:
                return
            self._firing.discard(name)
            for key in [k for k in self._last_sent if k[0] == name]:
                del self._last_sent[key]
                self._suppressed.pop(key, None)
        self._emit(Alert(name, "info", "resolved", summary))

    def _emit(self, alert: Alert) -> None:
        try:
            if alert.status == "firing":
                _log.error(
                    "alert.firing",
                    alert=alert.name,
                    severity=alert.severity,
                    summary=alert.summary,
                    suppressed=alert.suppressed,
                    **alert.labels,
                )
            else:
                _log.info("alert.resolved", alert=alert.name, severity=alert.severity, summary=alert.summary)
            if self._sink is not None:
                self._sink.notify(alert)
        except Exception:  # noqa: BLE001 -- alerting must never stop publishing
            _log.warning("alert.emit_failed", alert=alert.name)


WEBHOOK_MAX_ANSWER_BYTES = 65_536
"""The most of a webhook's answer the notifier reads (the answer is not used; the rest is dropped)."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: an alert POST must never turn into a request somewhere else."""

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects())


class WebhookNotifier:
    """POSTs alerts as JSON to a URL from a background thread: bounded queue, retries with backoff."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        queue_size: int = 100,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the alert webhook URL must start with http:// or https://")
        self._url = url
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="payment-events-webhook", daemon=True)
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> WebhookNotifier:
        """Start the sender thread; returns self."""
        self._thread.start()
        return self

    def notify(self, alert: Alert) -> bool:
        """Queue ``alert`` without blocking; False (and a warning) if the queue is full or closed."""
        if self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            _log.warning("alert.webhook_dropped", alert=alert.name, dropped=self.dropped)
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (bounded by ``timeout``), then stop the thread."""
        if not self._thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, timeout))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        self._thread.join(1.0)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(alert.to_json()).encode()
        for attempt in range(1, self._max_attempts + 1):
            outcome = self._post(body)
            if outcome == "ok":
                self.sent += 1
                _log.info("alert.webhook_sent", alert=alert.name, attempt=attempt)
                return
            if outcome == "permanent":
                break
            if attempt < self._max_attempts:
                delay = min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1))
                if self._stop.wait(delay):
                    break
        self.failed += 1
        _log.error("alert.webhook_failed", alert=alert.name, attempts=self._max_attempts)

    def _post(self, body: bytes) -> Literal["ok", "retry", "permanent"]:
        """One POST: no redirect is followed (a 3xx is a permanent failure), at most
        :data:`WEBHOOK_MAX_ANSWER_BYTES` of the answer are read, and the whole exchange is bounded by
        ``timeout`` (per socket operation) plus a deadline on the read."""
        request = urllib.request.Request(  # noqa: S310 -- scheme checked in __init__
            self._url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with _NO_REDIRECTS.open(request, timeout=self._timeout) as response:
                deadline = time.monotonic() + self._timeout
                left = WEBHOOK_MAX_ANSWER_BYTES
                while left > 0 and time.monotonic() < deadline:
                    chunk = response.read(min(left, 16_384))
                    if not chunk:
                        break
                    left -= len(chunk)
                return "ok"
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
            if 300 <= status < 400:
                _log.warning("alert.webhook_redirect_refused", status=status)
                return "permanent"
            _log.warning("alert.webhook_error", status=status)
            return "retry" if status >= 500 or status in (408, 429) else "permanent"
        except (OSError, ValueError) as exc:
            _log.warning("alert.webhook_error", error=type(exc).__name__)
            return "retry"
