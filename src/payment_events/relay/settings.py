"""``RelayConfig``: every tunable of the relay in one frozen object, with defaults that suit production."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payment_events.errors import ConfigurationError
from payment_events.outbox.inserts import NOTIFY_CHANNEL
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, MAX_SHARD_COUNT
from payment_events.relay.decisions import RetryPolicy

DEFAULT_DLQ_TOPIC = "payment.events.dlq"

AT_LEAST_ONCE = "at-least-once"
EXACTLY_ONCE = "exactly-once"
DELIVERY_MODES = (AT_LEAST_ONCE, EXACTLY_ONCE)

_TRANSACTIONAL_ID_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


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
    purge_max_batches: int = 10_000
    """Purge transactions per purge run, at most."""
    purge_budget_seconds: float = 50.0
    """A purge run (on its own thread: publishing goes on) deletes batch after batch until it is caught
    up (a batch comes back short) or this long has passed; the next run (``purge_interval_seconds``
    later) continues. The defaults delete about twice the highest sustained publish rate
    (``python -m bench.purge``, docs/performance.md)."""
    dlq_topic: str | None = DEFAULT_DLQ_TOPIC
    """Dead-lettered events are copied to this topic (``None``: database state only). Its name is
    checked where topics are known to Kafka (:func:`payment_events.service.build_relay`)."""
    shard_count: int = DEFAULT_SHARD_COUNT
    """Keys hash into this many shards; relay instances share them. Must match the writers."""
    lease_refresh_seconds: float = 5.0
    """How often the relay re-balances shard ownership (takes over a dead instance's shards)."""
    lease_takeover_seconds: float = 30.0
    """PostgreSQL: a relay whose lease session has been silent this long (host gone, network
    partitioned) loses its shards; the others take them on their next refresh. At least 2 s."""
    backlog_interval_seconds: float = 15.0
    """How often the backlog (pending count, oldest age) is reported to the observer."""
    listen: bool = True
    """Wake up on commits, with polling as the fallback: LISTEN/NOTIFY on PostgreSQL, a watch of the file's
    change counter (``PRAGMA data_version``, every 1-10 ms) on SQLite."""
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
        for name in RELAY_LIMITS:
            check_relay_option(name, getattr(self, name))
        check_backoff(self.backoff_base_seconds, self.backoff_cap_seconds)
        if self.lease_takeover_seconds < 2:
            raise ConfigurationError("relay option lease_takeover_seconds must be at least 2 seconds")
        if self.delivery not in DELIVERY_MODES:
            raise ConfigurationError(f"relay option delivery must be one of {', '.join(DELIVERY_MODES)}")
        if not _TRANSACTIONAL_ID_PREFIX.match(self.transactional_id_prefix):
            raise ConfigurationError(
                "relay option transactional_id_prefix must be 1-200 letters, digits, '.', '_' or '-'"
            )
        if not re.match(r"^[a-z_][a-z0-9_]{0,62}$", self.notify_channel):
            raise ConfigurationError("relay option notify_channel must be a lower-case SQL identifier")

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff and budget as the pure decisions use them."""
        return RetryPolicy(self.backoff_base_seconds, self.backoff_cap_seconds, self.max_attempts)


_DURATION = ("seconds", 0.0, None)
RELAY_LIMITS: dict[str, tuple[str, float, float | None]] = {
    "batch_size": ("int", 1, 100_000),
    "max_attempts": ("optional int", 1, None),
    "backoff_base_seconds": _DURATION,
    "backoff_cap_seconds": _DURATION,
    "poll_interval_seconds": _DURATION,
    "delivery_timeout_seconds": _DURATION,
    "retention_seconds": ("seconds or zero", 0.0, None),
    "purge_interval_seconds": _DURATION,
    "purge_batch_size": ("int", 1, 100_000),
    "purge_max_batches": ("int", 1, None),
    "purge_budget_seconds": _DURATION,
    "shard_count": ("int", 1, MAX_SHARD_COUNT),
    "lease_refresh_seconds": _DURATION,
    "lease_takeover_seconds": _DURATION,
    "backlog_interval_seconds": _DURATION,
}
"""The one home of the relay's limits: (kind, minimum, maximum) per :class:`RelayConfig` field. The
settings (``relay_*`` options) check their values here too, so the two can never disagree."""


def check_relay_option(name: str, value: object) -> None:
    """Raise ``ConfigurationError`` naming ``name`` when ``value`` is outside :data:`RELAY_LIMITS`."""
    kind, low, high = RELAY_LIMITS[name]
    if kind == "optional int" and value is None:
        return
    if kind in ("int", "optional int"):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigurationError(f"relay option {name} must be an integer >= {low:g}")
        if high is not None and value > high:
            raise ConfigurationError(f"relay option {name} must be at most {high:g}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"relay option {name} must be a number of seconds")
    if kind == "seconds" and value <= 0:
        raise ConfigurationError(f"relay option {name} must be a positive number of seconds")
    if value < 0:
        raise ConfigurationError(f"relay option {name} must be >= 0 seconds")


def check_backoff(base_seconds: float, cap_seconds: float) -> None:
    """The first retry delay may not exceed the cap."""
    if cap_seconds < base_seconds:
        raise ConfigurationError("relay option backoff_cap_seconds must be >= backoff_base_seconds")
