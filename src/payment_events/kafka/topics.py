"""Which Kafka topic an event goes to: one aggregate topic by default, per-event-type routes by choice.

Pure: no client, no I/O. Creating or checking topics on a cluster is :mod:`payment_events.kafka.admin`.

The default is one aggregate topic, ``payment.events``: a consumer sees every payment event of one key
(a payment id) in order on one partition. Per-type topics (``PaymentFailed -> payment.failed``) give
consumers less to filter but lose the cross-type order of one payment: only route types to their own
topic when no consumer needs that order.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from payment_events.errors import ConfigurationError
from payment_events.outbox.inserts import DEFAULT_TOPIC

MAX_TOPIC_LENGTH = 249
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
_EVENT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def validate_topic_name(name: object, option: str = "topic") -> str:
    """Return ``name`` if Kafka accepts it as a topic name, else raise ``ConfigurationError``.

    Kafka's rules: 1 to 249 characters from ``[A-Za-z0-9._-]``, and not ``.`` or ``..``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{option} must be a non-empty topic name")
    if len(name) > MAX_TOPIC_LENGTH:
        raise ConfigurationError(f"{option} {name[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    if name in {".", ".."}:
        raise ConfigurationError(f"{option} cannot be '.' or '..'")
    if not _TOPIC_CHARS.match(name):
        raise ConfigurationError(
            f"{option} {name!r} may only contain letters, digits, '.', '_' and '-'"
        )
    return name


def parse_routing(value: object) -> dict[str, str]:
    """Event-type -> topic routes from a mapping (a TOML table) or the flag and environment form
    ``"PaymentFailed=payment.failed,RefundProcessed=refund.processed"``. Names are checked by
    :class:`TopicRouter`; here only the form (and a type given twice) is."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ConfigurationError("expected EventType=topic pairs separated by commas, or a TOML table")
    routes: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        event_type, sep, topic = part.partition("=")
        event_type, topic = event_type.strip(), topic.strip()
        if not sep or not event_type or not topic:
            raise ConfigurationError(
                f"topic route {part!r} must look like EventType=topic.name (comma-separated)"
            )
        if event_type in routes:
            raise ConfigurationError(f"topic route for {event_type!r} is given twice")
        routes[event_type] = topic
    return routes


def _metric_name(topic: str) -> str:
    # Kafka's metrics replace '.' with '_', so 'a.b' and 'a_b' collide; Kafka itself refuses the pair.
    return topic.replace(".", "_")


class TopicRouter:
    """Maps an event type to its topic.

    ``routes`` maps event types (``"PaymentFailed"``) to topics; types without a route go to
    ``default_topic``. ``known_event_types``, if given, makes a route for an unknown type an error
    (a typo would otherwise silently never match).
    """

    __slots__ = ("_default", "_routes")

    def __init__(
        self,
        default_topic: str = DEFAULT_TOPIC,
        routes: Mapping[str, str] | None = None,
        *,
        known_event_types: Collection[str] | None = None,
    ) -> None:
        self._default = validate_topic_name(default_topic, "default topic")
        checked: dict[str, str] = {}
        for event_type, topic in (routes or {}).items():
            if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
                raise ConfigurationError(
                    f"topic route key {event_type!r} must be an event type such as 'PaymentFailed'"
                )
            if known_event_types is not None and event_type not in known_event_types:
                raise ConfigurationError(
                    f"topic route for unknown event type {event_type!r}; known types: "
                    + ", ".join(sorted(known_event_types))
                )
            checked[event_type] = validate_topic_name(topic, f"topic route for {event_type}")
        self._routes = checked
        seen: dict[str, str] = {}
        for topic in self.topics:
            other = seen.setdefault(_metric_name(topic), topic)
            if other != topic:
                raise ConfigurationError(
                    f"topics {other!r} and {topic!r} differ only by '.' versus '_', which Kafka refuses"
                )

    @property
    def default_topic(self) -> str:
        """Where unrouted event types go."""
        return self._default

    @property
    def routes(self) -> Mapping[str, str]:
        """The explicit event type -> topic routes."""
        return dict(self._routes)

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic this router can return, sorted, without duplicates (what to ensure exists)."""
        return tuple(sorted({self._default, *self._routes.values()}))

    def topic_for(self, event_type: str) -> str:
        """The topic for events of ``event_type``."""
        return self._routes.get(event_type, self._default)

    def __repr__(self) -> str:
        return f"TopicRouter(default_topic={self._default!r}, routes={self._routes!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopicRouter):
            return NotImplemented
        return (self._default, self._routes) == (other._default, other._routes)

    def __hash__(self) -> int:
        return hash((self._default, tuple(sorted(self._routes.items()))))
