"""Structured logs: stable JSON lines, readable console lines, redaction of secrets, cards and payloads."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from payment_events.events.card_numbers import luhn_valid
from payment_events.ops.logs import configure_logging, get_logger, redact_text


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
