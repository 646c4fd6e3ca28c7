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


def test_io_side_names_are_exported_lazily() -> None:
    """The outbox, relay, direct publisher and settings are exported and resolve on first use."""
    import importlib
    import subprocess
    import sys

    io_side = ("OutboxPublisher", "SqlOutboxStore", "Relay", "RelayConfig", "DirectPublisher", "TopicRouter")
    for name in (*io_side, "Settings", "AuditReport", "upgrade_outbox", "run_relay", "ensure_topics"):
        assert name in payment_events.__all__
        assert getattr(payment_events, name) is not None
    assert importlib.import_module("payment_events.outbox.publisher").OutboxPublisher is (
        payment_events.OutboxPublisher
    )
    # A consumer that only decodes events does not pay for SQLAlchemy or librdkafka at import time.
    probe = "import sys, payment_events; print('sqlalchemy' in sys.modules, 'confluent_kafka' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
