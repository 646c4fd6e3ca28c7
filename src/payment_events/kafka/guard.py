"""Per-topic protection around the relay's producer: topic size limits and missing topics.

Two faults of one topic must never hurt events that did nothing wrong (design invariants 7 and 8):

* **Size.** The broker checks ``max.message.bytes`` (per topic; the broker's ``message.max.bytes`` is
  the default) against a whole *record batch*, which librdkafka fills up to the producer's
  ``batch.size`` (1 MB by default). A topic with a smaller limit then refuses batches of small, valid
  events as ``MSG_SIZE_TOO_LARGE``. The guard learns each topic's limit the first time it sees the topic
  (``describe_configs``) and caps the producer's ``batch.size`` below the smallest limit seen. If a size
  error still comes back for a message that travelled with others, that message is re-sent *alone*
  (with every later message of its key, so the key's order on the topic stays its commit order); only a
  message refused while alone is too large by itself, and only that one is dead.
* **Missing topic.** librdkafka holds a message for a topic absent from the cluster metadata until
  ``topic.metadata.propagation.max.ms`` passes, so one misrouted row made every batch holding it wait.
  The guard answers at once for a topic the catalog knows to be missing (``UNKNOWN_TOPIC_OR_PART`` with
  the topic's name), re-checks the metadata at most every ``recheck_seconds``, and tells
  ``on_topic_state(topic, missing)`` so readiness, logs and alerts can name the topic. Those rows then
  wait with backoff on their own retry budget (see :data:`~payment_events.relay.decisions.TOPIC_CODES`)
  while every other row flows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from payment_events.relay.delivery import (
    BATCH_SIZE_RETRY,
    SIZE_CODES,
    TOPIC_CODES,
    Delivered,
    DeliveryError,
    Outcome,
)
from payment_events.relay.ports import BatchProducer, Producible

log = logging.getLogger("payment_events.kafka.guard")

MAX_SINGLE_RESENDS = 200
"""At most this many messages of one batch are re-sent alone after a batch size error; the others are
retried later (``BATCH_TOO_LARGE``, transient), so one cycle stays bounded."""


_ADMIN_PREFIXES = ("security.", "sasl.", "ssl.", "client.", "socket.", "broker.address.")


def admin_config(bootstrap_servers: str, producer_overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An admin client's configuration: the bootstrap servers and the connection/security settings of
    the producer's overrides (nothing producer-only)."""
    config = {k: v for k, v in producer_overrides.items() if str(k).startswith(_ADMIN_PREFIXES)}
    config["bootstrap.servers"] = bootstrap_servers
    return config


def _raw_size(message: Producible) -> int:
    return len(message.payload) + len(message.key) + sum(len(n) + len(v) for n, v in message.headers)


