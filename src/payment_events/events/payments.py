"""Payment outcome events: succeeded, failed (v1 and v2), requires action, captured.

All are keyed by ``paymentId`` so one payment's events stay in order on one partition.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from payment_events.events.envelope import BaseEvent, Code, ContractModel, FreeText, Identifier, UtcDatetime
from payment_events.events.money import Currency, MinorUnits
from payment_events.events.privacy import MAX_URL_LENGTH, check_redirect_url

__all__ = [
    "ActionRequiredDetails",
    "PaymentCaptured",
    "PaymentFailed",
    "PaymentFailedV1",
    "PaymentRequiresAction",
    "PaymentSucceeded",
]

#: Lower-case gateway name, e.g. ``stripe``, ``adyen``, ``paypal``.
GatewayName = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
]


class PaymentSucceeded(BaseEvent):
    """A payment was processed successfully. Keyed by paymentId.

    Money: amountPaid is an integer in the minor units of currency (never a float).
    Privacy: no card data; every string is checked for card numbers, CVVs and secrets.
    """

    EVENT_TYPE: ClassVar[str] = "PaymentSucceeded"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "payment_id"

    event_type: Literal["PaymentSucceeded"] = "PaymentSucceeded"
    """Always PaymentSucceeded."""
    schema_version: Literal[1] = 1
    """Version 1 of PaymentSucceeded."""

    payment_id: Identifier
    """The payment's id in the payment service. The Kafka key."""
    order_id: Identifier
    """The order this payment pays for."""
    user_id: Identifier | None = None
    """The paying user, when known (guest checkouts have none)."""
    amount_paid: MinorUnits
    """Amount paid, an integer in the minor units of currency (1999 EUR = 19.99 EUR). Greater than 0."""
    currency: Currency
    """ISO 4217 code of amountPaid; fixes its number of decimals (EUR 2, JPY 0, KWD 3)."""
    payment_gateway: GatewayName
    """The gateway that processed the payment, lower case (stripe, adyen, paypal...)."""
    gateway_payment_intent_id: Identifier | None = None
    """The gateway's id for this payment (e.g. a Stripe PaymentIntent id), when it has one."""
    processed_at: UtcDatetime
    """When the gateway confirmed the payment (UTC)."""


class _PaymentFailedFields(BaseEvent):
    """Fields shared by every version of PaymentFailed."""

    PARTITION_KEY_FIELD: ClassVar[str] = "payment_id"

    payment_id: Identifier
    """The payment's id in the payment service. The Kafka key."""
    order_id: Identifier
    """The order this payment was for."""
    user_id: Identifier | None = None
    """The paying user, when known."""
    amount: MinorUnits
    """Amount attempted, an integer in the minor units of currency (1999 EUR = 19.99 EUR). Greater than 0."""
    currency: Currency
    """ISO 4217 code of amount; fixes its number of decimals (EUR 2, JPY 0, KWD 3)."""
    failure_reason: FreeText
    """Why the payment failed, for people: at most 500 characters, no card data, no secrets."""
    gateway_error_code: Code | None = None
    """The gateway's machine-readable error code (e.g. card_declined), when it gave one."""
    failed_at: UtcDatetime
    """When the attempt failed (UTC)."""


class PaymentFailedV1(_PaymentFailedFields):
    """A payment attempt failed (schema version 1; decoded v1 events are upcast to version 2).

    Money: amount is an integer in the minor units of currency (never a float).
    Privacy: failureReason is free text limited to 500 characters and checked for card data and secrets.
    """

    EVENT_TYPE: ClassVar[str] = "PaymentFailed"
    SCHEMA_VERSION: ClassVar[int] = 1

    event_type: Literal["PaymentFailed"] = "PaymentFailed"
    """Always PaymentFailed."""
    schema_version: Literal[1] = 1
    """Version 1 of PaymentFailed."""


