"""The public API is exactly what payment_events re-exports, listed in a sorted __all__."""

from __future__ import annotations

import payment_events


def test_all_is_the_public_api() -> None:
    """__all__ lists every public name the package exports, and each of them exists."""
    # `annotations` is the `from __future__ import annotations` feature flag, not an export.
    exported = {name for name in dir(payment_events) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in exported if type(getattr(payment_events, name)).__name__ == "module"}
    assert set(payment_events.__all__) == exported - modules
    for name in payment_events.__all__:
        assert getattr(payment_events, name) is not None


def test_all_is_sorted_and_unique() -> None:
    """__all__ is sorted the way ruff (RUF022) sorts it, with no duplicates."""

    def isort_key(name: str) -> tuple[int, str]:
        kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
        return kind, name

    assert payment_events.__all__ == sorted(payment_events.__all__, key=isort_key)
    assert len(set(payment_events.__all__)) == len(payment_events.__all__)


def test_event_contract_names_are_exported() -> None:
    """The event contracts' public names are all re-exported at the top level."""
    assert {
        "CURRENCY_EXPONENTS",
        "DEFAULT_REGISTRY",
        "ActionRequiredDetails",
        "BaseEvent",
        "ContractError",
        "EncodedEvent",
        "EventRegistry",
        "InvalidEventError",
        "PaymentCaptured",
        "PaymentEvent",
        "PaymentEventPublisher",
        "PaymentEventsError",
        "PaymentFailed",
        "PaymentMethodAdded",
        "PaymentMethodRemoved",
        "PaymentRequiresAction",
        "PaymentSucceeded",
        "PublishMethodsMixin",
        "RefundFailed",
        "RefundProcessed",
        "SchemaCompatibilityError",
        "SensitiveDataError",
        "SerializationError",
        "UnknownEventTypeError",
        "currency_exponent",
        "decode",
        "encode",
        "from_minor_units",
        "to_minor_units",
        "uuid7",
    } <= set(payment_events.__all__)