def batch_bytes_below(limit: int) -> int:
    """The ``batch.size`` that keeps a record batch (framing included) under a ``limit``-byte cap."""
    return max(1, min(limit - 1024, limit - limit // 16))


class TopicCatalog(Protocol):
    """What the guard needs to know about topics (the Kafka admin API, or a fake in tests)."""

    def exists(self, topic: str) -> bool | None:
        """True/False from the cluster metadata; ``None`` when the cluster cannot tell now."""
        ...

    def max_message_bytes(self, topic: str) -> int | None:
        """The smaller of the topic's ``max.message.bytes`` and the broker's ``message.max.bytes``;
        ``None`` when unknown."""
        ...


class Resizable(Protocol):
    """A producer whose record batches can be capped (``KafkaBatchProducer.limit_batch_bytes``)."""

    def limit_batch_bytes(self, limit: int) -> bool:
        """Cap ``batch.size`` at ``limit`` bytes; True if it changed."""
        ...


class AdminTopicCatalog:
    """A :class:`TopicCatalog` over ``confluent_kafka.admin.AdminClient`` with short timeouts."""

    def __init__(self, admin_config: Mapping[str, Any], *, timeout: float = 3.0) -> None:
        self._config = dict(admin_config)
        self._timeout = timeout
        self._admin: Any = None
        self._broker_limit: int | None = None

    def _client(self) -> Any:
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            config = {"logger": logging.getLogger("payment_events.kafka.guard.librdkafka"), **self._config}
            self._admin = AdminClient(config)
        return self._admin

    def exists(self, topic: str) -> bool | None:
        """Ask the metadata for ``topic`` (False only when the broker answered that it is absent)."""
        try:
            metadata = self._client().list_topics(topic=topic, timeout=self._timeout)
        except Exception:  # noqa: BLE001 - unreachable broker: the catalog cannot tell
            return None
        meta = metadata.topics.get(topic)
        if meta is None:
            return False
        if meta.error is not None:
            return False if meta.error.name() in TOPIC_CODES else None
        return True

    def max_message_bytes(self, topic: str) -> int | None:
        """Describe the topic's and (once) the controller broker's size limits."""
        # Imported from where they are defined: confluent_kafka.admin does not re-export them for mypy.
        from confluent_kafka.admin._config import ConfigResource
        from confluent_kafka.admin._resource import ResourceType

        try:
            admin = self._client()
            resources = [ConfigResource(ResourceType.TOPIC, topic)]
            if self._broker_limit is None:
                broker = admin.list_topics(timeout=self._timeout).controller_id
                if broker is not None and broker >= 0:
                    resources.append(ConfigResource(ResourceType.BROKER, str(broker)))
            found: list[int] = []
            for resource, future in admin.describe_configs(resources, request_timeout=self._timeout).items():
                entries = future.result(timeout=self._timeout)
                name = "max.message.bytes" if resource.restype == ResourceType.TOPIC else (
                    "message.max.bytes"
                )
                entry = entries.get(name)
                if entry is not None and entry.value is not None:
                    value = int(entry.value)
                    found.append(value)
                    if name == "message.max.bytes":
                        self._broker_limit = value
            if self._broker_limit is not None:
                found.append(self._broker_limit)
            return min(found) if found else None
        except Exception:  # noqa: BLE001 - unknown limit: the single re-send still protects events
            log.debug("could not learn a topic's size limit", extra={"event": "relay.topic_limit_unknown"})
            return None


class GuardedProducer:
    """A :class:`~payment_events.relay.ports.BatchProducer` that isolates topics (see the module doc).

    ``message_max_bytes`` is the producer's ``message.max.bytes``: a message at least that large is
    refused by librdkafka on its own, so a size error for it is final and triggers no re-send.
    """

    def __init__(
        self,
        inner: BatchProducer,
        catalog: TopicCatalog,
        *,
        on_topic_state: Callable[[str, bool], None] | None = None,
        recheck_seconds: float = 10.0,
        message_max_bytes: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._alone_limit = message_max_bytes
        self._catalog = catalog
        self._on_topic_state = on_topic_state
        self._recheck = recheck_seconds
        self._clock = clock
        self._present: set[str] = set()
        self._missing: dict[str, float] = {}
        """Missing topic -> monotonic time of its next metadata re-check."""
        self._sized: set[str] = set()
        self.single_resends = 0
        """Messages re-sent alone after a batch size error (a metric for tests and benchmarks)."""

    @property
    def message_timeout(self) -> float | None:
        """The inner producer's per-message deadline (the relay checks it against its own)."""
        value = getattr(self._inner, "message_timeout", None)
        return float(value) if value is not None else None

    @property
    def missing_topics(self) -> frozenset[str]:
        """Topics currently known to be missing."""
        return frozenset(self._missing)

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        """Produce what can be produced; answer at once for missing topics; re-send batch size failures
        alone."""
        outcomes: list[Outcome] = [None] * len(messages)
        send: list[int] = []
        for topic in {m.topic for m in messages}:
            self._learn(topic)
        for i, message in enumerate(messages):
            if message.topic in self._missing:
                outcomes[i] = DeliveryError(
                    "UNKNOWN_TOPIC_OR_PART", f"topic {message.topic} does not exist", retriable=True
                )
            else:
                send.append(i)
        if not send:
            return outcomes
        sent = self._inner.produce_batch([messages[i] for i in send], timeout)
        for i, outcome in zip(send, sent, strict=True):
            outcomes[i] = outcome
            if isinstance(outcome, DeliveryError) and outcome.code in TOPIC_CODES:
                self._mark_missing(messages[i].topic)
        if len(send) > 1:
            self._resend_alone(messages, send, outcomes, timeout)
        return outcomes

    def close(self, timeout: float) -> None:
        """Close the inner producer."""
        self._inner.close(timeout)

    # ------------------------------------------------------------------ internals
    def _learn(self, topic: str) -> None:
        """First sight of a topic: size the batches below its limit; a missing one: re-check when due."""
        if topic in self._present:
            return
        due = self._missing.get(topic)
        if due is not None and self._clock() < due:
            return
        exists = self._catalog.exists(topic)
        if exists is False:
            self._mark_missing(topic)
            return
        if exists is None:
            return  # cannot tell now: let the producer try (a broker outage is handled as one)
        self._present.add(topic)
        if topic in self._missing:
            del self._missing[topic]
            log.info("topic exists again", extra={"event": "relay.topic_present", "topic": topic})
            if self._on_topic_state is not None:
                self._on_topic_state(topic, False)
        if topic not in self._sized:
            self._sized.add(topic)
            limit = self._catalog.max_message_bytes(topic)
            resize = getattr(self._inner, "limit_batch_bytes", None)
            if limit is not None and resize is not None and resize(batch_bytes_below(limit)):
                log.info(
                    "record batches capped below a topic's size limit",
                    extra={"event": "relay.batch_size_capped", "topic": topic, "limit_bytes": limit},
                )

    def _mark_missing(self, topic: str) -> None:
        first = topic not in self._missing
        self._present.discard(topic)
        self._missing[topic] = self._clock() + self._recheck
        if first:
            log.error(
                "topic does not exist; its rows wait and the others flow",
                extra={"event": "relay.topic_missing", "topic": topic},
            )
            if self._on_topic_state is not None:
                self._on_topic_state(topic, True)

    def _resend_alone(
        self, messages: Sequence[Producible], send: list[int], outcomes: list[Outcome], timeout: float
    ) -> None:
        """Re-send, one message at a time, every size failure of a multi-message batch and every later
        message of its key (in batch order, so the key's last copies on the topic are in order)."""
        failed_keys: dict[bytes, int] = {}
        for i in send:
            outcome = outcomes[i]
            # A message above the producer's message.max.bytes is refused by librdkafka before it joins
            # any record batch: too large by itself, nothing to re-send.
            alone = _raw_size(messages[i]) >= self._alone_limit
            if isinstance(outcome, DeliveryError) and outcome.code in SIZE_CODES and not alone:
                failed_keys.setdefault(messages[i].key, i)
        if not failed_keys:
            return
        again = [i for i in send if messages[i].key in failed_keys and i >= failed_keys[messages[i].key]]
        blocked: set[bytes] = set()
        for n, i in enumerate(again):
            key = messages[i].key
            if n >= MAX_SINGLE_RESENDS or key in blocked:
                # Sent again later, after its key's head: never marked with an offset ahead of it.
                outcomes[i] = DeliveryError(
                    BATCH_SIZE_RETRY, "refused with its record batch; re-sent alone later", retriable=True
                )
                continue
            self.single_resends += 1
            outcome = self._inner.produce_batch([messages[i]], timeout)[0]
            outcomes[i] = outcome
            if not isinstance(outcome, Delivered) and not (
                isinstance(outcome, DeliveryError) and outcome.code in SIZE_CODES
            ):
                blocked.add(key)  # a transient failure: the rest of the key waits for its head
