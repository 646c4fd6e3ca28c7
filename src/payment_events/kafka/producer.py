"""The relay's producer adapter over ``confluent_kafka.Producer`` (librdkafka).

Settings (see :data:`DEFAULT_PRODUCER_CONFIG`): the idempotent producer (``enable.idempotence=true``,
which implies ``acks=all`` and at most 5 requests in flight per connection, the condition under which
librdkafka keeps per-partition order across its internal retries), lz4 compression, a short linger
and large batches. A batch is produced with ``produce()`` in a tight loop (delivery callbacks only store
what they got), then ``flush()`` sends it at once (no linger) and serves the delivery reports, bounded
by a timeout.

Translating reports: ``err is None`` and ``offset >= 0`` is an ack; any error becomes a
:class:`~payment_events.relay.decisions.DeliveryError` named after the librdkafka code, which
:func:`~payment_events.relay.decisions.is_permanent` classifies. The Python client does not expose
librdkafka's per-message persisted status, so every failed report is treated like ``POSSIBLY_PERSISTED``
would be: the row is retried (a duplicate at worst, never a loss) unless the code is a permanent one that
cannot have been persisted (message too large, not authorized, ...).

Deadlines: librdkafka fails messages one by one when their own ``message.timeout.ms`` expires, which
after a broker outage can fail an earlier message of a partition while a later one still gets through
(a gap, and for one key a reordering). So the relay keeps ``message.timeout.ms`` longer than its own
wait for a batch, and when that wait ends with reports outstanding it purges every outstanding message
at once: per partition the acknowledged messages are then always a prefix.

A fatal error (``KafkaError.fatal()``, e.g. an idempotence sequence desynchronisation) poisons a
librdkafka producer for good; the adapter notices it (error callback or a report) and builds a fresh
producer before the next batch, instead of failing every batch forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from payment_events.kafka.client import flush_then_purge
from payment_events.relay.delivery import Delivered, DeliveryError, Outcome
from payment_events.relay.ports import Producible
from payment_events.tracing import ProduceTracing, otel_available

log = logging.getLogger("payment_events.kafka.producer")
client_log = logging.getLogger("payment_events.relay.librdkafka")
"""librdkafka's own log lines (connection failures and the like), served from ``poll()``."""

DEFAULT_PRODUCER_CONFIG: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 5,
    "compression.type": "lz4",
    "linger.ms": 5,
    # Under what kafka.guard allows for a topic with Kafka's default max.message.bytes (1,048,588 B ->
    # 983,052 B), so a relay on default topics never rebuilds its producer to cap its batches (a rebuild
    # re-acquires the idempotent producer id: most of the ~1 s its first batch used to take).
    "batch.size": 983_040,
    "batch.num.messages": 10_000,
    # Longer than the relay's own wait on purpose (see the module docstring): the relay, not librdkafka,
    # decides when a batch has waited long enough, and then fails every outstanding message at once.
    "message.timeout.ms": 300_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "retry.backoff.ms": 100,
    "socket.keepalive.enable": True,
    # A topic absent from the metadata fails its messages after this long instead of 30 s; the relay's
    # topic guard (kafka.guard) then answers for it at once and keeps every other topic flowing.
    "topic.metadata.propagation.max.ms": 5_000,
}
"""Producer settings the relay uses unless overridden. ``acks=all`` + idempotence are not negotiable:
overriding them with weaker values is refused by :func:`producer_config`."""

STATISTICS_INTERVAL_MS = 15_000
"""How often librdkafka reports its statistics when a statistics callback is given (one scrape interval)."""
_ACKS_ALL = {"all", "-1", -1}


def producer_config(bootstrap_servers: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full producer configuration: defaults, then ``overrides``, then the bootstrap servers.

    Raises ``ConfigurationError`` if an override would weaken delivery (no idempotence, acks != all, more
    than 5 requests in flight).
    """
    from payment_events.errors import ConfigurationError

    config: dict[str, Any] = {**DEFAULT_PRODUCER_CONFIG, **(overrides or {})}
    config["bootstrap.servers"] = bootstrap_servers
    if str(config.get("enable.idempotence")).lower() not in {"true", "1"}:
        raise ConfigurationError("producer option enable.idempotence must stay true for the relay")
    if any(config.get(name, "all") not in _ACKS_ALL for name in ("acks", "request.required.acks")):
        raise ConfigurationError("producer option acks must stay 'all' for the relay")
    for name in ("max.in.flight.requests.per.connection", "max.in.flight"):
        if int(config.get(name, 5)) > 5:
            raise ConfigurationError(f"producer option {name} must be <= 5 (per-partition order)")
    return config


def message_timeout_seconds(config: Mapping[str, Any]) -> float:
    """librdkafka's per-message delivery deadline (``message.timeout.ms`` or its alias), in seconds;
    0 means no deadline (returned as infinity)."""
    value = int(config.get("message.timeout.ms", config.get("delivery.timeout.ms", 300_000)))
    return float("inf") if value == 0 else value / 1000.0


def translate_error(error: KafkaError) -> DeliveryError:
    """Our descriptor for a librdkafka error (code name, short text, retriable and fatal flags)."""
    return DeliveryError(
        code=error.name(),
        message=str(error.str())[:200],
        retriable=bool(error.retriable()),
        fatal=bool(error.fatal()),
    )


class SentBatch:
    """A batch handed to librdkafka whose delivery reports are still coming in."""

    __slots__ = ("outcomes", "pending", "raw")

    def __init__(self, size: int) -> None:
        self.raw: list[Any] = [None] * size
        self.outcomes: list[Outcome] = [None] * size
        self.pending = [size]
        """Messages without a report yet (a one-element list: the delivery callbacks decrement it)."""

    @property
    def done(self) -> bool:
        """True once every message has its report."""
        return self.pending[0] <= 0


class KafkaBatchProducer:
    """A :class:`~payment_events.relay.ports.BatchProducer` over one librdkafka producer.

    Used from one thread (the relay loop). ``factory`` builds the underlying client (tests may wrap it).
    With ``opentelemetry-api`` installed each message is produced in a span, child of the trace context
    stored with its event (``tracer_provider``: default, the global one); see :mod:`payment_events.tracing`.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        factory: Callable[[dict[str, Any]], Any] = Producer,
        statistics: Callable[[str], None] | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self._config = dict(config)
        self._factory = factory
        self._statistics = statistics
        self.message_timeout = message_timeout_seconds(self._config)
        self._fatal: DeliveryError | None = None
        self.rebuilds = 0
        """How many times a fresh producer replaced one that hit a fatal error."""
        self._tracing = _produce_tracing(tracer_provider)
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        config = dict(self._config)
        config["error_cb"] = self._on_error
        config.setdefault("logger", client_log)  # librdkafka's own log lines go through logging, not stderr
        if self._statistics is not None:
            # librdkafka's statistics (queue depth, broker round trips, retries) as JSON, from poll().
            config["stats_cb"] = self._statistics
            config.setdefault("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        return self._factory(config)

    def _on_error(self, error: KafkaError) -> None:
        # Called from poll()/flush() on this thread; only record what happened.
        if error.fatal():
            self._fatal = translate_error(error)
            log.error(
                "fatal producer error; a fresh producer will be built",
                extra={"event": "relay.producer_fatal", "code": error.name()},
            )
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("all brokers are down", extra={"event": "relay.brokers_down"})
        elif error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            # Credentials or certificates the brokers refuse: nothing retrying fixes (summarised in logs).
            tls = error.code() == KafkaError._SSL
            log.error(
                "the Kafka brokers refused the " + ("TLS handshake" if tls else "credentials"),
                extra={"event": "relay.tls_failed" if tls else "relay.auth_failed", "code": error.name()},
            )
        else:
            log.debug("producer error", extra={"event": "relay.producer_error", "code": error.name()})

    def limit_batch_bytes(self, limit: int) -> bool:
        """Cap ``batch.size`` at ``limit`` bytes (a topic's size limit, learnt by ``kafka.guard``);
        rebuilds the producer between batches when the cap is lower than the current setting."""
        current = int(self._config.get("batch.size", DEFAULT_PRODUCER_CONFIG["batch.size"]))
        if limit >= current:
            return False
        self._config["batch.size"] = limit
        self.rebuild(planned=True)
        return True

    @property
    def fatal_error(self) -> DeliveryError | None:
        """The fatal error that will trigger a rebuild before the next batch, if any."""
        return self._fatal

    def rebuild(self, *, planned: bool = False) -> None:
        """Replace the producer with a fresh one (after a fatal error or a purge at a deadline; ``planned``:
        a settings change between batches, such as a batch-size cap, logged at INFO rather than WARNING).

        Whatever the old producer still holds is purged and its reports served first, so a batch
        still waiting on it gets its (failed) outcomes instead of waiting for reports that never come.
        """
        old = self._producer
        try:
            old.purge(in_queue=True, in_flight=True, blocking=True)
            old.flush(1.0)
        except Exception:  # noqa: BLE001 - a broken producer may fail to purge; it is dropped anyway
            log.debug("purging the old producer failed", extra={"event": "relay.producer_purge_failed"})
        self._producer = self._new_producer()
        self._fatal = None
        self.rebuilds += 1
        log.log(
            logging.INFO if planned else logging.WARNING,
            "built a fresh producer",
            extra={"event": "relay.producer_rebuilt", "count": self.rebuilds, "planned": planned},
        )

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        """Produce ``messages``, wait up to ``timeout`` s for every report, return one outcome each.

        If reports are still outstanding at the deadline, every outstanding message is purged at once
        (reported as ``_PURGE_QUEUE`` / ``_PURGE_INFLIGHT``, i.e. retry) and a fresh producer is built.
        """
        return self._wait(self._send(messages), timeout)

    def _send(self, messages: Sequence[Producible]) -> SentBatch:
        """Hand ``messages`` to librdkafka and return at once; :meth:`_wait` collects the outcomes."""
        if self._fatal is not None:
            self.rebuild()
        batch = SentBatch(len(messages))
        self._enqueue(messages, batch)
        return batch

    def _wait(self, batch: SentBatch, timeout: float) -> list[Outcome]:
        """Serve delivery reports until every message of ``batch`` has one or ``timeout`` s passed; at
        the deadline purge everything outstanding and rebuild."""
        deadline = time.monotonic() + timeout
        # flush(), not poll(): both serve the delivery reports, but while flush() runs librdkafka treats
        # linger.ms as already elapsed, so the batch just handed over leaves at once. With poll() every
        # batch waited out linger.ms (5 ms) before its first request: the largest share of commit-to-ack
        # at low rates (issue 16). linger.ms still batches what is produced outside a wait.
        flush = self._producer.flush
        while batch.pending[0] > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            flush(min(left, 0.05))
        if batch.pending[0] > 0:
            log.warning(
                "delivery reports outstanding at the deadline; purging them and rebuilding the producer",
                extra={"event": "relay.reports_missing", "count": batch.pending[0]},
            )
            self._purge_outstanding()
            self._collect(batch)
            self.rebuild()
        else:
            self._collect(batch)
        return batch.outcomes

    def _purge_outstanding(self) -> None:
        """Fail every queued and in-flight message now and serve their reports.

        Acks of one partition arrive in order, so at this instant the acknowledged messages of each
        partition are a prefix and the purged ones the rest: the per-key rule then never sees a later
        message through after an earlier one failed (which librdkafka's own per-message timeouts could
        cause, and why ``message.timeout.ms`` is longer than the relay's wait).
        """
        producer = self._producer
        try:
            producer.purge(in_queue=True, in_flight=True, blocking=True)
            producer.flush(1.0)  # serves the purge reports; nothing is left to send
        except Exception:  # noqa: BLE001 - a broken client may refuse; its rows stay pending (None)
            log.debug("purging outstanding messages failed", extra={"event": "relay.purge_failed"})

    def _enqueue(self, messages: Sequence[Producible], batch: SentBatch) -> None:
        """Hand every message to librdkafka; synchronous refusals go straight into the outcomes."""
        producer = self._producer
        produce = producer.produce
        raw = batch.raw
        pending = batch.pending
        outcomes = batch.outcomes
        tracing = self._tracing if self._tracing is not None and self._tracing.enabled() else None
        for i, message in enumerate(messages):

            def on_delivery(err: Any, msg: Any, i: int = i) -> None:
                raw[i] = (err, msg)
                pending[0] -= 1

            while True:
                try:
                    if tracing is None:
                        produce(
                            message.topic,
                            message.payload,
                            message.key,
                            headers=list(message.headers),
                            on_delivery=on_delivery,
                        )
                    else:
                        tracing.produce(
                            produce,
                            message.topic,
                            message.payload,
                            message.key,
                            headers=message.headers,
                            on_delivery=on_delivery,
                        )
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: serve reports to make room
                except KafkaException as exc:
                    outcomes[i] = translate_error(exc.args[0])
                    pending[0] -= 1
                    break
                except (TypeError, ValueError) as exc:
                    outcomes[i] = DeliveryError("SERIALIZATION", type(exc).__name__)
                    pending[0] -= 1
                    break

    def _collect(self, batch: SentBatch) -> None:
        """Turn the stored (err, msg) pairs into outcomes."""
        outcomes = batch.outcomes
        for i, pair in enumerate(batch.raw):
            if pair is None:
                continue
            err, msg = pair
            if err is None:
                offset = msg.offset()
                if offset is not None and offset >= 0:
                    outcomes[i] = Delivered(msg.partition(), offset)
                else:
                    outcomes[i] = DeliveryError("NO_OFFSET", "acknowledged without an offset")
                continue
            error = translate_error(err)
            outcomes[i] = error
            if error.fatal:
                self._fatal = error

    def close(self, timeout: float) -> None:
        """Flush what is queued (bounded), then drop the client."""
        try:
            left = flush_then_purge(self._producer, timeout)
            if left:
                log.error(
                    "closed the producer with undelivered messages; their rows stay pending",
                    extra={"event": "relay.close_undelivered", "count": left},
                )
        finally:
            self._producer = None


def _produce_tracing(tracer_provider: Any) -> ProduceTracing | None:
    """Per-message OpenTelemetry spans when ``opentelemetry-api`` is installed (the ``otel`` extra)."""
    if not otel_available():
        return None
    return ProduceTracing(tracer_provider)
