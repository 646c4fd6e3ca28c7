"""Alerts: thresholds, de-duplication, resolution, and a webhook that never blocks the caller."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from payment_events.ops.alerts import (
    BROKER_UNREACHABLE,
    EVENT_DEAD_LETTERED,
    OUTBOX_STUCK,
    Alert,
    AlertingObserver,
    WebhookNotifier,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Sink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def notify(self, alert: Alert) -> bool:
        self.alerts.append(alert)
        return True


def _observer(clock: _Clock, sink: _Sink) -> AlertingObserver:
    return AlertingObserver(
        oldest_pending_age=60, broker_unreachable=30, cooldown=100, sink=sink, clock=clock
    )


def test_dead_letter_alerts_once_per_cooldown() -> None:
    """A dead-lettered event alerts; repeats within the cool-down are suppressed and counted."""
    clock, sink = _Clock(), _Sink()
    obs = _observer(clock, sink)
    obs.dead_lettered("PaymentSucceeded", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
    obs.dead_lettered("PaymentSucceeded", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
    obs.dead_lettered("RefundFailed", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
    assert [(a.name, a.labels["event_type"]) for a in sink.alerts] == [
        (EVENT_DEAD_LETTERED, "PaymentSucceeded"),
        (EVENT_DEAD_LETTERED, "RefundFailed"),
    ]
    clock.now = 101
    obs.dead_lettered("PaymentSucceeded", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
    assert sink.alerts[-1].suppressed == 1
    assert sink.alerts[-1].severity == "critical"


def test_stuck_outbox_alerts_and_resolves() -> None:
    """An oldest pending age above the threshold fires; a healthy backlog resolves it once."""
    clock, sink = _Clock(), _Sink()
    obs = _observer(clock, sink)
    obs.backlog(10, 30.0)
    assert sink.alerts == []
    obs.backlog(10, 61.0)
    obs.backlog(10, 70.0)
    assert [(a.name, a.status) for a in sink.alerts] == [(OUTBOX_STUCK, "firing")]
    obs.backlog(0, 0.0)
    obs.backlog(0, 0.0)
    assert [(a.name, a.status) for a in sink.alerts] == [(OUTBOX_STUCK, "firing"), (OUTBOX_STUCK, "resolved")]


def test_broker_unreachable_past_threshold() -> None:
    """Unreachable for less than the threshold is quiet; past it the alert fires; reachable resolves."""
    clock, sink = _Clock(), _Sink()
    obs = _observer(clock, sink)
    obs.broker_reachable(False)
    clock.now = 20
    obs.broker_reachable(False)
    assert sink.alerts == []
    clock.now = 31
    obs.backlog(5, 1.0)
    assert [(a.name, a.status) for a in sink.alerts] == [(BROKER_UNREACHABLE, "firing")]
    obs.broker_reachable(True)
    assert sink.alerts[-1].status == "resolved"


def test_alerts_are_logged_with_stable_keys(caplog: pytest.LogCaptureFixture) -> None:
    """A firing alert is an ERROR record with alert= and severity= fields."""
    obs = AlertingObserver(cooldown=100)
    with caplog.at_level("ERROR", logger="payment_events.ops.alerts"):
        obs.dead_lettered("PaymentFailed", "payment.events", "TOPIC_AUTHORIZATION_FAILED", 2)
    (record,) = [r for r in caplog.records if r.getMessage() == "alert.firing"]
    assert record.levelname == "ERROR"
    assert record.__dict__["alert"] == EVENT_DEAD_LETTERED
    assert record.__dict__["severity"] == "critical"


class _Receiver:
    """A local HTTP server that records POSTed JSON bodies; fails the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, object]] = []
        self.requests = 0
        self.fail_first = fail_first
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.requests += 1
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                if receiver.requests <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(data))
                self.send_response(204)
                self.end_headers()
                receiver.received.set()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    """A receiver that answers 503 once, then accepts."""
    r = _Receiver(fail_first=1)
    yield r
    r.close()


def test_webhook_retries_and_delivers_json(receiver: _Receiver) -> None:
    """The notifier retries after a 503 and delivers a small JSON alert."""
    notifier = WebhookNotifier(receiver.url, backoff_base=0.05).start()
    try:
        obs = AlertingObserver(sink=notifier)
        obs.dead_lettered("PaymentSucceeded", "payment.events", "MSG_SIZE_TOO_LARGE", 1)
        assert receiver.received.wait(10)
    finally:
        notifier.close()
    (body,) = receiver.bodies
    assert body["alert"] == EVENT_DEAD_LETTERED
    assert body["status"] == "firing"
    assert body["labels"] == {
        "event_type": "PaymentSucceeded", "topic": "payment.events", "reason": "MSG_SIZE_TOO_LARGE"
    }
    assert receiver.requests == 2
    assert notifier.sent == 1


def test_unreachable_webhook_never_blocks_and_bounded_queue_drops() -> None:
    """notify() returns at once even when the webhook hangs; beyond the queue size alerts are dropped."""
    hang = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hang.wait(60)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    # The webhook holds every request for up to 60 s; a notify() that waited for it would never finish
    # before the webhook is released.
    notifier = WebhookNotifier(url, timeout=60, queue_size=2, max_attempts=1).start()
    results: list[bool] = []
    done = threading.Event()

    def caller() -> None:
        results.extend(notifier.notify(Alert(f"a{i}", "critical", "firing", "s")) for i in range(10))
        done.set()

    try:
        threading.Thread(target=caller, daemon=True).start()
        assert done.wait(30), "notify() blocked on a hanging webhook"
        assert not hang.is_set()
        assert results.count(False) >= 7
        assert notifier.dropped == results.count(False)
    finally:
        hang.set()
        notifier.close(timeout=10)
        server.shutdown()
        server.server_close()


def test_webhook_rejects_non_http_url() -> None:
    """Only http(s) webhook URLs are accepted."""
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("file:///etc/passwd")
