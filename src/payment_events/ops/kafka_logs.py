"""librdkafka's own log lines as structured records: a level, a short event name, the text as ``message``.

confluent-kafka hands every librdkafka log line to the configured ``logger`` as
``logger.log(level, "%s [%s] %s", facility, client_name, text)``, the level already mapped from syslog
(0-2 emerg/alert/crit -> CRITICAL, 3 err -> ERROR, 4 warning -> WARNING, 5-6 notice/info -> INFO,
7 debug -> DEBUG). The text looks like
``[thrd:sasl_ssl://10.0.0.7:9093/1]: sasl_ssl://10.0.0.7:9093/1: SASL authentication error: ... (after 3ms
in state AUTH_REQ)``. :class:`KafkaClientLogFilter` recognises such a record by that shape and rewrites it:

- ``event``: a short stable name from the facility and the text (``kafka.connect_failed``,
  ``kafka.auth_failed``, ``kafka.sasl_handshake_failed`` (mechanism not enabled on the listener),
  ``kafka.tls_failed``, ``kafka.resolve_failed``, ``kafka.all_brokers_down``,
  ``kafka.disconnected``, ``kafka.timed_out``, ``kafka.oauth_failed``; otherwise ``kafka.`` and the facility
  in lower case, e.g. ``kafka.fail``);
- ``message``: the free text without the thread and broker prefixes (redacted later, like every line);
- fields ``broker`` (``sasl_ssl://10.0.0.7:9093/1``), ``kafka_facility``, ``kafka_client``
  (``rdkafka#producer-1``) and ``kafka_state`` (the connection state, when given).

Nothing here imports confluent_kafka: the filter works on plain ``logging`` records.
"""

from __future__ import annotations

import logging
import re

KAFKA_LOGGER = "payment_events.kafka"
"""The logger that receives librdkafka's log lines (``Settings.kafka_config()`` passes it to clients)."""

_LIBRDKAFKA_FORMAT = "%s [%s] %s"
_THREAD_RE = re.compile(r"^\[thrd:[^\]]*\]:\s*")
# "ssl://127.0.0.1:9093/bootstrap: " or "127.0.0.1:19092/1: " or "GroupCoordinator/1: ".
_BROKER_RE = re.compile(r"^(?P<broker>(?:[a-z_]+://)?[^\s/:]+(?::\d+)?/[A-Za-z0-9_-]+):\s+")
_STATE_RE = re.compile(r"\s*\(after \d+ms in state (?P<state>[A-Z_]+)\)\s*$")

# (event name, pattern on the text): the first match wins, so specific causes come before generic ones.
_EVENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("kafka.sasl_handshake_failed", r"SASL .*mechanism handshake failed"),
        ("kafka.auth_failed", r"authentication (failed|error)|invalid credentials|SASL .*failed"),
        ("kafka.tls_failed", r"SSL handshake failed|certificate verify failed|SSL .*error|ssl\.ca"),
        ("kafka.resolve_failed", r"failed to resolve|name or service not known"),
        ("kafka.connect_failed", r"connection refused|connect to .* failed|no route to host"),
        ("kafka.all_brokers_down", r"brokers are down"),
        ("kafka.oauth_failed", r"OIDC|oauthbearer|token"),
        ("kafka.timed_out", r"timed out"),
        ("kafka.disconnected", r"disconnected|connection (reset|closed)"),
    )
)
_FACILITY_RE = re.compile(r"[^a-z0-9_]+")


def is_librdkafka_record(record: logging.LogRecord) -> bool:
    """Whether ``record`` is a librdkafka log line as confluent-kafka emits it (not yet rewritten)."""
    args = record.args
    return (
        record.msg == _LIBRDKAFKA_FORMAT
        and isinstance(args, tuple)
        and len(args) == 3
        and all(isinstance(a, str) for a in args)
    )


def parse_librdkafka_line(facility: str, text: str) -> tuple[str, str, dict[str, str]]:
    """(event name, human message, fields) of one librdkafka line."""
    fields: dict[str, str] = {"kafka_facility": facility}
    message = _THREAD_RE.sub("", text, count=1)
    if match := _BROKER_RE.match(message):
        fields["broker"] = match.group("broker")
        message = message[match.end() :]
    if match := _STATE_RE.search(message):
        fields["kafka_state"] = match.group("state")
        message = message[: match.start()]
    return librdkafka_event(facility, message), message.strip(), fields


def librdkafka_event(facility: str, text: str) -> str:
    """The short event name of a librdkafka line: its cause when known, else ``kafka.<facility>``."""
    for name, pattern in _EVENTS:
        if pattern.search(text):
            return name
    if facility.upper() == "OIDC":
        return "kafka.oauth_failed"
    short = _FACILITY_RE.sub("_", facility.lower()).strip("_")
    return f"kafka.{short or 'log'}"


class KafkaClientLogFilter(logging.Filter):
    """Rewrites librdkafka's log records in place into our shape (see the module docstring); others pass
    untouched. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` if it is a librdkafka line."""
        if not is_librdkafka_record(record):
            return True
        facility, client, text = (str(a) for a in record.args)  # type: ignore[union-attr]  # checked above
        event, message, fields = parse_librdkafka_line(facility, text)
        record.msg = message
        record.args = None
        record.event = event
        record.kafka_client = client
        for key, value in fields.items():
            setattr(record, key, value)
        return True
