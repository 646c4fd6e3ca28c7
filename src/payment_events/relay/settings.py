"""``RelayConfig``: every tunable of the relay in one frozen object, with defaults that suit production."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payment_events.errors import ConfigurationError
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, MAX_SHARD_COUNT
from payment_events.relay.decisions import RetryPolicy

DEFAULT_DLQ_TOPIC = "payment.events.dlq"
NOTIFY_CHANNEL = "payment_events_outbox"
"""The PostgreSQL LISTEN/NOTIFY channel the outbox publisher notifies on commit."""

AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
DELIVERY_MODES = (AT_LEAST_ONCE, EXACTLY_ONCE)

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass(frozen=True)
class RelayConfig:
    """How the relay claims, produces, retries, dead-letters, purges and wakes up.

    Durations are in seconds. Invalid values raise :class:`~payment_events.errors.ConfigurationError`
    naming the option.
    """

    batch_size: int = 2000
    """Rows claimed and produced per cycle. Bigger drains faster; smaller lowers per-batch latency."""
    max_attempts: int | None = 25
    """Failed attempts (attributed to the event) before a transiently failing event is dead-lettered;
    ``None`` retries forever. Broker outages (a whole batch failing) do not count."""
    backoff_base_seconds: float = 0.5
    """First retry waits up to this long (full jitter), doubling per attempt..."""
    backoff_cap_seconds: float = 60.0
    """...up to this cap. The same cap bounds the whole-relay pause during a broker outage."""
    poll_interval_seconds: float = 1.0
    """Longest sleep when there is nothing to do (a NOTIFY ends it earlier on PostgreSQL)."""
    delivery_timeout_seconds: float = 30.0
    """Longest wait for one batch's delivery reports; then every outstanding message is purged and
    retried. Must stay below the producer's ``message.timeout.ms`` (300 s by default)."""
    retention_seconds: float = 7 * 24 * 3600.0
    """Published rows older than this are deleted."""
    purge_interval_seconds: float = 60.0
    """How often the retention purge runs."""
    purge_batch_size: int = 1000
    """Rows deleted per purge transaction (small, so the purge never blocks the relay for long)."""
    purge_max_batches: int = 20
    """Purge transactions per purge run, at most."""
    dlq_topic: str | None = DEFAULT_DLQ_TOPIC
    """Dead-lettered events are copied to this topic (``None``: database state only)."""
    shard_count: int = DEFAULT_SHARD_COUNT
    """Keys hash into this many shards; relay instances share them. Must match the writers."""
    lease_refresh_seconds: float = 5.0
    """How often the relay re-balances shard ownership (takes over a dead instance's shards)."""
    backlog_interval_seconds: float = 15.0
    """How often the backlog (pending count, oldest age) is reported to the observer."""
    listen: bool = True
    """On PostgreSQL, wake up on LISTEN/NOTIFY (with polling as the fallback)."""
    notify_channel: str = NOTIFY_CHANNEL
    """The LISTEN channel."""
    overlap_marks: bool = True
    """Commit a batch's marks in the background while the next batch is claimed and produced (the
    claim skips the rows still being marked). Used only when every row of the batch was published or
    dead-lettered (any retry marks synchronously), with stores that offer ``claim_excluding``. Same
    guarantees: if the marks fail, the next batch is not marked either."""
    delivery: str = AT_LEAST_ONCE
    """``"at-least-once"`` (default) or ``"exactly-once"``: each batch produced in a Kafka transaction
    whose ``transactional.id`` the next owner of a shard fences, with reconciliation on takeover, so a
    ``read_committed`` consumer sees every event once (see docs/exactly-once.md)."""
    transactional_id_prefix: str = "payment-events-relay"
    """Exactly-once mode: each relay process uses ``<prefix>.<random>`` as its ``transactional.id``."""
    producer_overrides: Mapping[str, Any] = field(default_factory=dict)
    """librdkafka settings merged over the relay's defaults (security settings go here)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work, naming the option."""
        _positive_int("batch_size", self.batch_size, maximum=100_000)
        if self.max_attempts is not None:
            _positive_int("max_attempts", self.max_attempts)
        for name in (
            "backoff_base_seconds",
            "backoff_cap_seconds",
            "poll_interval_seconds",
            "delivery_timeout_seconds",
            "purge_interval_seconds",
            "lease_refresh_seconds",
            "backlog_interval_seconds",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigurationError(f"relay option {name} must be a positive number of seconds")
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            raise ConfigurationError("relay option backoff_cap_seconds must be >= backoff_base_seconds")
        if isinstance(self.retention_seconds, bool) or self.retention_seconds < 0:
            raise ConfigurationError("relay option retention_seconds must be >= 0 seconds")
        _positive_int("purge_batch_size", self.purge_batch_size)
        _positive_int("purge_max_batches", self.purge_max_batches)
        _positive_int("shard_count", self.shard_count, maximum=MAX_SHARD_COUNT)
        if self.dlq_topic is not None and not _TOPIC_RE.match(self.dlq_topic):
            raise ConfigurationError(
                "relay option dlq_topic must be 1-249 characters of letters, digits, '.', '_' or '-'"
            )
        if self.delivery not in DELIVERY_MODES:
            raise ConfigurationError(f"relay option delivery must be one of {', '.join(DELIVERY_MODES)}")
        if not _TOPIC_RE.match(self.transactional_id_prefix) or len(self.transactional_id_prefix) > 200:
            raise ConfigurationError(
                "relay option transactional_id_prefix must be 1-200 letters, digits, '.', '_' or '-'"
            )
        if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", self.notify_channel):
            raise ConfigurationError("relay option notify_channel must be a lower-case SQL identifier")

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff and budget as the pure decisions use them."""
        return RetryPolicy(self.backoff_base_seconds, self.backoff_cap_seconds, self.max_attempts)


def _positive_int(name: str, value: object, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"relay option {name} must be a positive integer")
    if maximum is not None and value > maximum:
        raise ConfigurationError(f"relay option {name} must be at most {maximum}")
