"""Payment method events: added and removed.

Keyed by ``userId``: a user's payment-method events (add, then remove; or several adds) stay in order on
one partition, which is what a consumer maintaining "the user's saved methods" needs. Keying by
``paymentMethodId`` would order only one method's events and let "remove A" overtake "add B as default".
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import StringConstraints, model_validator

from payment_events.events.envelope import BaseEvent, Identifier

__all__ = ["CardBrand", "PaymentMethodAdded", "PaymentMethodRemoved", "PaymentMethodType"]

#: Kinds of payment method. A new kind is a new schema version.
PaymentMethodType = Literal[
    "card", "sepa_debit", "bank_account", "paypal", "apple_pay", "google_pay", "other"
]

#: Card networks, lower case.
CardBrand = Literal[
    "visa", "mastercard", "amex", "discover", "diners", "jcb", "unionpay", "maestro", "cartes_bancaires",
    "other",
]


class PaymentMethodAdded(BaseEvent):
    """A user saved a new payment method. Keyed by userId.

    Privacy: the only card data allowed is the brand and the last four digits (exactly four digits);
    never the number, expiry or CVV.
    """

    EVENT_TYPE: ClassVar[str] = "PaymentMethodAdded"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "user_id"

    event_type: Literal["PaymentMethodAdded"] = "PaymentMethodAdded"
    """Always PaymentMethodAdded."""
    schema_version: Literal[1] = 1
    """Version 1 of PaymentMethodAdded."""

    payment_method_id: Identifier
    """The saved payment method's id (a token, never a card number)."""
    user_id: Identifier
    """The user who owns it. The Kafka key."""
    type: PaymentMethodType
    """The kind of payment method; card requires cardBrand and cardLastFour."""
    card_brand: CardBrand | None = None
    """The card network, for cards (and wallets backed by a card, when known)."""
    card_last_four: Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{4}$")] | None = None
    """Exactly the last four digits of the card number, for display; nothing more of the card."""

    @model_validator(mode="after")
    def _card_needs_brand_and_last_four(self) -> PaymentMethodAdded:
        if self.type == "card" and (self.card_brand is None or self.card_last_four is None):
            msg = "type card needs cardBrand and cardLastFour"
            raise ValueError(msg)
        return self


class PaymentMethodRemoved(BaseEvent):
    """A user removed a saved payment method. Keyed by userId."""

    EVENT_TYPE: ClassVar[str] = "PaymentMethodRemoved"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "user_id"

    event_type: Literal["PaymentMethodRemoved"] = "PaymentMethodRemoved"
    """Always PaymentMethodRemoved."""
    schema_version: Literal[1] = 1
    """Version 1 of PaymentMethodRemoved."""

    payment_method_id: Identifier
    """The removed payment method's id."""
    user_id: Identifier
    """The user who owned it. The Kafka key."""
