"""Property: every valid event of every type survives encode -> decode unchanged, with stable bytes."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from payment_events.errors import PaymentEventsError
from payment_events.events import (
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
from payment_events.events.codec import decode, encode
from payment_events.events.money import CURRENCY_EXPONENTS, MAX_MINOR_UNITS
from payment_events.events.privacy import contains_card_number, contains_cvv, contains_secret


def _clean(text: str) -> bool:
    return not (contains_card_number(text) or contains_cvv(text) or contains_secret(text))


identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,40}", fullmatch=True).filter(_clean)
optional_ids = st.none() | identifiers
codes = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True).filter(_clean)
gateways = st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,31}", fullmatch=True).filter(_clean)
free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=500
).filter(_clean)
amounts = st.integers(min_value=1, max_value=MAX_MINOR_UNITS)
currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# Hypothesis wants naive bounds and adds the timezone itself.
instants = st.datetimes(
    min_value=datetime(1971, 1, 1),  # noqa: DTZ001
    max_value=datetime(2999, 12, 31),  # noqa: DTZ001
    timezones=offsets | st.just(UTC),
)
uuid7s = st.integers(min_value=0, max_value=2**128 - 1).map(
    lambda n: UUID(int=(n & ~(0xF << 76) & ~(0b11 << 62)) | (0x7 << 76) | (0b10 << 62))
)
hex_digits = "0123456789abcdef"
traceparents = st.builds(
    lambda trace, parent, flags: f"00-{trace}-{parent}-{flags}",
    st.text(hex_digits, min_size=32, max_size=32).filter(lambda t: t != "0" * 32),
    st.text(hex_digits, min_size=16, max_size=16).filter(lambda p: p != "0" * 16),
    st.text(hex_digits, min_size=2, max_size=2),
)
sources = st.from_regex(r"[a-z][a-z0-9\-]{0,30}", fullmatch=True)
urls = st.builds(
    lambda host, path, session: f"https://{host}.example/{path}?session={session}",
    st.text(string.ascii_lowercase, min_size=1, max_size=20),
    st.text(string.ascii_letters + string.digits + "/-_", max_size=40),
    st.text(string.ascii_letters + string.digits, min_size=1, max_size=20),
).filter(_clean)

envelope: dict[str, Any] = {
    "event_id": uuid7s,
    "event_timestamp": instants,
    "source": sources,
    "correlation_id": optional_ids,
    "traceparent": st.none() | traceparents,
}


def events_of(model: type[BaseEvent], **fields: Any) -> st.SearchStrategy[BaseEvent]:
    """Valid events of ``model``: random envelope plus the given field strategies."""
    # fixed_dictionaries, not st.builds: builds would also try to infer strategies from the annotations.
    return st.fixed_dictionaries({**envelope, **fields}).map(lambda kwargs: model(**kwargs))


payment = {"payment_id": identifiers, "order_id": identifiers, "user_id": optional_ids}
failure = {
    **payment,
    "amount": amounts,
    "currency": currencies,
    "failure_reason": free_text,
    "gateway_error_code": st.none() | codes,
    "failed_at": instants,
}
action_details = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("redirect_to_url"), "redirect_url": urls, "expires_at": st.none() | instants}
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["three_d_secure", "use_sdk", "verify_with_microdeposits", "other"]),
            "redirect_url": st.none() | urls,
            "expires_at": st.none() | instants,
        }
    ),
).map(lambda kwargs: ActionRequiredDetails(**kwargs))
card_methods = events_of(
    PaymentMethodAdded,
    payment_method_id=identifiers,
    user_id=identifiers,
    type=st.just("card"),
    card_brand=st.sampled_from(["visa", "mastercard", "amex", "jcb", "other"]),
    card_last_four=st.from_regex(r"[0-9]{4}", fullmatch=True),
)
other_methods = events_of(
    PaymentMethodAdded,
    payment_method_id=identifiers,
    user_id=identifiers,
    type=st.sampled_from(["sepa_debit", "bank_account", "paypal", "apple_pay", "google_pay", "other"]),
    card_brand=st.none() | st.just("visa"),
    card_last_four=st.none() | st.just("4242"),
)

STRATEGIES: dict[str, st.SearchStrategy[BaseEvent]] = {
    "PaymentSucceeded": events_of(
        PaymentSucceeded,
        **payment,
        amount_paid=amounts,
        currency=currencies,
        payment_gateway=gateways,
        gateway_payment_intent_id=optional_ids,
        processed_at=instants,
    ),
    "PaymentFailed": events_of(PaymentFailed, **failure, retryable=st.none() | st.booleans()),
    "PaymentRequiresAction": events_of(
        PaymentRequiresAction, **payment, action_required_details=action_details
    ),
    "PaymentCaptured": events_of(
        PaymentCaptured,
        payment_id=identifiers,
        order_id=identifiers,
        amount_captured=amounts,
        currency=currencies,
        gateway_transaction_id=identifiers,
        captured_at=instants,
    ),
    "RefundProcessed": events_of(
        RefundProcessed,
        refund_id=identifiers,
        payment_id=identifiers,
        order_id=identifiers,
        amount_refunded=amounts,
        currency=currencies,
        processed_at=instants,
    ),
    "RefundFailed": events_of(
        RefundFailed,
        refund_id=identifiers,
        payment_id=identifiers,
        order_id=identifiers,
        amount=amounts,
        currency=currencies,
        failure_reason=free_text,
        gateway_error_code=st.none() | codes,
        failed_at=instants,
    ),
    "PaymentMethodAdded": card_methods | other_methods,
    "PaymentMethodRemoved": events_of(
        PaymentMethodRemoved, payment_method_id=identifiers, user_id=identifiers
    ),
}

any_event = st.one_of(*STRATEGIES.values())


def assert_round_trip(event: BaseEvent) -> None:
    """encode -> decode gives an equal event; encoding twice, or re-encoding the decoded one, same bytes."""
    encoded = encode(event)
    decoded = decode(encoded.value, encoded.headers)
    assert decoded == event
    assert type(decoded) is type(event)
    assert encode(event).value == encoded.value
    assert encode(decoded).value == encoded.value
    assert encode(decoded).headers == encoded.headers
    assert encoded.key == event.partition_key.encode()


@settings(max_examples=60)
@given(STRATEGIES["PaymentSucceeded"])
def test_payment_succeeded_round_trip(event: BaseEvent) -> None:
    """PaymentSucceeded: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["PaymentFailed"])
