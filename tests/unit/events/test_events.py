"""The eight events and their envelope: defaults, wire names, partition keys and every kind of bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from payment_events.errors import ContractError, InvalidEventError, SensitiveDataError
from payment_events.events import (
    CURRENT_EVENT_CLASSES,
    ActionRequiredDetails,
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
from payment_events.events.examples import example_event, example_fields
from payment_events.events.ids import is_uuid7

ALL_MODELS: list[type[BaseEvent]] = [*CURRENT_EVENT_CLASSES, PaymentFailedV1]
CARD = "4111111111111111"

# Every string field of every event (wire name -> python name), to hide card numbers in.
STRING_FIELDS: list[tuple[type[BaseEvent], str]] = [
    (model, name)
    for model in ALL_MODELS
    for name in model.model_fields
    if isinstance(example_fields(model).get(name), str)
    and name != "traceparent"  # tracing metadata: a bad one is dropped, not refused (test below)
]


EventT = TypeVar("EventT", bound=BaseEvent)


def build(model: type[EventT], **changes: Any) -> EventT:
    """A valid example of ``model`` with ``changes`` applied (a value of ``...`` drops the field)."""
    fields = {**example_fields(model), **changes}
    return model(**{name: value for name, value in fields.items() if value is not ...})


def test_there_are_eight_current_events() -> None:
    """The spec's eight event types each have one current model."""
    assert [model.EVENT_TYPE for model in CURRENT_EVENT_CLASSES] == [
        "PaymentSucceeded",
        "PaymentFailed",
        "PaymentRequiresAction",
        "PaymentCaptured",
        "RefundProcessed",
        "RefundFailed",
        "PaymentMethodAdded",
        "PaymentMethodRemoved",
    ]


@pytest.mark.parametrize("model", ALL_MODELS)
def test_envelope_defaults(model: type[BaseEvent]) -> None:
    """Without envelope arguments an event gets a fresh UUIDv7, the current UTC time, the default source."""
    fields = {k: v for k, v in example_fields(model).items() if k not in {"event_id", "event_timestamp"}}
    before = datetime.now(UTC)
    event = model(**fields)
    assert is_uuid7(event.event_id)
    assert before <= event.event_timestamp <= datetime.now(UTC)
    assert event.event_timestamp.tzinfo is UTC
    assert event.event_type == model.EVENT_TYPE
    assert event.schema_version == model.SCHEMA_VERSION
    assert event.source == "payment-service"


@pytest.mark.parametrize("model", ALL_MODELS)
def test_wire_names_are_camel_case(model: type[BaseEvent]) -> None:
    """Serialised by alias, every key is camelCase; the Python names are snake_case."""
    data = example_event(model).model_dump(mode="json", by_alias=True)
    assert {"eventId", "eventType", "schemaVersion", "eventTimestamp", "source"} <= set(data)
    for key in data:
        assert "_" not in key
    for name in model.model_fields:
        assert name == name.lower()


@pytest.mark.parametrize(
    ("model", "key"),
    [
        (PaymentSucceeded, "pay_01HQZ8K2"),
        (PaymentFailed, "pay_01HQZ8K2"),
        (PaymentRequiresAction, "pay_01HQZ8K2"),
        (PaymentCaptured, "pay_01HQZ8K2"),
        (RefundProcessed, "pay_01HQZ8K2"),
        (RefundFailed, "pay_01HQZ8K2"),
        (PaymentMethodAdded, "usr_8812"),
        (PaymentMethodRemoved, "usr_8812"),
    ],
)
def test_partition_keys(model: type[BaseEvent], key: str) -> None:
    """Payment and refund events are keyed by paymentId; payment-method events by userId."""
    assert example_event(model).partition_key == key


def test_events_are_frozen() -> None:
    """An event cannot be changed after construction."""
    event = example_event(PaymentSucceeded)
    with pytest.raises(ValidationError, match="frozen"):
        event.amount_paid = 1  # type: ignore[misc]


def test_wire_names_are_accepted_too() -> None:
    """An event can be built from camelCase wire names as well as snake_case names."""
    data = example_event(PaymentSucceeded).model_dump(mode="json", by_alias=True)
    assert PaymentSucceeded.model_validate(data) == example_event(PaymentSucceeded)