class PaymentFailed(_PaymentFailedFields):
    """A payment attempt failed. Keyed by paymentId. Version 2 adds the optional `retryable`.

    Money: amount is an integer in the minor units of currency (never a float).
    Privacy: failureReason is free text limited to 500 characters and checked for card data and secrets.
    """

    EVENT_TYPE: ClassVar[str] = "PaymentFailed"
    SCHEMA_VERSION: ClassVar[int] = 2

    event_type: Literal["PaymentFailed"] = "PaymentFailed"
    """Always PaymentFailed."""
    schema_version: Literal[2] = 2
    """Version 2 of PaymentFailed (v1 events are upcast with retryable = null)."""
    retryable: Annotated[bool, Field(strict=True)] | None = None
    """Whether the gateway says a new attempt may succeed (true: e.g. a timeout; false: e.g. a stolen
    card); null when unknown. Added in version 2."""


def _check_url(value: str) -> str:
    check_redirect_url("actionRequiredDetails.redirectUrl", value)
    return value


#: An https URL without credentials or secret-looking parameters (see ``privacy.check_redirect_url``).
RedirectUrl = Annotated[
    str,
    StringConstraints(strict=True, min_length=9, max_length=MAX_URL_LENGTH, pattern=r"^https://"),
    AfterValidator(_check_url),
]


class ActionRequiredDetails(ContractModel):
    """What the customer must do to complete the payment. No secrets: URLs are https and carry none."""

    type: Literal["redirect_to_url", "three_d_secure", "use_sdk", "verify_with_microdeposits", "other"]
    """The kind of action: redirect_to_url requires redirectUrl."""
    redirect_url: RedirectUrl | None = None
    """Where to send the customer: https only, at most 2048 characters, no user:password@, no query or
    fragment parameter whose name looks secret (client_secret, token, password, key, signature...)."""
    expires_at: UtcDatetime | None = None
    """When the action stops being possible (UTC), if the gateway says."""

    @model_validator(mode="after")
    def _redirect_needs_url(self) -> ActionRequiredDetails:
        if self.type == "redirect_to_url" and self.redirect_url is None:
            msg = "type redirect_to_url needs a redirectUrl"
            raise ValueError(msg)
        return self


class PaymentRequiresAction(BaseEvent):
    """A payment needs the customer to act (3-D Secure, a redirect) before it can complete.

    Keyed by paymentId. Privacy: the redirect URL must be https and free of secrets.
    """

    EVENT_TYPE: ClassVar[str] = "PaymentRequiresAction"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "payment_id"

    event_type: Literal["PaymentRequiresAction"] = "PaymentRequiresAction"
    """Always PaymentRequiresAction."""
    schema_version: Literal[1] = 1
    """Version 1 of PaymentRequiresAction."""

    payment_id: Identifier
    """The payment's id in the payment service. The Kafka key."""
    order_id: Identifier
    """The order this payment is for."""
    user_id: Identifier | None = None
    """The paying user, when known."""
    action_required_details: ActionRequiredDetails
    """What the customer must do."""


class PaymentCaptured(BaseEvent):
    """A previously authorised payment was captured. Keyed by paymentId.

    Money: amountCaptured is an integer in the minor units of currency; it may be less than authorised.
    """

    EVENT_TYPE: ClassVar[str] = "PaymentCaptured"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "payment_id"

    event_type: Literal["PaymentCaptured"] = "PaymentCaptured"
    """Always PaymentCaptured."""
    schema_version: Literal[1] = 1
    """Version 1 of PaymentCaptured."""

    payment_id: Identifier
    """The payment's id in the payment service. The Kafka key."""
    order_id: Identifier
    """The order this payment pays for."""
    amount_captured: MinorUnits
    """Amount captured, an integer in the minor units of currency (1999 EUR = 19.99 EUR). Greater than 0."""
    currency: Currency
    """ISO 4217 code of amountCaptured; fixes its number of decimals (EUR 2, JPY 0, KWD 3)."""
    gateway_transaction_id: Identifier
    """The gateway's id of the capture transaction."""
    captured_at: UtcDatetime
    """When the capture was confirmed (UTC)."""
