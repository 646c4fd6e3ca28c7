"""The explicit registry of event types and versions: which model reads ``(eventType, schemaVersion)``.

Decoding never imports a class by name from the payload; it looks the pair up here. Each event type has
one newest version (what producers emit and ``decode`` returns) and, for every older version, an
upcaster to the next one. :data:`DEFAULT_REGISTRY` holds the eight events of this package.
"""

from __future__ import annotations

from typing import Any

from payment_events.errors import ContractError, UnknownEventTypeError
from payment_events.events import (
    BaseEvent,
    PaymentCaptured,
    PaymentFailed,
    PaymentFailedV1,
    PaymentMethodAdded,
    PaymentMethodRemoved,
    PaymentRequiresAction,
    PaymentSucceeded,
    RefundFailed,
    RefundProcessed,
)
from payment_events.events.privacy import shown_name
from payment_events.events.upcasters import Upcaster, payment_failed_v1_to_v2

__all__ = ["DEFAULT_REGISTRY", "EventRegistry", "default_registry", "schema_uri"]


def schema_uri(event_type: str, schema_version: int) -> str:
    """The URI naming one schema version: the JSON Schema ``$id`` and the CloudEvents ``dataschema``."""
    return f"urn:payment-events:schema:{event_type}:v{schema_version}"


class EventRegistry:
    """Maps ``(eventType, schemaVersion)`` to a model, and each old version to its upcaster."""

    def __init__(self) -> None:
        """An empty registry: add models with :meth:`register`, upcasters with :meth:`register_upcaster`."""
        self._models: dict[tuple[str, int], type[BaseEvent]] = {}
        self._latest: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: type[BaseEvent]) -> type[BaseEvent]:
        """Add ``model`` under its ``EVENT_TYPE`` and ``SCHEMA_VERSION``; refuses a duplicate pair."""
        key = (model.EVENT_TYPE, model.SCHEMA_VERSION)
        if key in self._models:
            msg = f"{model.EVENT_TYPE} v{model.SCHEMA_VERSION} is already registered"
            raise ContractError(msg)
        self._models[key] = model
        self._latest[model.EVENT_TYPE] = max(self._latest.get(model.EVENT_TYPE, 0), model.SCHEMA_VERSION)
        return model

    def register_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Add the function that turns ``event_type`` version ``from_version`` into the next version."""
        self._upcasters[(event_type, from_version)] = upcaster

    def model_for(self, event_type: str, schema_version: int) -> type[BaseEvent]:
        """The model for this pair, or :class:`UnknownEventTypeError` naming what is known."""
        try:
            return self._models[(event_type, schema_version)]
        except KeyError:
            pass
        if event_type not in self._latest:
            known = ", ".join(sorted(self._latest))
            msg = f"unknown eventType {shown_name(event_type)}; known types: {known}"
        else:
            versions = ", ".join(str(v) for v in self.versions(event_type))
            msg = (
                f"unknown schemaVersion {schema_version} of {event_type}; known versions: {versions} "
                "(a newer producer? upgrade payment-events)"
            )
        raise UnknownEventTypeError(msg)

    def is_registered(self, model: type[BaseEvent]) -> bool:
        """Whether ``model`` itself is the registered model for its pair."""
        return self._models.get((model.EVENT_TYPE, model.SCHEMA_VERSION)) is model

    def latest_version(self, event_type: str) -> int:
        """The newest registered version of ``event_type``."""
        try:
            return self._latest[event_type]
        except KeyError:
            msg = f"unknown eventType {shown_name(event_type)}"
            raise UnknownEventTypeError(msg) from None

    def latest_model(self, event_type: str) -> type[BaseEvent]:
        """The model of the newest version of ``event_type``."""
        return self._models[(event_type, self.latest_version(event_type))]

    def event_types(self) -> list[str]:
        """Every registered event type, sorted."""
        return sorted(self._latest)

    def versions(self, event_type: str) -> list[int]:
        """The registered versions of ``event_type``, ascending."""
        return sorted(version for name, version in self._models if name == event_type)

    def models(self) -> list[type[BaseEvent]]:
        """Every registered model, sorted by event type then version."""
        return [self._models[key] for key in sorted(self._models)]

    def upcast(self, data: dict[str, Any]) -> dict[str, Any]:
        """Run the upcasters on the JSON object ``data`` until it is the newest version of its type."""
        event_type, version = data["eventType"], data["schemaVersion"]
        latest = self.latest_version(event_type)
        while version < latest:
            upcaster = self._upcasters.get((event_type, version))
            if upcaster is None:
                msg = f"no upcaster from {event_type} v{version} to v{version + 1}: register one"
                raise UnknownEventTypeError(msg)
            data = upcaster(data)
            if data.get("schemaVersion") != version + 1:
                msg = f"the upcaster of {event_type} v{version} did not produce schemaVersion {version + 1}"
                raise ContractError(msg)
            version += 1
        return data

    def check(self) -> list[str]:
        """Problems with the registry itself: an old version without an upcaster to the next one."""
        problems = []
        for event_type in self.event_types():
            for version in self.versions(event_type)[:-1]:
                if (event_type, version) not in self._upcasters:
                    problems.append(f"{event_type} v{version} has no upcaster to v{version + 1}")
        return problems


def default_registry() -> EventRegistry:
    """A new registry holding this package's events, their old versions and upcasters."""
    registry = EventRegistry()
    for model in (
        PaymentSucceeded,
        PaymentFailedV1,
        PaymentFailed,
        PaymentRequiresAction,
        PaymentCaptured,
        RefundProcessed,
        RefundFailed,
        PaymentMethodAdded,
        PaymentMethodRemoved,
    ):
        registry.register(model)
    registry.register_upcaster("PaymentFailed", 1, payment_failed_v1_to_v2)
    return registry


#: The registry ``encode``/``decode`` use unless given another.
DEFAULT_REGISTRY = default_registry()