def test_timestamps_are_normalised_to_utc() -> None:
    """A timestamp with another offset is stored as the same instant in UTC."""
    paris = timezone(timedelta(hours=1))
    event = build(PaymentSucceeded, processed_at=datetime(2026, 1, 31, 13, 0, tzinfo=paris))
    assert event.processed_at == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert event.processed_at.tzinfo is UTC


def test_timestamp_strings_are_parsed() -> None:
    """An RFC 3339 string with an offset is accepted and normalised."""
    event = build(PaymentSucceeded, processed_at="2026-01-31T14:00:00+02:00")
    assert event.processed_at == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"processed_at": datetime(2026, 1, 31, 12, 0)}, "processedAt: Value error, naive datetime"),  # noqa: DTZ001
        ({"event_timestamp": datetime(2026, 1, 31, 12, 0)}, "eventTimestamp: Value error, naive datetime"),  # noqa: DTZ001
        ({"processed_at": "2026-01-31T12:00:00"}, "naive datetime"),
        ({"processed_at": 1_769_860_800}, "expected an ISO 8601 / RFC 3339 timestamp"),
        ({"processed_at": "yesterday"}, "processedAt: Input should be a valid datetime"),
        (
            {"processed_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
            "timestamp out of range",
        ),
        ({"amount_paid": 19.99}, "amountPaid: Input should be a valid integer"),
        ({"amount_paid": 1999.0}, "amountPaid: Input should be a valid integer"),
        ({"amount_paid": "1999"}, "amountPaid: Input should be a valid integer"),
        ({"amount_paid": True}, "amountPaid: Input should be a valid integer"),
        ({"amount_paid": 0}, "amountPaid: Input should be greater than 0"),
        ({"amount_paid": -5}, "amountPaid: Input should be greater than 0"),
        ({"amount_paid": 2**53}, "amountPaid: Input should be less than or equal to"),
        ({"currency": "XYZ"}, "currency: Value error, unknown currency 'XYZ'"),
        ({"currency": "eur"}, "unknown currency 'eur'"),
        ({"currency": "EURO"}, "currency: String should have at most 3 characters"),
        ({"currency": 978}, "currency: Input should be a valid string"),
        ({"payment_id": 123}, "paymentId: Input should be a valid string"),
        ({"payment_id": ""}, "paymentId: String should have at least 1 character"),
        ({"payment_id": "p" * 129}, "paymentId: String should have at most 128 characters"),
        ({"payment_id": "pay 1"}, "paymentId: String should match pattern"),
        ({"payment_id": ...}, "paymentId: Field required"),
        ({"order_id": None}, "orderId: Input should be a valid string"),
        ({"cvv": "123"}, "cvv: Extra inputs are not permitted"),
        ({"card_number": "x"}, "card_number: Extra inputs are not permitted"),
        ({"event_id": "not-a-uuid"}, "eventId: Input should be a valid UUID"),
        ({"event_id": uuid4()}, "eventId must be a UUIDv7"),
        ({"event_id": "01936f2e-8a4b-4c3d-9e1f-2a3b4c5d6e7f"}, "eventId must be a UUIDv7"),
        ({"event_type": "PaymentFailed"}, "eventType: Input should be 'PaymentSucceeded'"),
        ({"schema_version": 2}, "schemaVersion: Input should be 1"),
        ({"payment_gateway": "Stripe"}, "paymentGateway: String should match pattern"),
        ({"source": ""}, "source: String should have at least 1 character"),
        ({"correlation_id": "a b"}, "correlationId: String should match pattern"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(changes: dict[str, Any], problem: str) -> None:
    """Each kind of bad input raises InvalidEventError naming the field and the problem."""
    with pytest.raises(InvalidEventError) as caught:
        build(PaymentSucceeded, **changes)
    assert problem in str(caught.value)
    assert any(problem.split(":", maxsplit=1)[0] in line for line in caught.value.problems)
    assert isinstance(caught.value, ContractError)
    assert isinstance(caught.value, ValueError)


def test_several_problems_are_all_reported() -> None:
    """All problems of one event are reported at once."""
    with pytest.raises(InvalidEventError) as caught:
        build(PaymentSucceeded, amount_paid=1.5, currency="ABC", processed_at=...)
    assert len(caught.value.problems) == 3


def test_failure_reason_is_length_limited() -> None:
    """Free text is limited to 500 characters."""
    build(PaymentFailed, failure_reason="x" * 500)
    with pytest.raises(InvalidEventError, match="failureReason: String should have at most 500 characters"):
        build(PaymentFailed, failure_reason="x" * 501)


def test_failure_reason_refuses_control_characters() -> None:
    """Free text cannot carry newlines or other control characters (log injection)."""
    with pytest.raises(InvalidEventError, match="failureReason: String should match pattern"):
        build(PaymentFailed, failure_reason="declined\nFAKE LOG LINE")


def test_failure_reason_refuses_lone_surrogates() -> None:
    """Text that cannot be encoded as UTF-8 is refused at construction, not at encoding."""
    with pytest.raises(InvalidEventError, match="failureReason"):
        build(PaymentFailed, failure_reason="bad \ud800 text")


def test_failure_reason_accepts_unicode() -> None:
    """Non-ASCII text is fine."""
    assert build(PaymentFailed, failure_reason="Carte refusée par la banque — 残高不足").failure_reason


def test_retryable_is_optional_and_strictly_boolean() -> None:
    """PaymentFailed v2's retryable defaults to None and refuses non-booleans."""
    assert build(PaymentFailed, retryable=...).retryable is None
    assert build(PaymentFailed, retryable=True).retryable is True
    with pytest.raises(InvalidEventError, match="retryable: Input should be a valid boolean"):
        build(PaymentFailed, retryable="yes")


def test_v1_has_no_retryable() -> None:
    """PaymentFailed v1 has no retryable field: extra fields are refused."""
    with pytest.raises(InvalidEventError, match="retryable: Extra inputs are not permitted"):
        build(PaymentFailedV1, retryable=True)


def _name(value: object) -> str:
    return str(getattr(value, "__name__", value))


@pytest.mark.parametrize(("model", "field"), STRING_FIELDS, ids=_name)
@pytest.mark.parametrize("shape", ["{}", "x{}x", "{spaced}", "{dashed}", "id_{dashed}"])
def test_card_numbers_hidden_in_any_string_field_are_refused(
    model: type[BaseEvent], field: str, shape: str
) -> None:
    """A card number in any string field raises SensitiveDataError naming the field, never the digits."""
    spaced = " ".join(CARD[i : i + 4] for i in range(0, 16, 4))
    value = shape.format(CARD, spaced=spaced, dashed=spaced.replace(" ", "-"))
    with pytest.raises(SensitiveDataError) as caught:
        build(model, **{field: value})
    wire_name = model.model_fields[field].alias
    assert f"'{wire_name}'" in str(caught.value)
    error = caught.value
    text = str(error) + repr(error) + str(error.__cause__) + str(error.__context__)
    assert "4111" not in text
    assert "1111" not in text


def test_card_number_in_a_nested_field_names_the_path() -> None:
    """A card number in the nested redirect URL names the dotted path."""
    details = {"type": "redirect_to_url", "redirect_url": f"https://pay.example.com/x?ref={CARD}"}
    with pytest.raises(SensitiveDataError, match=r"'actionRequiredDetails\.redirectUrl'") as caught:
        build(PaymentRequiresAction, action_required_details=details)
    assert CARD not in str(caught.value)


def test_card_number_as_a_field_name_is_not_echoed() -> None:
    """An unknown field named like a card number is refused without echoing it, not even in the cause."""
    with pytest.raises(SensitiveDataError) as caught:
        build(PaymentSucceeded, **{CARD: "x"})
    assert caught.value.__cause__ is None
    assert CARD not in str(caught.value)


def test_pydantic_errors_do_not_echo_card_numbers() -> None:
    """model_validate raises pydantic's ValidationError, whose text never contains the input value."""
    data = example_event(PaymentFailed).model_dump(by_alias=True)
    data["failureReason"] = f"card {CARD} declined"
    with pytest.raises(ValidationError) as caught:
        PaymentFailed.model_validate(data)
    assert "failureReason" in str(caught.value)
    assert CARD not in str(caught.value)
    assert "4111" not in str(caught.value)


def test_pydantic_errors_hide_other_inputs_too() -> None:
    """Validation errors never contain input values (payload data stays out of logs)."""
    with pytest.raises(InvalidEventError) as caught:
        build(PaymentFailed, order_id="secret order name with spaces")
    assert "secret order name" not in str(caught.value)
    assert "secret order name" not in str(caught.value.__cause__)


@pytest.mark.parametrize("text", ["CVV 123 was wrong", "cvc: 4567", "client pi_3N_secret_abcdefgh12 leaked"])
def test_cvv_and_secrets_in_free_text_are_refused(text: str) -> None:
    """A CVV value or a secret in failureReason raises SensitiveDataError."""
    with pytest.raises(SensitiveDataError, match="'failureReason'") as caught:
        build(PaymentFailed, failure_reason=text)
    assert "123" not in str(caught.value)
    assert "4567" not in str(caught.value)


def test_card_last_four_is_exactly_four_digits() -> None:
    """cardLastFour accepts four digits and nothing else."""
    assert build(PaymentMethodAdded, card_last_four="0007").card_last_four == "0007"
    fullwidth = "\uff11\uff12\uff13\uff14"  # digits, but not ASCII digits
    for bad in ["123", "12345", "12a4", fullwidth, 4242]:
        with pytest.raises(InvalidEventError, match="cardLastFour"):
            build(PaymentMethodAdded, card_last_four=bad)


def test_cards_need_brand_and_last_four() -> None:
    """A card payment method must say its brand and last four; other kinds need not."""
    with pytest.raises(InvalidEventError, match="type card needs cardBrand and cardLastFour"):
        build(PaymentMethodAdded, card_last_four=None)
    event = build(PaymentMethodAdded, type="paypal", card_brand=None, card_last_four=None)
    assert event.type == "paypal"


def test_unknown_payment_method_type_is_refused() -> None:
    """The payment method type is a closed list."""
    with pytest.raises(InvalidEventError, match="type: Input should be 'card'"):
        build(PaymentMethodAdded, type="crypto")


@pytest.mark.parametrize(
    ("details", "error", "problem"),
    [
        ({"type": "redirect_to_url"}, InvalidEventError, "type redirect_to_url needs a redirectUrl"),
        ({"type": "redirect_to_url", "redirect_url": "http://x.example/"}, InvalidEventError, "pattern"),
        ({"type": "teleport"}, InvalidEventError, "Input should be 'redirect_to_url'"),
        (
            {"type": "redirect_to_url", "redirect_url": "https://x.example/?client_secret=abc"},
            SensitiveDataError,
            "secret-looking query parameter",
        ),
        (
            {"type": "redirect_to_url", "redirect_url": "https://x.example/" + "a" * 2100},
            InvalidEventError,
            "2048",
        ),
    ],
)
def test_action_details_are_validated(details: dict[str, Any], error: type[Exception], problem: str) -> None:
    """Redirect actions need an https URL free of secrets."""
    with pytest.raises(error, match=problem):
        build(PaymentRequiresAction, action_required_details=details)


def test_action_details_can_be_a_model_or_a_dict() -> None:
    """The nested details accept the model or its fields."""
    details = ActionRequiredDetails(type="three_d_secure")
    assert build(PaymentRequiresAction, action_required_details=details).action_required_details == details
    as_dict = build(PaymentRequiresAction, action_required_details={"type": "three_d_secure"})
    assert as_dict.action_required_details == details


def test_envelope_fields_can_be_set() -> None:
    """eventId, source, correlationId and traceparent can be given explicitly."""
    event_id = UUID("019c1427-6d23-7a5e-9c4b-3f2e1d0c9b8a")
    event = build(PaymentCaptured, event_id=event_id, source="checkout-api", correlation_id="saga:42")
    assert event.event_id == event_id
    assert event.source == "checkout-api"
    assert event.correlation_id == "saga:42"
    assert event.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_model_validate_does_not_echo_a_card_number_used_as_a_field_name() -> None:
    """Even pydantic's own error from model_validate does not contain a card number given as a key."""
    data = {**example_event(PaymentSucceeded).model_dump(), f"x{CARD}": 1}
    with pytest.raises(ValidationError) as caught:
        PaymentSucceeded.model_validate(data)
    assert "(a field name)" in str(caught.value)
    assert CARD not in str(caught.value)


@pytest.mark.parametrize(
    "traceparent",
    [
        "not-a-trace",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        42,
        "4111111111111111",
        "00-4111111111111111-4111111111111111-01",
    ],
)
def test_malformed_traceparent_is_dropped_with_a_warning(
    traceparent: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad inbound traceparent never fails the payment's event: it is dropped and a warning logged
    (without the value)."""
    with caplog.at_level("WARNING", logger="payment_events.events"):
        event = build(PaymentSucceeded, traceparent=traceparent)
    assert event.traceparent is None
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "event.traceparent_dropped"]
    assert str(traceparent) not in record.getMessage()
    assert "4111" not in record.getMessage() + repr(record.__dict__)
