"""Exact money: currency exponents, conversions between major and minor units, refusal of floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_events.errors import ContractError
from payment_events.events.money import (
    CURRENCY_EXPONENTS,
    MAX_MINOR_UNITS,
    currency_exponent,
    from_minor_units,
    is_known_currency,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("EUR", 2), ("USD", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("KWD", 3), ("BHD", 3),
     ("JOD", 3), ("OMR", 3), ("TND", 3), ("CLF", 4)],
)
def test_currency_exponents(currency: str, exponent: int) -> None:
    """Each currency has its ISO 4217 number of decimals."""
    assert currency_exponent(currency) == exponent


def test_table_holds_only_upper_case_three_letter_codes() -> None:
    """The currency table is well formed: three upper-case letters mapped to an exponent 0-4."""
    assert len(CURRENCY_EXPONENTS) > 150
    for code, exponent in CURRENCY_EXPONENTS.items():
        assert len(code) == 3
        assert code.isascii()
        assert code.isupper()
        assert exponent in {0, 2, 3, 4}


@pytest.mark.parametrize("code", ["ABC", "eur", "XXX", "XAU", "", "EURO"])
def test_unknown_currency_is_refused(code: str) -> None:
    """An unknown or malformed code is refused with a message that says what to use."""
    assert not is_known_currency(code)
    with pytest.raises(ContractError, match=r"unknown currency.*ISO 4217"):
        currency_exponent(code)


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (Decimal("19.99"), "EUR", 1999),
        ("19.99", "EUR", 1999),
        (Decimal("19.9"), "EUR", 1990),
        (20, "EUR", 2000),
        (Decimal(500), "JPY", 500),
        (Decimal("1.5"), "KWD", 1500),
        (Decimal("1.234"), "BHD", 1234),
        (Decimal("0.01"), "USD", 1),
        (Decimal("19.990"), "EUR", 1999),
    ],
)
def test_to_minor_units(amount: Decimal | int | str, currency: str, minor: int) -> None:
    """Major amounts convert to minor units using the currency's exponent."""
    assert to_minor_units(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [(Decimal("19.999"), "EUR"), (Decimal("1.5"), "JPY"), (Decimal("1.2345"), "KWD"), ("0.001", "USD")],
)
def test_extra_precision_is_refused(amount: Decimal | str, currency: str) -> None:
    """More decimals than the currency has is refused rather than rounded."""
    with pytest.raises(ContractError, match=f"more decimals than {currency} allows"):
        to_minor_units(amount, currency)


@pytest.mark.parametrize("amount", [19.99, 1.0, True, None, [1]])
def test_non_exact_types_are_refused(amount: object) -> None:
    """Floats, bools and other types are refused: money is never approximate."""
    with pytest.raises(ContractError, match="amount must be a Decimal, int or decimal string"):
        to_minor_units(amount, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", ["abc", "NaN", "Infinity", Decimal("NaN")])
def test_non_numbers_are_refused(amount: str | Decimal) -> None:
    """Strings that are not finite decimal numbers are refused."""
    with pytest.raises(ContractError, match=r"(not a decimal number|finite)"):
        to_minor_units(amount, "EUR")


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [(1999, "EUR", Decimal("19.99")), (500, "JPY", Decimal(500)), (1500, "KWD", Decimal("1.500"))],
)
def test_from_minor_units(minor: int, currency: str, major: Decimal) -> None:
    """Minor units convert back to an exact Decimal in major units."""
    assert from_minor_units(minor, currency) == major


def test_from_minor_units_refuses_floats_and_bools() -> None:
    """Only ints are minor units."""
    with pytest.raises(ContractError, match="minor units must be an int"):
        from_minor_units(19.99, "EUR")  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="minor units must be an int"):
        from_minor_units(True, "EUR")


@given(
    minor=st.integers(min_value=1, max_value=MAX_MINOR_UNITS),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)
def test_minor_major_round_trip(minor: int, currency: str) -> None:
    """Converting minor units to major and back gives the same integer, for every currency."""
    assert to_minor_units(from_minor_units(minor, currency), currency) == minor
