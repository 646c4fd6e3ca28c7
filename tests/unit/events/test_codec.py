"""The codec: deterministic bytes, key, CloudEvents headers, decoding through the registry, our errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from payment_events.errors import SerializationError, UnknownEventTypeError
from payment_events.events import (
    CURRENT_EVENT_CLASSES,
    BaseEvent,
    PaymentFailed,
    PaymentFailedV1,
    PaymentMethodAdded,
    PaymentSucceeded,
)
from payment_events.events.codec import EncodedEvent, decode, encode
from payment_events.events.examples import example_event
from payment_events.events.registry import DEFAULT_REGISTRY, EventRegistry

CARD = "4111111111111111"


def wire(model: type[BaseEvent] = PaymentSucceeded) -> dict[str, Any]:
    """The JSON object of an example event, to corrupt."""
    loaded: dict[str, Any] = json.loads(encode(example_event(model)).value)
    return loaded


def raw(data: object) -> bytes:
    """JSON bytes of anything."""
    return json.dumps(data).encode()


def test_encoded_value_is_canonical_json() -> None:
    """The value is compact JSON with sorted keys, the envelope and payload in one object."""
    encoded = encode(example_event(PaymentSucceeded))
    data = json.loads(encoded.value)
    assert encoded.value == json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    assert data["eventType"] == "PaymentSucceeded"
    assert data["schemaVersion"] == 1
    assert data["amountPaid"] == 1999
    assert data["currency"] == "EUR"
    assert data["eventTimestamp"] == "2026-01-31T12:00:00.123456Z"


def test_the_exact_bytes_of_an_event() -> None:
    """The bytes of the example PaymentMethodRemoved are exactly these (a change here breaks consumers)."""
    encoded = encode(example_event(CURRENT_EVENT_CLASSES[-1]))
    assert encoded.value == (
        b'{"correlationId":"req_7f3a9c","eventId":"019c1427-6d23-7a5e-9c4b-3f2e1d0c9b8a",'
        b'"eventTimestamp":"2026-01-31T12:00:00.123456Z","eventType":"PaymentMethodRemoved",'
        b'"paymentMethodId":"pm_1Nv0","schemaVersion":1,"source":"payment-service",'
        b'"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","userId":"usr_8812"}'
    )


def test_non_ascii_text_is_utf8() -> None:
    """Non-ASCII text is written as UTF-8, not as escapes."""
    fields = example_event(PaymentFailed).model_dump(by_alias=False)
    event = PaymentFailed(**{**fields, "failure_reason": "refusée"})
    assert "refusée".encode() in encode(event).value


@pytest.mark.parametrize("model", CURRENT_EVENT_CLASSES)
def test_encoded_fields(model: type[BaseEvent]) -> None:
    """The encoded event carries the id, type, version, key and occurrence time of the event."""
    event = example_event(model)
    encoded = encode(event)
    assert isinstance(encoded, EncodedEvent)
    assert encoded.event_id == str(event.event_id)
    assert encoded.event_type == model.EVENT_TYPE
    assert encoded.schema_version == model.SCHEMA_VERSION
    assert encoded.key == event.partition_key.encode()
    assert encoded.occurred_at == event.event_timestamp


def test_cloudevents_headers() -> None:
    """The CloudEvents 1.0 binary-mode headers, the schema and the traceparent are set."""
    event = example_event(PaymentFailed)
    headers = dict(encode(event).headers)
    assert headers == {
        "ce_specversion": b"1.0",
        "ce_id": str(event.event_id).encode(),
        "ce_source": b"payment-service",
        "ce_type": b"PaymentFailed",
        "ce_time": b"2026-01-31T12:00:00.123456Z",
        "content-type": b"application/json",
        "ce_dataschema": b"urn:payment-events:schema:PaymentFailed:v2",
        "ce_schemaversion": b"2",
        "traceparent": b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    assert len(encode(event).headers) == len(headers)  # no duplicates


def test_no_traceparent_header_without_traceparent() -> None:
    """The traceparent header is only present when the event has one."""
    fields = example_event(PaymentSucceeded).model_dump(by_alias=False)
    event = PaymentSucceeded(**{**fields, "traceparent": None})
    assert "traceparent" not in dict(encode(event).headers)


def test_encode_refuses_unregistered_models() -> None:
    """An event class that is not in the registry cannot be encoded (it could not be decoded)."""
    with pytest.raises(UnknownEventTypeError, match="not a registered event model"):
        encode(example_event(PaymentSucceeded), registry=EventRegistry())


@pytest.mark.parametrize("model", CURRENT_EVENT_CLASSES)
def test_decode_returns_an_equal_event(model: type[BaseEvent]) -> None:
    """Decoding the encoded bytes (with or without headers) gives back an equal event."""
    event = example_event(model)
    encoded = encode(event)
    assert decode(encoded.value) == event
    assert decode(encoded.value, encoded.headers) == event
    assert decode(encoded.value, dict(encoded.headers)) == event
    assert type(decode(encoded.value)) is model


def test_decode_accepts_kafka_style_headers() -> None:
    """Headers as confluent-kafka returns them (a list, str or None values) are accepted."""
    encoded = encode(example_event(PaymentSucceeded))
    headers: list[tuple[str, bytes | str | None]] = [(k, v.decode()) for k, v in encoded.headers]
    headers.append(("unrelated", None))
    assert decode(encoded.value, headers) == example_event(PaymentSucceeded)


def test_decode_upcasts_payment_failed_v1() -> None:
    """A PaymentFailed v1 message decodes as a v2 event with retryable unknown."""
    old = example_event(PaymentFailedV1)
    decoded = decode(encode(old).value)
    assert isinstance(decoded, PaymentFailed)
    assert decoded.schema_version == 2
    assert decoded.retryable is None
    assert decoded.event_id == old.event_id
    assert decoded.failure_reason == old.failure_reason
    assert decoded.model_dump(exclude={"schema_version", "retryable"}) == old.model_dump(
        exclude={"schema_version"}
    )


def test_decode_validates_v1_against_the_v1_model() -> None:
    """A v1 message carrying a v2-only field is refused: it is not a valid v1 event."""
    data = {**wire(PaymentFailedV1), "retryable": True}
    with pytest.raises(SerializationError, match=r"PaymentFailed v1.*retryable: Extra inputs"):
        decode(raw(data))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"\xff\xfe\x00", "not UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object, not a JSON list"),
        (b'"PaymentSucceeded"', "must be a JSON object"),
        (b"{}", "no string eventType"),
        (b'{"eventType": 5}', "no string eventType"),
        (b'{"eventType": "PaymentSucceeded"}', "no integer schemaVersion"),
        (b'{"eventType": "PaymentSucceeded", "schemaVersion": "1"}', "no integer schemaVersion"),
        (b'{"eventType": "PaymentSucceeded", "schemaVersion": true}', "no integer schemaVersion"),
        (b'{"eventType": "PaymentSucceeded", "schemaVersion": 1.0}', "no integer schemaVersion"),
        (b'{"eventType": "PaymentSucceeded", "schemaVersion": 1, "amountPaid": NaN}', "not UTF-8 JSON"),
        (b"[" * 100_000, "not UTF-8 JSON"),
        (b'{"a": ' + b"1" * 5000 + b"}", "not UTF-8 JSON"),
    ],
)
def test_undecodable_bytes_raise_serialization_error(value: bytes, message: str) -> None:
    """Bytes that are not an event object raise SerializationError with a cause, never a bare error."""
    with pytest.raises(SerializationError, match=message) as caught:
        decode(value)
    assert not isinstance(caught.value, UnknownEventTypeError)


def test_decode_refuses_non_bytes() -> None:
    """Only bytes-like values are decoded."""
    with pytest.raises(SerializationError, match="value must be bytes, not str"):
        decode("{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event_type", "version", "message"),
    [
        ("PaymentExploded", 1, "unknown eventType 'PaymentExploded'; known types: PaymentCaptured"),
        ("PaymentSucceeded", 2, "unknown schemaVersion 2 of PaymentSucceeded; known versions: 1"),
        ("PaymentFailed", 3, "known versions: 1, 2"),
        ("PaymentFailed", 0, "unknown schemaVersion 0"),
    ],
)
def test_unknown_type_or_version(event_type: str, version: int, message: str) -> None:
    """An unknown (eventType, schemaVersion) raises UnknownEventTypeError naming what is known."""
    data = {**wire(), "eventType": event_type, "schemaVersion": version}
    with pytest.raises(UnknownEventTypeError, match=message):
        decode(raw(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amountPaid": 19.99}, "amountPaid: Input should be a valid integer"),
        ({"amountPaid": "1999"}, "amountPaid: Input should be a valid integer"),
        ({"amountPaid": -1}, "amountPaid: Input should be greater than 0"),
        ({"currency": "XXX"}, "currency: Value error, unknown currency"),
        ({"processedAt": "2026-01-31T12:00:00"}, "processedAt: Value error, naive datetime"),
        ({"eventId": "nope"}, "eventId: Input should be a valid UUID"),
        ({"paymentId": None}, "paymentId: Input should be a valid string"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"payment_id": "x"}, "payment_id: Extra inputs are not permitted"),
        ({"failureReason": "x"}, "failureReason: Extra inputs are not permitted"),
    ],
)
def test_invalid_payloads_raise_serialization_error(change: dict[str, Any], message: str) -> None:
    """A payload breaking its model raises SerializationError naming the field (wire names only)."""
    with pytest.raises(SerializationError, match=f"cannot decode: invalid PaymentSucceeded v1: .*{message}"):
        decode(raw({**wire(), **change}))


def test_missing_field_is_named() -> None:
    """A payload without a required field names it."""
    data = wire()
    del data["orderId"]
    with pytest.raises(SerializationError, match="orderId: Field required"):
        decode(raw(data))


def test_decoding_a_card_number_does_not_echo_it() -> None:
    """A payload with a card number raises SerializationError naming the field; no digits anywhere."""
    data = {**wire(), "orderId": f"{CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]}"}
    with pytest.raises(SerializationError, match="'orderId' looks like it contains a card number") as caught:
        decode(raw(data))
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert all("4111" not in str(item) for item in chain)


def test_decoding_errors_never_echo_payload_values() -> None:
    """Invalid payload values do not appear in the error message or its cause."""
    data = {**wire(), "orderId": "private order note with spaces"}
    with pytest.raises(SerializationError) as caught:
        decode(raw(data))
    assert "private order note" not in str(caught.value)
    assert "private order note" not in str(caught.value.__cause__)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("ce_type", b"PaymentFailed"),
        ("ce_id", b"019c1427-0000-7000-8000-000000000000"),
        ("ce_specversion", b"0.3"),
    ],
)
def test_headers_that_disagree_with_the_value_are_refused(header: str, value: bytes) -> None:
    """Headers contradicting the value make the message ambiguous: refused."""
    encoded = encode(example_event(PaymentSucceeded))
    headers = {**dict(encoded.headers), header: value}
    with pytest.raises(SerializationError, match=f"header {header} disagrees"):
        decode(encoded.value, headers)


def test_malformed_headers_are_refused() -> None:
    """Headers that are neither a mapping nor pairs raise SerializationError."""
    encoded = encode(example_event(PaymentSucceeded))
    with pytest.raises(SerializationError, match="headers must be"):
        decode(encoded.value, [("ce_id", 5)])  # type: ignore[list-item]


def test_decode_with_a_custom_registry() -> None:
    """decode uses the registry it is given: a type missing there is unknown."""
    registry = EventRegistry()
    registry.register(PaymentMethodAdded)
    encoded = encode(example_event(PaymentMethodAdded), registry=registry)
    assert decode(encoded.value, registry=registry) == example_event(PaymentMethodAdded)
    with pytest.raises(UnknownEventTypeError):
        decode(encode(example_event(PaymentSucceeded)).value, registry=registry)


def test_upcaster_missing_is_reported() -> None:
    """An old version without an upcaster to the next one cannot be decoded, and the registry says so."""
    registry = EventRegistry()
    registry.register(PaymentFailedV1)
    registry.register(PaymentFailed)
    assert registry.check() == ["PaymentFailed v1 has no upcaster to v2"]
    with pytest.raises(UnknownEventTypeError, match="no upcaster from PaymentFailed v1 to v2"):
        decode(encode(example_event(PaymentFailedV1), registry=registry).value, registry=registry)


def test_default_registry_is_complete() -> None:
    """The default registry knows nine models (eight types, PaymentFailed twice) and has every upcaster."""
    assert DEFAULT_REGISTRY.check() == []
    assert len(DEFAULT_REGISTRY.models()) == 9
    assert DEFAULT_REGISTRY.versions("PaymentFailed") == [1, 2]
    assert DEFAULT_REGISTRY.latest_model("PaymentFailed") is PaymentFailed


def test_occurred_at_is_utc() -> None:
    """occurred_at is the event timestamp, timezone-aware UTC."""
    encoded = encode(example_event(PaymentSucceeded))
    assert encoded.occurred_at == datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)


def test_payment_failed_upcaster_leaves_its_input_alone() -> None:
    """The v1 -> v2 upcaster returns a new object with schemaVersion 2 and retryable null."""
    from payment_events.events.upcasters import payment_failed_v1_to_v2

    old = wire(PaymentFailedV1)
    before = dict(old)
    new = payment_failed_v1_to_v2(old)
    assert old == before
    assert new == {**before, "schemaVersion": 2, "retryable": None}
