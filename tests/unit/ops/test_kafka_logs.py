"""librdkafka's log lines mapped to a level, a short event name and a message; repeats summarised."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from payment_events.ops.kafka_logs import librdkafka_event, parse_librdkafka_line
from payment_events.ops.logs import configure_logging
from tests.brokers import free_port

# Real librdkafka 2.x lines (facility, text), as confluent-kafka passes them to the logger.
LINES = [
    ("FAIL", "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
     "Connection refused (after 0ms in state CONNECT)", "kafka.connect_failed"),
    ("FAIL", "[thrd:nonexistent.invalid:9092/bootstrap]: nonexistent.invalid:9092/bootstrap: Failed to "
     "resolve 'nonexistent.invalid:9092': Name or service not known (after 0ms in state CONNECT)",
     "kafka.resolve_failed"),
    ("FAIL", "[thrd:ssl://127.0.0.1:19092/bootstrap]: ssl://127.0.0.1:19092/bootstrap: SSL handshake "
     "failed: Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker listener? "
     "(after 1ms in state SSL_HANDSHAKE)", "kafka.tls_failed"),
    ("FAIL", "[thrd:sasl_ssl://127.0.0.1:40001/bootstrap]: sasl_ssl://127.0.0.1:40001/bootstrap: SASL "
     "authentication error: Authentication failed during authentication due to invalid credentials with "
     "SASL mechanism SCRAM-SHA-512 (after 5ms in state AUTH_REQ)", "kafka.auth_failed"),
    ("FAIL", "[thrd:sasl_plaintext://127.0.0.1:19092/bootstrap]: sasl_plaintext://127.0.0.1:19092/"
     "bootstrap: SASL SCRAM-SHA-512 mechanism handshake failed: Broker: Request not valid in current SASL "
     "state: broker's supported mechanisms:  (after 0ms in state AUTH_HANDSHAKE)",
     "kafka.sasl_handshake_failed"),
    ("ERROR", "[thrd:app]: rdkafka#producer-1: 1/1 brokers are down", "kafka.all_brokers_down"),
    ("FAIL", "[thrd:127.0.0.1:19092/1]: 127.0.0.1:19092/1: Disconnected (after 12000ms in state UP)",
     "kafka.disconnected"),
    ("OIDC", "[thrd:background]: Failed to retrieve OIDC token from \"https://idp.example/token\": HTTP "
     "401", "kafka.oauth_failed"),
    ("CONFWARN", "[thrd:app]: Configuration property linger.ms is a producer property and will be "
     "ignored by this consumer instance", "kafka.confwarn"),
]


@pytest.mark.parametrize(("facility", "text", "event"), LINES)
def test_librdkafka_lines_get_a_short_event_name(facility: str, text: str, event: str) -> None:
    """Each kind of librdkafka line maps to its short, stable event name."""
    assert librdkafka_event(facility, text) == event


def test_librdkafka_line_is_split_into_broker_state_and_text() -> None:
    """The thread and broker prefixes and the state suffix become fields; the rest is the message."""
    event, message, fields = parse_librdkafka_line(LINES[3][0], LINES[3][1])
    assert event == "kafka.auth_failed"
    assert message.startswith("SASL authentication error: Authentication failed")
    assert fields == {
        "kafka_facility": "FAIL",
        "broker": "sasl_ssl://127.0.0.1:40001/bootstrap",
        "kafka_state": "AUTH_REQ",
    }


def test_a_real_client_failing_to_connect_writes_one_summarised_line() -> None:
    """A real librdkafka producer retrying a refused port for 3 s logs through the handler as
    kafka.connect_failed lines at error level, held to one per interval (it emits many more)."""
    from confluent_kafka import Producer

    emitted: list[str] = []

    class Counting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            emitted.append(record.getMessage())

    buffer = io.StringIO()
    handler = configure_logging("json", "INFO", buffer, repeat_interval=60.0)
    counting = Counting()
    kafka_log = logging.getLogger("payment_events.kafka")
    kafka_log.addHandler(counting)
    try:
        producer = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{free_port()}",
                "logger": kafka_log,
                "reconnect.backoff.ms": 10,
                "reconnect.backoff.max.ms": 50,
            }
        )
        producer.produce("t", b"x")
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            producer.poll(0.1)
        producer.purge()
        producer.flush(1)
    finally:
        kafka_log.removeHandler(counting)
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(x) for x in buffer.getvalue().splitlines()]
    connect = [x for x in lines if x["event"] == "kafka.connect_failed"]
    # librdkafka repeated itself (older clients fold identical errors into "N suppressed" themselves,
    # so two lines may be all it sends in 3 s); only the first reaches the log within the interval.
    assert len(emitted) >= 2, emitted
    assert len(connect) == 1, lines
    assert connect[0]["level"] == "error"
    assert "Connection refused" in connect[0]["message"]
