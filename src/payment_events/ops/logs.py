"""Structured logging: stable event names and keys, JSON lines in production, readable on a terminal.

Code logs an *event name* and keyword fields::

    log = get_logger(__name__)
    log.info("relay.batch_published", count=120, topic="payment.events")

which :func:`configure_logging` renders as one JSON object per line (``{"ts": ..., "level": "info",
"logger": ..., "event": "relay.batch_published", "count": 120, ...}``) or as
``12:00:00.123 INFO  relay.batch_published count=120 topic=payment.events`` on a terminal. Plain
stdlib ``logging`` calls with ``extra={...}`` come out the same way.

Defence in depth (invariant 6): :class:`RedactingFilter` runs on every record the handler emits. It masks
fields whose names look secret (``password``, ``token``, ...), anything in a message or field that looks
like a card number (the detector of :mod:`payment_events.events.card_numbers`) or a password in a
URL, and it drops payload-like fields (``payload``, ``value``, ``body``) from any record above DEBUG, so
payloads never reach info logs.

One set of keys on every line: ``ts``, ``level``, ``logger``, ``event`` (a stable short name) and
``message`` (human text), then the fields. A line logged by its event name alone gets the name in words as
its message (``relay.batch_published`` -> ``relay batch published``); free text logged without an event
name (a library's line) gets the logger's name as its event, never the text. librdkafka's lines are
rewritten by :class:`~payment_events.ops.kafka_logs.KafkaClientLogFilter` (level, ``kafka.*`` event,
text as message). :class:`RepeatSummaryFilter` lets the first of a run of repeated warnings through, then
one line per interval with how many were held back (librdkafka's connection failures, brokers down).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Literal

from payment_events.events.card_numbers import redact_card_numbers
from payment_events.ops.kafka_logs import KafkaClientLogFilter

LogFormat = Literal["auto", "json", "console"]

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET_KEY_RE = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|authori[sz]ation|credential|cookie|"
    r"card[_-]?number|^pan$|cvv|cvc|private[_-]?key)",
    re.IGNORECASE,
)
_PAYLOAD_KEYS = frozenset({"payload", "value", "body", "data", "message_value"})
# A URL in free text: scheme://, then everything up to whitespace or a quote (a raw password may hold
# "/", "?", "#" or "@", so the URL is not cut at any of them).
_URL_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_KV_SECRET_RE = re.compile(
    r"(?P<key>\b(?:password|passwd|secret|token|api[_-]?key|sasl\.password|ssl\.key\.password)\b\s*[=:]\s*)"
    r"(?P<q>['\"]?)[^\s'\",;&]+",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(?P<pre>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
MASK = "***"
_HANDLER_MARK = "_payment_events_handler"


def redact_text(text: str) -> str:
    """``text`` with card numbers, URL passwords, ``key=secret`` pairs and bearer tokens masked.

    Card numbers are found by :mod:`payment_events.events.card_numbers`, the same detector that refuses
    them in events (any separators, Unicode digits, URL encodings). URLs are masked by
    :func:`payment_events.config.mask_url` (SQLAlchemy's own URL parsing).
    """
    text = redact_card_numbers(text, "[REDACTED-PAN]")
    text = _URL_RE.sub(_mask_url_match, text)
    text = _KV_SECRET_RE.sub(lambda m: f"{m.group('key')}{m.group('q')}{MASK}", text)
    return _BEARER_RE.sub(lambda m: f"{m.group('pre')}{MASK}", text)


def _mask_url_match(match: re.Match[str]) -> str:
    from payment_events.config import mask_url, url_has_secret

    url = match.group(0)
    return mask_url(url) if url_has_secret(url) else url


def redact_value(key: str, value: object, level: int) -> object:  # noqa: PLR0911 -- one return per kind
    """A field value made safe to log under ``key`` at ``level``."""
    if _SECRET_KEY_RE.search(key):
        return MASK
    if key.lower() in _PAYLOAD_KEYS and level > logging.DEBUG:
        size = len(value) if isinstance(value, str | bytes | bytearray) else None
        return "<omitted>" if size is None else f"<omitted {size} bytes>"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v, level) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v, level) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record: every attribute that ``logging`` itself did not set."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """Masks secrets, card numbers and payloads in every record (message, fields, exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for key, value in record_fields(record).items():
            setattr(record, key, redact_value(key, value, record.levelno))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, message, then the fields (and ``exc`` if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        event, message, fields = _parts(record)
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
            "message": message,
        }
        for key, value in fields.items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS.mmm LEVEL event key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line (plus the traceback, if any)."""
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        event, message, extra = _parts(record)
        fields = " ".join(f"{k}={_console_value(v)}" for k, v in extra.items())
        line = f"{stamp} {record.levelname:<7} {event}"
        if message != _words(event):
            line = f"{line}: {message}"
        if fields:
            line = f"{line}  {fields}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


def _parts(record: logging.LogRecord) -> tuple[str, str, dict[str, Any]]:
    """(event name, human message, other fields). Two styles are accepted: the message is the event name
    (``log.info("relay.started", extra=...)``: the message is the name in words), or an ``event`` field
    names it and the message is prose (``log.info("relay started", extra={"event": "relay.started"})``).
    Prose without an event name (a library's line) gets the logger's name as its event."""
    fields = record_fields(record)
    message = record.getMessage()
    event = fields.pop("event", None)
    if isinstance(event, str) and event:
        return event, (_words(event) if message == event else message), fields
    if _EVENT_NAME_RE.match(message):
        return message, _words(message), fields
    return record.name or "root", message, fields


_EVENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


def _words(event: str) -> str:
    """``relay.batch_published`` -> ``relay batch published``."""
    return event.replace(".", " ").replace("_", " ")


def _console_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text


REPEATING_EVENTS = frozenset(
    {"relay.brokers_down", "relay.producer_error", "relay.auth_failed", "relay.tls_failed"}
)
"""Our own warnings that repeat while a condition lasts (on top of every librdkafka line)."""


@dataclass(slots=True)
class _Run:
    """A run of one repeated line: when its current window started and how many were held back."""

    started: float
    held: int = 0


class RepeatSummaryFilter(logging.Filter):
    """Lets the first of a run of repeated warnings through, then at most one line per ``interval``
    seconds carrying ``repeated`` (how many like it were held back since the last line shown).

    A line repeats when it has the same logger, event and ``broker`` as an earlier one. It applies to
    WARNING and above from librdkafka (records with a ``kafka_client`` field, set by
    :class:`~payment_events.ops.kafka_logs.KafkaClientLogFilter`) and to the ``events`` given; other
    lines always pass. What is held back after the last line shown is counted in the next one (if the
    condition never recurs, the count is not written: the metrics tell how long it lasted).
    """

    def __init__(
        self,
        interval: float = 30.0,
        *,
        events: Collection[str] = REPEATING_EVENTS,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1000,
    ) -> None:
        super().__init__()
        self.interval = interval
        self._events = frozenset(events)
        self._clock = clock
        self._max_keys = max_keys
        self._runs: dict[tuple[str, str, str], _Run] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat inside the current window; otherwise True (with ``repeated`` if any)."""
        if record.levelno < logging.WARNING:
            return True
        event = getattr(record, "event", None)
        if not isinstance(event, str):
            event = record.msg if isinstance(record.msg, str) else ""
        if not hasattr(record, "kafka_client") and event not in self._events:
            return True
        key = (record.name, event, str(getattr(record, "broker", "")))
        now = self._clock()
        with self._lock:
            run = self._runs.get(key)
            if run is not None and now - run.started < self.interval:
                run.held += 1
                return False
            held = run.held if run is not None else 0
            if run is None and len(self._runs) >= self._max_keys:
                oldest = min(self._runs, key=lambda k: self._runs[k].started)
                del self._runs[oldest]
            self._runs[key] = _Run(now)
        if held:
            record.repeated = held
            record.repeat_window_seconds = round(self.interval, 3)
        return True


def configure_logging(
    log_format: LogFormat = "auto",
    level: str | int = "INFO",
    stream: IO[str] | None = None,
    repeat_interval: float = 30.0,
) -> logging.Handler:
    """Install one redacting handler on the root logger (replacing a previous one of ours) and return it.

    ``auto`` picks the console format when ``stream`` is a terminal and JSON lines otherwise. Repeated
    warnings (see :class:`RepeatSummaryFilter`) are summarised once per ``repeat_interval`` seconds.
    """
    target = stream if stream is not None else sys.stderr
    chosen = log_format
    if chosen == "auto":
        chosen = "console" if getattr(target, "isatty", lambda: False)() else "json"
    handler = logging.StreamHandler(target)
    handler.setFormatter(JsonFormatter() if chosen == "json" else ConsoleFormatter())
    # Order matters: librdkafka lines get their event name first, repeats are then held back (so they
    # cost nothing more), and what remains is redacted.
    handler.addFilter(KafkaClientLogFilter())
    handler.addFilter(RepeatSummaryFilter(repeat_interval))
    handler.addFilter(RedactingFilter())
    from payment_events.tracing import TraceContextFilter

    handler.addFilter(TraceContextFilter())  # trace_id/span_id inside an OpenTelemetry span
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # librdkafka and HTTP libraries are chatty at INFO; keep them at WARNING unless debugging.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.DEBUG
    for name in ("urllib3", "alembic", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(quiet)
    return handler


class EventLogger:
    """A thin wrapper over a stdlib logger: ``log.info("event.name", key=value, ...)``."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    @property
    def logger(self) -> logging.Logger:
        """The underlying stdlib logger."""
        return self._logger

    def debug(self, event: str, **fields: object) -> None:
        """Log ``event`` at DEBUG (the only level where payload fields are kept)."""
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        """Log ``event`` at INFO."""
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        """Log ``event`` at WARNING."""
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        """Log ``event`` at ERROR."""
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: object) -> None:
        """Log ``event`` at ERROR with the current exception's traceback."""
        self._log(logging.ERROR, event, fields, exc_info=True)

    def _log(self, level: int, event: str, fields: Mapping[str, object], exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        extra = {(f"{k}_" if k in _STANDARD_ATTRS else k): v for k, v in fields.items()}
        self._logger.log(level, event, extra=extra, exc_info=exc_info, stacklevel=3)


def get_logger(name: str) -> EventLogger:
    """An :class:`EventLogger` for module ``name``."""
    return EventLogger(logging.getLogger(name))
