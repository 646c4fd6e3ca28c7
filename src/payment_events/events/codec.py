"""Events to Kafka messages and back: deterministic JSON bytes, the key, CloudEvents 1.0 headers.

The Kafka value is the whole event (envelope and payload) as one JSON object with camelCase keys, sorted,
compact, UTF-8: the same event always gives the same bytes, and a consumer that ignores headers still has
everything. The key is the event's partition key (``paymentId``, or ``userId`` for payment-method
events). Headers follow the CloudEvents Kafka protocol binding, binary content mode: ``ce_specversion``,
``ce_id``, ``ce_source``, ``ce_type``, ``ce_time``, ``content-type``, plus ``ce_dataschema`` (the
schema's URI), the extension ``ce_schemaversion`` and, when the event has one, the W3C ``traceparent``.

``decode`` reads ``eventType`` and ``schemaVersion`` from the value, finds the model in the registry,
validates, upcasts older versions to the newest and returns the newest model. Every failure is a
:class:`~payment_events.errors.SerializationError` or
:class:`~payment_events.errors.UnknownEventTypeError`, chained to the cause, with no payload in the text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, cast

from pydantic import ValidationError

from payment_events.errors import (
    ContractError,
    SensitiveDataError,
    SerializationError,
    UnknownEventTypeError,
)
from payment_events.events import BaseEvent, PaymentEvent
from payment_events.events.envelope import contract_error
from payment_events.events.privacy import shown_name
from payment_events.events.registry import DEFAULT_REGISTRY, EventRegistry, schema_uri

__all__ = ["CONTENT_TYPE", "EncodedEvent", "Headers", "decode", "encode"]

CONTENT_TYPE = "application/json"
_SPECVERSION = b"1.0"
_CONTENT_TYPE_BYTES = CONTENT_TYPE.encode()

#: Kafka headers as a consumer gets them: a mapping or (name, value) pairs; values may be str or None.
Headers: TypeAlias = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]]


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """One event ready for Kafka (or the outbox table): ids, key, value bytes and headers."""

    event_id: str
    event_type: str
    schema_version: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    occurred_at: datetime


_static_headers: dict[type[BaseEvent], tuple[tuple[str, bytes], ...]] = {}


def _headers_of_type(model: type[BaseEvent]) -> tuple[tuple[str, bytes], ...]:
    cached = _static_headers.get(model)
    if cached is None:
        cached = (
            ("ce_type", model.EVENT_TYPE.encode()),
            ("content-type", _CONTENT_TYPE_BYTES),
            ("ce_dataschema", schema_uri(model.EVENT_TYPE, model.SCHEMA_VERSION).encode()),
            ("ce_schemaversion", str(model.SCHEMA_VERSION).encode()),
        )
        _static_headers[model] = cached
    return cached


def encode(event: BaseEvent, *, registry: EventRegistry = DEFAULT_REGISTRY) -> EncodedEvent:
    """Turn ``event`` into its Kafka key, value and headers. Same event, same bytes.

    Refuses (:class:`UnknownEventTypeError`) an event whose class is not in ``registry``, so nothing is
    produced that ``decode`` could not read back.
    """
    model = type(event)
    if not registry.is_registered(model):
        msg = f"{model.__name__} is not a registered event model: register it before encoding"
        raise UnknownEventTypeError(msg)
    data = event.model_dump(mode="json", by_alias=True)
    value = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    event_id: str = data["eventId"]
    headers = (
        ("ce_specversion", _SPECVERSION),
        ("ce_id", event_id.encode()),
        ("ce_source", data["source"].encode()),
        ("ce_time", data["eventTimestamp"].encode()),
        *_headers_of_type(model),
    )
    if event.traceparent is not None:
        headers = (*headers, ("traceparent", event.traceparent.encode()))
    return EncodedEvent(
        event_id=event_id,
        event_type=model.EVENT_TYPE,
        schema_version=model.SCHEMA_VERSION,
        key=event.partition_key.encode(),
        value=value,
        headers=headers,
        occurred_at=event.event_timestamp,
    )


def _refuse_constant(name: str) -> None:
    msg = f"{name} is not valid JSON"
    raise ValueError(msg)


def _header_dict(headers: Headers) -> dict[str, bytes]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    result = {}
    for name, raw in pairs:
        if raw is None:
            continue
        if isinstance(raw, str):
            result[name] = raw.encode()
        elif isinstance(raw, bytes | bytearray | memoryview):
            result[name] = bytes(raw)
        else:
            msg = f"header {shown_name(name)} is a {type(raw).__name__}"
            raise TypeError(msg)
    return result


def _check_headers(headers: Headers, data: dict[str, Any]) -> None:
    try:
        present = _header_dict(headers)
    except (TypeError, ValueError, AttributeError) as exc:
        msg = "headers must be a mapping or (name, bytes) pairs"
        raise SerializationError(msg) from exc
    expected = {
        "ce_specversion": _SPECVERSION,
        "ce_type": str(data["eventType"]).encode(),
        "ce_id": str(data.get("eventId")).encode(),
    }
    for name, value in expected.items():
        if name in present and present[name] != value:
            msg = f"header {name} disagrees with the event in the value: refusing an ambiguous message"
            raise SerializationError(msg)


def decode(
    value: bytes, headers: Headers | None = None, *, registry: EventRegistry = DEFAULT_REGISTRY
) -> PaymentEvent:
    """Turn a Kafka value (and optionally its headers) back into the newest model of its event type.

    Old versions are validated against their own model, then upcast. ``headers``, when given, must agree
    with the value (``ce_id``, ``ce_type``, ``ce_specversion``); the value alone is authoritative.
    """
    if not isinstance(value, bytes | bytearray | memoryview):
        msg = f"value must be bytes, not {type(value).__name__}"
        raise SerializationError(msg)
    try:
        data = json.loads(bytes(value), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        msg = "value is not UTF-8 JSON: it was not produced by payment_events.events.codec.encode"
        raise SerializationError(msg) from exc
    if not isinstance(data, dict):
        msg = f"value must be a JSON object, not a JSON {type(data).__name__}"
        raise SerializationError(msg)
    event_type, version = data.get("eventType"), data.get("schemaVersion")
    if not isinstance(event_type, str):
        msg = "value has no string eventType: it is not a payment event"
        raise SerializationError(msg)
    if type(version) is not int:
        msg = f"event of type {shown_name(event_type)} has no integer schemaVersion"
        raise SerializationError(msg)
    if headers is not None:
        _check_headers(headers, data)
    model = registry.model_for(event_type, version)
    event = _validate(model, data)
    latest = registry.latest_version(event_type)
    if version != latest:
        try:
            upcast = registry.upcast(data)
        except ContractError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"upcasting {event_type} v{version} to v{latest} failed"
            raise SerializationError(msg) from exc
        event = _validate(registry.latest_model(event_type), upcast)
    return cast(PaymentEvent, event)


def _validate(model: type[BaseEvent], data: dict[str, Any]) -> BaseEvent:
    try:
        return model.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        error = contract_error(f"{model.EVENT_TYPE} v{model.SCHEMA_VERSION}", exc, data, model)
        msg = f"cannot decode: {error}"
        if isinstance(error, SensitiveDataError):
            raise SerializationError(msg) from error
        raise SerializationError(msg) from exc
