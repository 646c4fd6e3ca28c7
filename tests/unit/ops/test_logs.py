"""Structured logs: stable JSON lines, readable console lines, redaction of secrets, cards and payloads."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from payment_events.events.card_numbers import luhn_valid
from payment_events.ops.logs import RepeatSummaryFilter, configure_logging, get_logger, redact_text


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A JSON-configured root handler writing to a buffer; the handler is removed afterwards."""
    buffer = io.StringIO()
    handler = configure_logging("json", "DEBUG", buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_json_line_has_stable_keys(stream: io.StringIO) -> None:
    """An event logs as one JSON object with ts, level, logger, event and the fields."""
    get_logger("payment_events.relay").info("relay.batch_published", count=3, topic="payment.events")
    (line,) = _lines(stream)
    assert line["event"] == "relay.batch_published"
    assert line["level"] == "info"
    assert line["logger"] == "payment_events.relay"
    assert line["count"] == 3
    assert line["topic"] == "payment.events"
    assert str(line["ts"]).endswith("+00:00")


def test_plain_stdlib_logging_with_extra_is_structured(stream: io.StringIO) -> None:
    """Other modules' stdlib calls with extra={} come out with the same keys."""
    logging.getLogger("payment_events.outbox").warning("outbox.retry", extra={"outbox_id": 7, "attempt": 2})
    (line,) = _lines(stream)
    assert line["event"] == "outbox.retry"
    assert line["outbox_id"] == 7
    assert line["attempt"] == 2


def test_secrets_and_card_numbers_are_redacted(stream: io.StringIO) -> None:
    """Secret-named fields, card numbers, URL passwords and key=value secrets never reach the output."""
    log = get_logger("t")
    log.error(
        "broker.connect_failed",
        password="hunter2",
        sasl_password="kafka-secret",
        detail="card 4111 1111 1111 1111 at postgresql://app:db-secret@db/pay token=abc123",
    )
    logging.getLogger("t").info("url %s", "https://u:p4ss@example.com/x")
    out = stream.getvalue()
    for leaked in ("hunter2", "kafka-secret", "4111 1111 1111 1111", "db-secret", "abc123", "p4ss"):
        assert leaked not in out
    first = _lines(stream)[0]
    assert first["password"] == "***"
    assert "[REDACTED-PAN]" in str(first["detail"])


def test_payloads_only_at_debug(stream: io.StringIO) -> None:
    """A payload field is omitted at INFO and above but kept at DEBUG."""
    log = get_logger("t")
    log.info("relay.produced", payload='{"amount": 100}')
    log.debug("relay.produced", payload='{"amount": 100}')
    info, debug = _lines(stream)
    assert info["payload"] == "<omitted 15 bytes>"
    assert debug["payload"] == '{"amount": 100}'


def test_exception_text_is_included_and_redacted(stream: io.StringIO) -> None:
    """log.exception adds the traceback, with secrets in it masked."""
    try:
        raise RuntimeError("login failed password=s3cr3t")
    except RuntimeError:
        get_logger("t").exception("relay.crashed")
    (line,) = _lines(stream)
    assert "RuntimeError" in str(line["exc"])
    assert "s3cr3t" not in str(line["exc"])


def test_reserved_field_names_do_not_crash(stream: io.StringIO) -> None:
    """A field named like a LogRecord attribute (message, name) is renamed, not an error."""
    get_logger("t").info("x.y", message="hello", name="n")
    (line,) = _lines(stream)
    assert line["message_"] == "hello"
    assert line["name_"] == "n"


def test_console_format_is_one_readable_line() -> None:
    """The console format shows level, event and key=value pairs."""
    buffer = io.StringIO()
    handler = configure_logging("console", "INFO", buffer)
    try:
        get_logger("t").info("relay.started", topic="payment.events", note="two words")
    finally:
        logging.getLogger().removeHandler(handler)
    line = buffer.getvalue().strip()
    assert "INFO" in line
    assert "relay.started" in line
    assert "topic=payment.events" in line
    assert 'note="two words"' in line


def test_luhn_and_text_redaction_leave_ordinary_numbers() -> None:
    """Only Luhn-valid 13-19 digit runs are treated as card numbers."""
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert redact_text("offset 4111111111111112 ok") == "offset 4111111111111112 ok"
    assert redact_text("pan 4111-1111-1111-1111") == "pan [REDACTED-PAN]"
    assert redact_text("Authorization: Bearer abc.def") == "Authorization: Bearer ***"


@pytest.mark.parametrize(
    "text",
    [
        "connecting to postgresql+psycopg://relay:pa/ss#1?x@db.internal:5432/outbox now",
        "dsn=postgresql://relay@db.internal/outbox?sslmode=require&password=hunter2 ok",
        "url 'postgresql://relay:hunter2@db.internal/outbox'",
    ],
)
def test_urls_in_log_text_lose_every_password(text: str) -> None:
    """The log filter masks URL passwords however they are written (raw /, #, ?, @; ?password=)."""
    redacted = redact_text(text)
    assert "hunter2" not in redacted
    assert "pa/ss" not in redacted
    assert "***" in redacted


def test_event_field_style_keeps_the_event_name(stream: io.StringIO) -> None:
    """A prose message with extra={"event": ...} logs that event name and keeps the prose as message."""
    logging.getLogger("payment_events.relay.loop").info(
        "relay started", extra={"event": "relay.started", "batch_size": 5}
    )
    (line,) = _lines(stream)
    assert line["event"] == "relay.started"
    assert line["message"] == "relay started"
    assert line["batch_size"] == 5


BASE_KEYS = {"ts", "level", "logger", "event", "message"}


def test_every_line_has_event_and_message_whatever_the_style(stream: io.StringIO) -> None:
    """Event-name calls, extra={"event"} prose, plain prose, librdkafka lines and exceptions all carry
    the same base keys, with a stable event name and human text."""
    get_logger("payment_events.relay").info("relay.batch_published", count=3)
    logging.getLogger("payment_events.relay.loop").warning("relay paused", extra={"event": "relay.outage"})
    logging.getLogger("alembic.runtime.migration").warning("Running upgrade 0001 -> 0002, retry index")
    logging.getLogger("payment_events.kafka").log(
        logging.ERROR,
        "%s [%s] %s",
        "FAIL",
        "rdkafka#producer-1",
        "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
        "Connection refused (after 0ms in state CONNECT)",
    )
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("t").exception("relay.crashed")
    lines = _lines(stream)
    assert len(lines) == 5
    for line in lines:
        assert set(line) >= BASE_KEYS, line
        assert " " not in str(line["event"]), line
    named, prose, library, kafka, crashed = lines
    assert (named["event"], named["message"]) == ("relay.batch_published", "relay batch published")
    assert (prose["event"], prose["message"]) == ("relay.outage", "relay paused")
    assert library["event"] == "alembic.runtime.migration"
    assert library["message"] == "Running upgrade 0001 -> 0002, retry index"
    assert kafka["event"] == "kafka.connect_failed"
    assert kafka["level"] == "error"
    assert kafka["message"] == "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    assert kafka["broker"] == "127.0.0.1:1/bootstrap"
    assert kafka["kafka_state"] == "CONNECT"
    assert kafka["kafka_client"] == "rdkafka#producer-1"
    assert crashed["event"] == "relay.crashed"
    assert "ValueError" in str(crashed["exc"])


def test_librdkafka_free_text_is_redacted(stream: io.StringIO) -> None:
    """A secret or card number inside a librdkafka line never reaches the output."""
    logging.getLogger("payment_events.kafka").log(
        logging.WARNING,
        "%s [%s] %s",
        "CONFWARN",
        "rdkafka#producer-2",
        "[thrd:app]: sasl.password=hunter2 and card 4111 1111 1111 1111 in a config warning",
    )
    (line,) = _lines(stream)
    assert "hunter2" not in json.dumps(line)
    assert "4111 1111" not in json.dumps(line)
    assert line["event"] == "kafka.confwarn"


def test_repeated_warnings_are_summarised_per_interval() -> None:
    """The first of a run of repeated librdkafka warnings passes, repeats are held back until the
    interval ends, then one line carries how many were held."""
    now = [0.0]
    summary = RepeatSummaryFilter(30.0, clock=lambda: now[0])

    def line(broker: str = "127.0.0.1:1/bootstrap", level: int = logging.ERROR) -> logging.LogRecord:
        record = logging.LogRecord("payment_events.kafka", level, "", 0, "text", None, None)
        record.event = "kafka.connect_failed"
        record.kafka_client = "rdkafka#producer-1"
        record.broker = broker
        return record

    assert summary.filter(line())
    assert not any(summary.filter(line()) for _ in range(577))
    assert summary.filter(line("127.0.0.1:2/bootstrap"))  # another broker is another run
    assert summary.filter(line(level=logging.DEBUG))  # below WARNING: never held
    now[0] = 30.0
    shown = line()
    assert summary.filter(shown)
    assert shown.repeated == 577  # type: ignore[attr-defined]
    now[0] = 31.0
    assert not summary.filter(line())
    ours = logging.LogRecord("payment_events.relay.loop", logging.WARNING, "", 0, "x", None, None)
    ours.event = "relay.outage"
    assert summary.filter(ours)  # not a repeating event: every line passes
    assert summary.filter(ours)


def test_configured_handler_writes_one_line_per_run_of_librdkafka_repeats() -> None:
    """Through configure_logging, 200 identical connection failures in one interval write one line."""
    buffer = io.StringIO()
    handler = configure_logging("json", "INFO", buffer, repeat_interval=60.0)
    try:
        kafka = logging.getLogger("payment_events.kafka")
        for n in range(200):
            kafka.log(
                logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1",
                f"[thrd:x]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused "
                f"(after {n}ms in state CONNECT)",
            )
    finally:
        logging.getLogger().removeHandler(handler)
    lines = _lines(buffer)
    assert [line["event"] for line in lines] == ["kafka.connect_failed"]