def test_payment_failed_round_trip(event: BaseEvent) -> None:
    """PaymentFailed: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["PaymentRequiresAction"])
def test_payment_requires_action_round_trip(event: BaseEvent) -> None:
    """PaymentRequiresAction: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["PaymentCaptured"])
def test_payment_captured_round_trip(event: BaseEvent) -> None:
    """PaymentCaptured: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["RefundProcessed"])
def test_refund_processed_round_trip(event: BaseEvent) -> None:
    """RefundProcessed: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["RefundFailed"])
def test_refund_failed_round_trip(event: BaseEvent) -> None:
    """RefundFailed: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["PaymentMethodAdded"])
def test_payment_method_added_round_trip(event: BaseEvent) -> None:
    """PaymentMethodAdded: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(STRATEGIES["PaymentMethodRemoved"])
def test_payment_method_removed_round_trip(event: BaseEvent) -> None:
    """PaymentMethodRemoved: model -> bytes -> model is the identity and the bytes are stable."""
    assert_round_trip(event)


@settings(max_examples=60)
@given(events_of(PaymentFailedV1, **failure))
def test_payment_failed_v1_decodes_as_v2(event: BaseEvent) -> None:
    """Any PaymentFailed v1 decodes to a v2 with the same fields and retryable unknown."""
    decoded = decode(encode(event).value)
    assert isinstance(decoded, PaymentFailed)
    assert decoded.retryable is None
    assert decoded.model_dump(exclude={"schema_version", "retryable"}) == event.model_dump(
        exclude={"schema_version"}
    )


@settings(max_examples=100)
@given(any_event)
def test_value_is_canonical_json(event: BaseEvent) -> None:
    """The value is the canonical form of its own JSON: sorted keys, compact separators, UTF-8."""
    value = encode(event).value
    canonical = json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert value == canonical.encode()


@settings(max_examples=100)
@given(any_event, st.binary(max_size=64), st.integers(min_value=0))
def test_corrupted_bytes_never_raise_foreign_errors(event: BaseEvent, noise: bytes, cut: int) -> None:
    """Truncated or noisy bytes either decode or raise one of our errors, never a dependency's."""
    value = encode(event).value
    cut %= len(value) + 1
    outcomes = []
    for corrupted in (value[:cut], value[:cut] + noise + value[cut:], noise):
        # Any other exception type propagates and fails the test.
        try:
            outcomes.append(type(decode(corrupted)).__name__)
        except PaymentEventsError as exc:
            outcomes.append(type(exc).__name__)
    assert len(outcomes) == 3
