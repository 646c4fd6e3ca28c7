"""What a delivery report says, and whether a failure is permanent: the vocabulary the relay's decisions,
the Kafka producer and the direct publisher share (pure; no client).

:func:`is_permanent` decides: a permanent failure dead-letters the event, a transient one retries it.
"""

from __future__ import annotations

from dataclasses import dataclass

# librdkafka error names (``KafkaError.name()``) whose failure retrying cannot fix: the message itself or
# the producer's rights are wrong. Everything else is transient unless the client says otherwise.
PERMANENT_CODES: frozenset[str] = frozenset(
    {
        "MSG_SIZE_TOO_LARGE",  # larger than the broker's max.message.bytes or the client's message.max.bytes
        "INVALID_MSG_SIZE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_MSG",
        "INVALID_RECORD",  # broker refused the record (e.g. compaction without a key)
        "CORRUPT_MESSAGE",
        "INVALID_TIMESTAMP",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "INVALID_TOPIC_EXCEPTION",
        "TOPIC_EXCEPTION",
        "POLICY_VIOLATION",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "_INVALID_ARG",
        "_KEY_SERIALIZATION",
        "_VALUE_SERIALIZATION",
        "SERIALIZATION",  # our own code for a row whose bytes or headers cannot be produced at all
        "MALFORMED_ROW",  # our own code for a row stored unproducible (see OutboxRecord.defect)
    }
)

# Names we retry even if a client version were to call them non-retriable: they describe the cluster or
# the connection, never the event. A missing topic (UNKNOWN_TOPIC_OR_PART / _UNKNOWN_TOPIC) is here on
# purpose: it is an operator's configuration problem (the relay checks topics at start) or metadata still
# propagating after a topic was created, and dead-lettering a whole stream for it would be worse than
# waiting; the retry budget still bounds it.
TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_QUEUE_FULL",
        "_FATAL",  # the producer hit a fatal error; a fresh producer re-sends the message
        "_PURGE_QUEUE",
        "_PURGE_INFLIGHT",
        "_DESTROY",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "UNKNOWN_TOPIC_OR_PART",
        "NOT_LEADER_FOR_PARTITION",
        "LEADER_NOT_AVAILABLE",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "KAFKA_STORAGE_ERROR",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "UNKNOWN_PRODUCER_ID",
        "INVALID_PRODUCER_EPOCH",
        "THROTTLING_QUOTA_EXCEEDED",
        "BATCH_TOO_LARGE",  # our own code: refused with its record batch, re-sent alone (kafka.guard)
        "NO_REPORT",  # our own code: no delivery report arrived in time; the message state is unknown
        "NO_OFFSET",  # our own code: an ack without an offset, which cannot be recorded in the ledger
    }
)


MALFORMED_ROW = "MALFORMED_ROW"
"""The code of a dead letter whose outbox row cannot be produced as stored (``OutboxRecord.defect``)."""

RETRY_BUDGET_EXHAUSTED = "RETRY_BUDGET_EXHAUSTED"
"""The code of a dead letter whose transient failures used up ``max_attempts``."""

TOPIC_CODES: frozenset[str] = frozenset({"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "_UNKNOWN_PARTITION"})
"""Codes that name the topic's trouble (it does not exist), not the broker's: a batch failing only with
them is no outage, so its rows spend their own retry budget (and end dead with the reason) while the
relay keeps publishing every other topic."""

BATCH_SIZE_RETRY = "BATCH_TOO_LARGE"
"""Our own code for a message refused as too large while it travelled in a multi-message record batch:
transient (it is re-sent alone); only a message too large by itself is dead."""

SIZE_CODES: frozenset[str] = frozenset(
    {"MSG_SIZE_TOO_LARGE", "INVALID_MSG_SIZE", "RECORD_LIST_TOO_LARGE"}
)
"""Codes meaning the message is too large: its dead-letter copy is sent without the payload."""


@dataclass(frozen=True, slots=True)
class DeliveryError:
    """A small, client-independent description of one failed delivery.

    ``code`` is the librdkafka error name (``KafkaError.name()``) or one of our own codes; ``message`` is
    a short, payload-free text. ``retriable`` / ``fatal`` are what the client said (``None``: unknown).
    ``possibly_persisted`` is ``True`` when the message may have reached the broker anyway.
    """

    code: str
    message: str = ""
    retriable: bool | None = None
    fatal: bool = False
    possibly_persisted: bool | None = None

    def reason(self) -> str:
        """The safe text stored in ``last_error`` and sent in the ``dlq-reason`` header."""
        text = f"{self.code}: {self.message}" if self.message else self.code
        return text[:300]


@dataclass(frozen=True, slots=True)
class Delivered:
    """The broker acknowledged the message at ``partition``/``offset``."""

    partition: int
    offset: int


Outcome = Delivered | DeliveryError | None
"""What happened to one produced message: acked, failed, or ``None`` (no report; unknown)."""


def is_permanent(error: DeliveryError) -> bool:
    """True when retrying cannot help, so the event goes to the dead-letter state and topic.

    A message that may have been persisted is never permanent (a retry makes a duplicate at worst). A
    fatal producer error is transient: the relay builds a fresh producer and re-sends.
    """
    if error.possibly_persisted or error.fatal:
        return False
    if error.code in PERMANENT_CODES:
        return True
    if error.code in TRANSIENT_CODES:
        return False
    # Unknown codes: when in doubt retry. The retry budget turns a never-ending failure into a dead
    # letter, and nothing is lost on the way; a wrong "permanent" would dead-letter good events.
    return False
