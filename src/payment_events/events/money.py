"""Exact money: integer amounts in a currency's minor units plus an ISO 4217 code.

On the wire an amount is a JSON integer in minor units next to a flat ``currency`` field, as the spec
lists them (``"amountPaid": 1999, "currency": "EUR"`` is 19.99 EUR; ``500`` JPY is 500 yen because
JPY has no minor unit; ``1500`` KWD is 1.500 dinar because KWD has three decimals). Floats are never
accepted: neither in events nor in the conversion helpers here. Amounts are capped at 2**53 - 1 so
that every consumer, including JavaScript ones, reads them exactly.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator, Field

from payment_events.errors import ContractError

__all__ = [
    "CURRENCY_EXPONENTS",
    "MAX_MINOR_UNITS",
    "Currency",
    "MinorUnits",
    "currency_exponent",
    "from_minor_units",
    "is_known_currency",
    "to_minor_units",
]

#: Largest amount in minor units: the largest integer a JSON consumer using IEEE doubles reads exactly.
MAX_MINOR_UNITS = 2**53 - 1

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK "
    "PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

#: ISO 4217 active currencies (fund and precious-metal codes without a minor unit are left out)
#: mapped to their exponent: the number of decimal digits of the minor unit.
CURRENCY_EXPONENTS: MappingProxyType[str, int] = MappingProxyType(
    {
        **dict.fromkeys(_TWO_DECIMALS.split(), 2),
        **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
        **dict.fromkeys(_THREE_DECIMALS.split(), 3),
        **dict.fromkeys(_FOUR_DECIMALS.split(), 4),
    }
)


def is_known_currency(code: str) -> bool:
    """Whether ``code`` is an ISO 4217 code in :data:`CURRENCY_EXPONENTS`."""
    return code in CURRENCY_EXPONENTS


def currency_exponent(code: str) -> int:
    """The number of decimals of ``code``'s minor unit (EUR 2, JPY 0, KWD 3); refuses unknown codes."""
    try:
        return CURRENCY_EXPONENTS[code]
    except KeyError:
        raise ContractError(_unknown_currency_message(code)) from None


def _unknown_currency_message(code: str) -> str:
    shown = code if len(code) == 3 and code.isascii() and code.isalpha() else "<not a 3-letter code>"
    return (
        f"unknown currency {shown!r}: use an active ISO 4217 code in upper case, such as 'EUR', "
        "'USD' or 'JPY'"
    )


def to_minor_units(amount: Decimal | int | str, currency: str) -> int:
    """Convert a major-unit amount (``Decimal("19.99")``) to integer minor units (``1999``).

    Refuses floats (they are not exact), non-finite values, and more decimals than the currency has
    (``Decimal("19.999")`` EUR, ``Decimal("1.5")`` JPY): rounding money silently is a bug.
    """
    exponent = currency_exponent(currency)
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        msg = f"amount must be a Decimal, int or decimal string, not {type(amount).__name__}"
        raise ContractError(msg)
    try:
        value = Decimal(amount)
    except InvalidOperation:
        msg = "amount is not a decimal number: pass a string like '19.99' or a Decimal"
        raise ContractError(msg) from None
    if not value.is_finite():
        msg = "amount must be a finite number"
        raise ContractError(msg)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        msg = f"amount has more decimals than {currency} allows ({exponent}); round it explicitly first"
        raise ContractError(msg)
    return int(scaled)


def from_minor_units(minor_units: int, currency: str) -> Decimal:
    """Convert integer minor units (``1999``) back to an exact major-unit ``Decimal`` (``19.99``)."""
    if isinstance(minor_units, bool) or not isinstance(minor_units, int):
        msg = f"minor units must be an int, not {type(minor_units).__name__}"
        raise ContractError(msg)
    exponent = currency_exponent(currency)
    return Decimal(minor_units).scaleb(-exponent)


def _check_currency(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        raise ValueError(_unknown_currency_message(code))
    return code


#: An ISO 4217 currency code from :data:`CURRENCY_EXPONENTS`, upper case.
Currency = Annotated[
    str,
    Field(
        strict=True,
        min_length=3,
        max_length=3,
        description=(
            "ISO 4217 alphabetic currency code (upper case, e.g. EUR, USD, JPY, KWD). It fixes the number "
            "of decimals of every amount in this event: 2 for most, 0 for JPY/KRW/CLP..., 3 for "
            "KWD/BHD/JOD/OMR/TND/IQD/LYD."
        ),
        examples=["EUR"],
        # In the JSON Schema only: the model's own check gives a better message ("unknown currency").
        json_schema_extra={"pattern": "^[A-Z]{3}$"},
    ),
    AfterValidator(_check_currency),
]

_AMOUNT_DESCRIPTION = (
    "Amount as an integer in the minor units of `currency` (1999 EUR = 19.99 EUR; 500 JPY = 500 yen; "
    "1500 KWD = 1.500 dinar). Never a float or a string. Greater than zero, at most 2^53-1."
)

#: A strictly positive integer amount in minor units (JSON integer; floats, strings and bools refused).
MinorUnits = Annotated[
    int,
    Field(strict=True, gt=0, le=MAX_MINOR_UNITS, description=_AMOUNT_DESCRIPTION, examples=[1999]),
]
