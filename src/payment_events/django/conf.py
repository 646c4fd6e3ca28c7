"""Settings of the Django integration, read from ``settings.PAYMENT_EVENTS`` (a dict; every key optional)::

    PAYMENT_EVENTS = {
        "DATABASE": "default",            # the connection alias the outbox lives in
        "TOPIC": "payment.events",        # default topic
        "TOPIC_ROUTES": {"PaymentFailed": "payment.failed"},  # per event type
        "SHARD_COUNT": 64,                # must equal the relays' --relay-shard-count
        "NOTIFY": True,                   # wake PostgreSQL relays on commit (pg_notify)
        "NOTIFY_CHANNEL": "payment_events_outbox",
    }
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payment_events.outbox.inserts import DEFAULT_TOPIC, NOTIFY_CHANNEL
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, validate_shard_count

_KEYS = frozenset({"DATABASE", "TOPIC", "TOPIC_ROUTES", "SHARD_COUNT", "NOTIFY", "NOTIFY_CHANNEL"})


@dataclass(frozen=True, slots=True)
class DjangoSettings:
    """The ``PAYMENT_EVENTS`` setting, validated."""

    database: str = "default"
    topic: str = DEFAULT_TOPIC
    topic_routes: Mapping[str, str] = field(default_factory=dict)
    shard_count: int = DEFAULT_SHARD_COUNT
    notify: bool = True
    notify_channel: str = NOTIFY_CHANNEL


def load(raw: Mapping[str, Any] | None = None) -> DjangoSettings:
    """Validate ``raw`` (default: ``django.conf.settings.PAYMENT_EVENTS``); unknown keys are refused."""
    if raw is None:
        from django.conf import settings

        raw = getattr(settings, "PAYMENT_EVENTS", {}) or {}
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"PAYMENT_EVENTS: unknown key {unknown[0]!r}; expected some of {', '.join(sorted(_KEYS))}"
        )
    return DjangoSettings(
        database=str(raw.get("DATABASE", "default")),
        topic=str(raw.get("TOPIC", DEFAULT_TOPIC)),
        topic_routes=dict(raw.get("TOPIC_ROUTES", {})),
        shard_count=validate_shard_count(int(raw.get("SHARD_COUNT", DEFAULT_SHARD_COUNT))),
        notify=bool(raw.get("NOTIFY", True)),
        notify_channel=str(raw.get("NOTIFY_CHANNEL", NOTIFY_CHANNEL)),
    )
