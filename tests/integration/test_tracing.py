"""OpenTelemetry end to end with the SDK's in-memory exporter: one trace from the request that publishes
to the relay's produce span, exactly one traceparent header on the message (also with the confluent-kafka
instrumentation on), and trace ids in log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from payment_events.events.codec import decode
from payment_events.kafka.producer import KafkaBatchProducer, producer_config
from payment_events.kafka.topics import TopicRouter
from payment_events.ops.logs import configure_logging
from payment_events.outbox import migrate
from payment_events.outbox.leases import PostgresShardLeases
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.store import SqlOutboxStore
from payment_events.relay import Relay
from tests.conftest import KcatMessage
from tests.integration.relay_support import RelayThread, payment_event, relay_config, state_counts, wait_for

Consume = Callable[..., list[KcatMessage]]


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider of the SDK that keeps finished spans in memory (not the global provider)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def relay_with(url: str, bootstrap: str, provider: TracerProvider, instrumented: bool) -> Relay:
    """A relay like build_relay's whose producer traces with ``provider`` (and, if ``instrumented``,
    whose librdkafka client is wrapped by the confluent-kafka instrumentation too)."""
    config = relay_config()

    def factory(options: dict[str, Any]) -> Any:
        client = Producer(options)
        if instrumented:
            return ConfluentKafkaInstrumentor.instrument_producer(client, tracer_provider=provider)
        return client

    producer = KafkaBatchProducer(producer_config(bootstrap), factory=factory, tracer_provider=provider)
    store = SqlOutboxStore.from_url(url, shard_count=config.shard_count)
    leases = PostgresShardLeases(url, shard_count=config.shard_count)
    return Relay(store, producer, config, leases=leases, closers=[leases.close, store.close])


def by_name(finished: tuple[ReadableSpan, ...], suffix: str) -> list[ReadableSpan]:
    """The finished spans whose name ends with ``suffix``."""
    return [s for s in finished if s.name.endswith(suffix)]


@pytest.mark.parametrize("instrumented", [False, True], ids=["plain", "with-confluent-instrumentation"])
def test_one_trace_from_request_to_relay_and_one_traceparent_header(
    *,
    pg_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Consume,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    instrumented: bool,
) -> None:
    """The publish inside a request span stores that context; the relay's PRODUCER span is its child;
    the message carries exactly one traceparent, in the same trace, whose parent is a relay-side span."""
    provider, exporter = spans
    topic = new_topic()
    migrate.upgrade(pg_url)
    engine = sa.create_engine(pg_url)
    event = payment_event("pay-trace", 1)
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("POST /payments") as request_span, engine.begin() as conn:
        OutboxPublisher(conn, router=TopicRouter(topic)).publish_payment_succeeded(event)
    request = request_span.get_span_context()
    relay = RelayThread(relay_with(pg_url, kafka_bootstrap, provider, instrumented))
    try:
        wait_for(lambda: state_counts(engine) == {"published": 1}, 60, "the event to be published")
    finally:
        relay.stop()
        engine.dispose()

    [message] = kcat_consume(topic, 1)
    decoded = decode(message.value, message.headers)
    flags = f"{int(request.trace_flags):02x}"
    assert decoded.traceparent == f"00-{request.trace_id:032x}-{request.span_id:016x}-{flags}"

    finished = exporter.get_finished_spans()
    [produce_span] = by_name(finished, f"{topic} publish")
    assert produce_span.kind == SpanKind.PRODUCER
    assert produce_span.context is not None
    assert produce_span.parent is not None
    assert produce_span.context.trace_id == request.trace_id
    assert produce_span.parent.span_id == request.span_id
    assert produce_span.attributes is not None
    assert produce_span.attributes["messaging.message.id"] == str(event.event_id)

    raw = kcat_raw_headers(kafka_bootstrap, topic)
    assert [name for name in raw if name == "traceparent"] == ["traceparent"]
    header = message.headers["traceparent"].decode()
    _, trace_id, parent_id, _ = header.split("-")
    assert int(trace_id, 16) == request.trace_id
    if instrumented:
        [send_span] = by_name(finished, "send")
        assert send_span.parent is not None
        assert send_span.context is not None
        assert send_span.parent.span_id == produce_span.context.span_id
        assert int(parent_id, 16) == send_span.context.span_id
    else:
        assert int(parent_id, 16) == produce_span.context.span_id


def kcat_raw_headers(bootstrap: str, topic: str) -> list[str]:
    """The header names of the topic's first message as kcat lists them (repeats kept)."""
    import shutil
    import subprocess

    kcat = shutil.which("kcat")
    assert kcat is not None
    proc = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-c", "1", "-e", "-q", "-J"],
        capture_output=True, timeout=60, check=True,
    )
    headers = json.loads(proc.stdout.splitlines()[0])["headers"]
    return [str(headers[i]) for i in range(0, len(headers), 2)]


def test_publisher_keeps_an_explicit_traceparent_and_works_without_a_span(
    tmp_path: Any, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Outside any span the event keeps no traceparent; a caller's own traceparent is never replaced."""
    provider, _ = spans
    url = f"sqlite:///{tmp_path / 'o.db'}"
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    plain = payment_event("pay-plain", 1)
    explicit = payment_event("pay-own", 2).model_copy(update={"traceparent": own})
    with engine.begin() as conn:
        OutboxPublisher(conn).publish(plain)
        with provider.get_tracer("shop").start_as_current_span("request"):
            OutboxPublisher(conn).publish(explicit)
    store = SqlOutboxStore(engine)
    from datetime import UTC, datetime

    decoded = {r.key: decode(r.payload, r.headers) for r in store.claim(None, 10, datetime.now(UTC))}
    assert decoded[b"pay-plain"].traceparent is None
    assert decoded[b"pay-own"].traceparent == own
    engine.dispose()


def test_log_lines_inside_a_span_carry_trace_and_span_ids(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """configure_logging's JSON lines carry trace_id and span_id inside a span, and none outside."""
    provider, _ = spans
    stream = io.StringIO()
    handler = configure_logging("json", "INFO", stream=stream)
    try:
        log = logging.getLogger("payment_events.test")
        with provider.get_tracer("shop").start_as_current_span("request") as span:
            log.info("inside", extra={"event": "test.inside"})
        log.info("outside", extra={"event": "test.outside"})
    finally:
        logging.getLogger().removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside
