"""Exactly-once mode on the Kafka side: a transactional batch producer, fencing a previous owner's
producer, and finding which outbox events a previous owner already committed.

* :class:`TransactionalBatchProducer` produces each batch inside one Kafka transaction
  (``begin -> produce -> flush -> commit``). Outcomes are ``Delivered`` only once the commit returned;
  if any message failed, or the commit did, the transaction is aborted and nothing of the batch is
  visible to a ``read_committed`` consumer. A commit whose outcome is unknown (it timed out, the
  producer became fatal during it) sets :attr:`TransactionalBatchProducer.uncertain`: the relay then
  reconciles its shards before claiming again.
* :func:`fence_transactional_id` runs ``init_transactions`` with another relay's ``transactional.id``:
  the broker aborts that producer's open transaction and refuses its later ones (epoch fencing).
* :func:`find_committed` reads partitions with ``isolation.level=read_committed`` from a time before
  the oldest pending row was written up to the high watermark, and returns where each wanted event id
  (the ``ce_id`` header) already is.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from payment_events.kafka.producer import SentBatch, message_timeout_seconds, translate_error
from payment_events.relay.delivery import Delivered, DeliveryError, Outcome
from payment_events.relay.ports import Producible

log = logging.getLogger("payment_events.kafka.transactions")
client_log = logging.getLogger("payment_events.relay.librdkafka")

RECONCILE_CLOCK_MARGIN = timedelta(seconds=60)
"""How far before the oldest pending row's ``created_at`` the reconciliation starts reading: covers
clock skew between the writers (who stamp ``created_at``) and the relays (whose producers stamp the
records). A record of an outbox row cannot be older than the row."""


def new_transactional_id(prefix: str) -> str:
    """``<prefix>.<random>``: one per relay process (recorded with every shard it takes)."""
    return f"{prefix}.{uuid.uuid4().hex[:16]}"


DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000
"""``transaction.timeout.ms`` unless overridden: how long the broker keeps a transaction of a relay that
died open (blocking ``read_committed`` readers of its partitions) if no other relay fences it first."""


def _aborted(count: int, code: str, message: str) -> list[Outcome]:
    """A failure of the transaction itself, never of an event: transient, whatever the client said
    (a client-level ``_INVALID_ARG`` or ``_FENCED`` must not dead-letter a valid event)."""
    error = DeliveryError(code="TRANSACTION_FAILED", message=f"{code}: {message}"[:200], retriable=True)
    return [error] * count


def transactional_config(config: Mapping[str, Any], transactional_id: str) -> dict[str, Any]:
    """``config`` with ``transactional.id`` and a transaction timeout; librdkafka requires
    ``message.timeout.ms <= transaction.timeout.ms``, so the message timeout is capped to it."""
    out = {**config, "transactional.id": transactional_id}
    txn_timeout = int(out.setdefault("transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS))
    for name in ("message.timeout.ms", "delivery.timeout.ms"):
        if name in out and int(out[name]) > txn_timeout:
            out[name] = txn_timeout
    return out


class TransactionalBatchProducer:
    """A :class:`~payment_events.relay.ports.BatchProducer` that commits each batch as one transaction.

    ``config`` is the relay's producer configuration (idempotence and ``acks=all`` already enforced);
    ``transactional_id`` is this relay's. The producer is created and initialised lazily (on the first
    batch and after a fatal error, e.g. being fenced), so a broker that is down at start is an outage,
    not a crash.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        transactional_id: str,
        *,
        factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self._config = transactional_config(config, transactional_id)
        self.transactional_id = transactional_id
        self._factory = factory
        self.message_timeout = message_timeout_seconds(self._config)
        self._producer: Any = None
        self._fatal = False
        self.uncertain = False
        """True when a commit's outcome is unknown: reconcile before claiming again (then reset it)."""
        self.commits = 0
        self.aborts = 0

    # ------------------------------------------------------------------------------------ lifecycle
    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = True
            log.error(
                "fatal transactional producer error (fenced?); a fresh producer will be initialised",
                extra={"event": "relay.producer_fatal", "code": error.name()},
            )

    def _ready(self, timeout: float) -> Any:
        if self._producer is not None and not self._fatal:
            return self._producer
        self._drop()
        config = dict(self._config)
        config["error_cb"] = self._on_error
        config.setdefault("logger", client_log)
        producer = self._factory(config)
        producer.init_transactions(max(timeout, 1.0))  # fences any older epoch of our own id
        self._producer, self._fatal = producer, False
        return producer

    def _drop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.flush(0)
            except Exception:  # noqa: BLE001 - a fatal producer may refuse; it is dropped anyway
                log.debug("dropping the transactional producer failed", extra={"event": "relay.drop"})

    def close(self, timeout: float) -> None:
        """Drop the client (an open transaction cannot exist between batches)."""
        self._drop()

    # ---------------------------------------------------------------------------------------- batch
    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        """Produce ``messages`` in one transaction and commit it within ``timeout`` seconds.

        Committed: one ``Delivered`` per message. Otherwise the transaction is aborted: a message's own
        delivery error is reported for it (a permanent one dead-letters it), every other message gets
        no outcome (left pending, no attempt counted), or, when the transaction itself failed, a
        transient error for all (an outage).
        """
        if not messages:
            return []
        deadline = time.monotonic() + timeout
        try:
            producer = self._ready(timeout)
            producer.begin_transaction()
        except KafkaException as exc:
            self._fatal = True
            return _aborted(len(messages), _code(exc), "transaction could not begin")
        batch = SentBatch(len(messages))
        self._enqueue(producer, messages, batch)
        while batch.pending[0] > 0 and time.monotonic() < deadline:
            # flush() sends at once (no linger.ms wait) and serves the reports (see kafka.producer).
            producer.flush(min(0.05, max(0.0, deadline - time.monotonic())))
        outcomes = self._collect(batch)
        failed = [o for o in outcomes if not isinstance(o, Delivered)]
        if failed:
            self._abort(deadline)
            if all(o is None for o in outcomes):
                return _aborted(len(messages), "_TRANSACTION_TIMED_OUT", "no delivery report in time")
            return [o if isinstance(o, DeliveryError) else None for o in outcomes]
        try:
            producer.commit_transaction(max(0.1, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                self._abort(deadline)
            else:
                # Timed out or fatal while committing: it may have committed. Never guess.
                self.uncertain = True
                self._fatal = True
                log.error(
                    "transaction outcome unknown; the relay reconciles before claiming again",
                    extra={"event": "relay.commit_uncertain", "code": _code(exc)},
                )
            return _aborted(len(messages), _code(exc), "transaction commit failed")
        self.commits += 1
        return outcomes

    def _abort(self, deadline: float) -> None:
        self.aborts += 1
        try:
            self._producer.abort_transaction(max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            # A fresh producer's init_transactions aborts whatever is still open for our id.
            self._fatal = True
            log.warning(
                "aborting the transaction failed; re-initialising the producer",
                extra={"event": "relay.abort_failed", "code": _code(exc)},
            )

    @staticmethod
    def _enqueue(producer: Any, messages: Sequence[Producible], batch: SentBatch) -> None:
        raw, pending, outcomes = batch.raw, batch.pending, batch.outcomes
        for i, message in enumerate(messages):

            def on_delivery(err: Any, msg: Any, i: int = i) -> None:
                raw[i] = (err, msg)
                pending[0] -= 1

            while True:
                try:
                    producer.produce(
                        message.topic,
                        message.payload,
                        message.key,
                        headers=list(message.headers),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
                except KafkaException as exc:
                    outcomes[i] = translate_error(exc.args[0])
                    pending[0] -= 1
                    break
                except (TypeError, ValueError) as exc:
                    outcomes[i] = DeliveryError("SERIALIZATION", type(exc).__name__)
                    pending[0] -= 1
                    break

    @staticmethod
    def _collect(batch: SentBatch) -> list[Outcome]:
        outcomes = batch.outcomes
        for i, pair in enumerate(batch.raw):
            if pair is None:
                continue
            err, msg = pair
            if err is None and msg.offset() is not None and msg.offset() >= 0:
                outcomes[i] = Delivered(msg.partition(), msg.offset())
            elif err is None:
                outcomes[i] = DeliveryError("NO_OFFSET", "acknowledged without an offset")
            else:
                outcomes[i] = translate_error(err)
        return outcomes


def _code(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.name() if isinstance(error, KafkaError) else type(exc).__name__


def fence_transactional_id(config: Mapping[str, Any], transactional_id: str, timeout: float = 30.0) -> None:
    """Fence the producer that uses ``transactional_id``: its open transaction is aborted (or, if it was
    committing, completed) and its later produce/commit calls fail. Raises ``KafkaException``."""
    producer = Producer({**transactional_config(config, transactional_id), "logger": client_log})
    try:
        producer.init_transactions(timeout)
    finally:
        producer.flush(0)
    log.info("fenced a previous owner's producer", extra={"event": "relay.fenced_previous"})


_CLIENT_KEYS = ("bootstrap.servers", "security.", "sasl.", "ssl.", "client.id", "socket.", "broker.")
"""Producer settings that also apply to the reconciliation's consumer (connection and security)."""


def find_committed(
    config: Mapping[str, Any],
    wanted: Mapping[str, tuple[int, str]],
    since: datetime,
    timeout: float = 60.0,
) -> dict[int, tuple[int, int]]:
    """Where the events of ``wanted`` (``event_id -> (row id, topic)``) already are, as committed records:
    ``row id -> (partition, offset)``. Reads every partition of the topics involved with
    ``read_committed``, from ``since - RECONCILE_CLOCK_MARGIN`` up to the high watermark taken at the start
    (so a transaction committed before the call is seen). Raises ``TimeoutError`` if the end is not
    reached within ``timeout`` seconds (the caller must not produce for those shards then)."""
    if not wanted:
        return {}
    topics = sorted({topic for _, topic in wanted.values()})
    consumer = Consumer(
        {
            **{k: v for k, v in config.items() if k.startswith(_CLIENT_KEYS)},
            "group.id": f"payment-events-reconcile-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,  # the fetcher's end, past aborted records and markers
            "logger": client_log,
        }
    )
    found: dict[int, tuple[int, int]] = {}
    try:
        deadline = time.monotonic() + timeout
        start_ms = int((since - RECONCILE_CLOCK_MARGIN).timestamp() * 1000)
        metadata = consumer.list_topics(timeout=max(1.0, timeout / 4))
        wanted_tps = [
            TopicPartition(topic, partition, start_ms)
            for topic in topics
            if topic in metadata.topics
            for partition in sorted(metadata.topics[topic].partitions)
        ]
        starts = consumer.offsets_for_times(wanted_tps, timeout=max(1.0, timeout / 4))
        ends: dict[tuple[str, int], int] = {}
        assign: list[TopicPartition] = []
        for tp in starts:
            _, high = consumer.get_watermark_offsets(tp, timeout=max(1.0, timeout / 4), cached=False)
            if tp.offset < 0 or tp.offset >= high:  # nothing written since `since`
                continue
            ends[(tp.topic, tp.partition)] = high
            assign.append(TopicPartition(tp.topic, tp.partition, tp.offset))
        if not assign:
            return found
        consumer.assign(assign)
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reconciliation did not reach the end of {len(ends)} partitions")
            for message in consumer.consume(1000, 0.2):
                key = (str(message.topic()), int(message.partition() or 0))
                offset = message.offset()
                offset = -1 if offset is None else int(offset)
                error = message.error()
                if error is not None:
                    # End of what read_committed may read now: done once past the watermark we took.
                    eof = error.code() == KafkaError._PARTITION_EOF
                    if eof and key in ends and offset >= ends[key]:
                        del ends[key]
                    continue
                event_id = _ce_id(message.headers())
                entry = wanted.get(event_id) if event_id is not None else None
                if entry is not None and entry[1] == key[0] and entry[0] not in found:
                    found[entry[0]] = (key[1], offset)
                if key in ends and offset + 1 >= ends[key]:
                    del ends[key]
    finally:
        consumer.close()
    return found


def _ce_id(headers: Any) -> str | None:
    for name, value in headers or ():
        if name == "ce_id" and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None
