"""Detectors for card numbers, CVVs, secrets and unsafe redirect URLs; errors never echo the value."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payment_events.errors import SensitiveDataError
from payment_events.events.privacy import (
    check_redirect_url,
    check_text,
    contains_card_number,
    contains_cvv,
    contains_secret,
    luhn_valid,
    might_be_sensitive,
)

CARDS = [
    "4111111111111111",  # Visa test card
    "5555555555554444",  # Mastercard
    "378282246310005",  # Amex, 15 digits
    "4222222222222",  # 13-digit Visa
    "6011000990139424",  # Discover
    "3530111333300000",  # JCB
]


@pytest.mark.parametrize("card", CARDS)
def test_luhn_accepts_test_cards(card: str) -> None:
    """Well-known test card numbers pass the Luhn check."""
    assert luhn_valid(card)


def test_luhn_rejects_a_changed_digit() -> None:
    """Changing one digit of a valid number breaks the Luhn check."""
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize("card", CARDS)
@pytest.mark.parametrize(
    "template",
    ["{}", "card {} declined", "pm_{}", "{}x", "{spaced}", "{dashed}", "ref: {dashed}.", "{spaced} 12"],
)
def test_card_numbers_are_found_in_any_shape(card: str, template: str) -> None:
    """A card number is found plain, embedded, spaced in groups of four, or dashed."""
    spaced = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    dashed = spaced.replace(" ", "-")
    text = template.format(card, spaced=spaced, dashed=dashed)
    assert might_be_sensitive(text)
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn-invalid
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits, no separators: not a card
        "2026-01-31T12:00:00.123456Z",
        "01936f2e-8a4b-7c3d-9e1f-2a3b4c5d6e7f",
        "12345678-1234-7234-8234-123456789012",  # all-digit UUID: scanned as a UUID, not a card
        "order 1234 5678",
        "pay_01HQZ8K2",
    ],
)
def test_non_cards_are_not_flagged(text: str) -> None:
    """Luhn-invalid, too short or too long numbers, timestamps and UUIDs are not card numbers."""
    assert not contains_card_number(text)


@pytest.mark.parametrize("text", ["CVV 123", "cvc: 4567", "CVV2=123", "security code 999", "cvn #321"])
def test_cvv_mentions_are_found(text: str) -> None:
    """A security-code keyword followed by 3-4 digits is a CVV."""
    assert contains_cvv(text)
    assert might_be_sensitive(text)


@pytest.mark.parametrize("text", ["cvv check failed", "CVC mismatch", "code 123", "security review"])
def test_cvv_words_without_a_value_are_allowed(text: str) -> None:
    """Talking about a CVV check, without a value, is fine (it is a common failure reason)."""
    assert not contains_cvv(text)


@pytest.mark.parametrize(
    "text",
    [
        "sk_live_51Habcdefgh",
        "key rk_test_ABCDEFGH12",
        "pi_3N_secret_abcdefgh12",
        "whsec_abcdefgh",
        "Bearer abcdefghijklmnop12",
    ],
)
def test_secrets_are_found(text: str) -> None:
    """API keys, client secrets, webhook secrets and bearer tokens are found."""
    assert contains_secret(text)
    assert might_be_sensitive(text)


def test_check_text_names_the_field_and_hides_the_value() -> None:
    """The error names the field and never contains the card number."""
    with pytest.raises(SensitiveDataError) as caught:
        check_text("failureReason", "declined 4111 1111 1111 1111")
    message = str(caught.value)
    assert "failureReason" in message
    assert "card number" in message
    assert "4111" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://pay.example.com/3ds?session=cs_81f2",
        "https://acs.bank.example/challenge/abc-123",
        "https://example.com/",
    ],
)
def test_good_redirect_urls_pass(url: str) -> None:
    """An https URL with an opaque session id is accepted."""
    check_redirect_url("redirectUrl", url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://pay.example.com/3ds", "https"),
        ("ftp://pay.example.com/", "https"),
        ("https:///path", "no host"),
        ("https://pay.example.com/a b", "whitespace"),
        ("https://" + "a" * 2100 + ".com/", "longer than"),
    ],
)
def test_structurally_bad_urls_are_refused(url: str, message: str) -> None:
    """Non-https, hostless, unencoded or oversized URLs are refused with a clear reason."""
    with pytest.raises(ValueError, match=message):
        check_redirect_url("redirectUrl", url)


@pytest.mark.parametrize(
    "url",
    [
        "https://pay.example.com/?payment_intent_client_secret=pi_1_secret_xyz",
        "https://pay.example.com/?token=abc",
        "https://pay.example.com/?x=1&API-KEY=abc",
        "https://pay.example.com/#access_token=abc",
        "https://user:hunter2@pay.example.com/",
        "https://pay.example.com/card/4111111111111111",
        "https://pay.example.com/?sig=abc",
    ],
)
def test_urls_carrying_secrets_are_refused(url: str) -> None:
    """Credentials, secret-looking parameters and card numbers in a URL are refused without echo."""
    with pytest.raises(SensitiveDataError) as caught:
        check_redirect_url("redirectUrl", url)
    assert "redirectUrl" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "abc" not in str(caught.value)


@st.composite
def hidden_cards(draw: st.DrawFn) -> tuple[str, str]:
    """A test card, written as cards are (fours, or Amex/Diners 4-6-x) with a random separator, between
    random letters: (text, digits)."""
    digits = draw(st.sampled_from(CARDS))
    if len(digits) in (14, 15):
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    separator = draw(st.sampled_from(["", " ", "-", ".", "/", "  ", "\u00a0", "\u2013", " - "]))
    letters = st.text(string.ascii_letters + " _:", max_size=20)
    before = draw(letters)
    after = draw(letters)
    # A letter glued to the card from a hex-only word would hide it (documented limit): keep a space.
    return f"{before} {separator.join(groups)} {after}", digits


@given(hidden_cards())
def test_any_hidden_card_number_is_found_and_never_echoed(case: tuple[str, str]) -> None:
    """Every test card, however separated and surrounded by letters, is refused and never echoed."""
    text, digits = case
    assert contains_card_number(text)
    with pytest.raises(SensitiveDataError) as caught:
        check_text("failureReason", text)
    assert digits not in str(caught.value)


def test_a_traceparent_whose_span_id_reads_like_a_card_number_is_accepted() -> None:
    """A random span id that happens to be 16 Luhn-valid digits in a card range (about one event in
    60,000) never makes a payment fail: the traceparent admits only its W3C hex format."""
    from payment_events import PaymentSucceeded
    from payment_events.events.card_numbers import luhn_valid
    from payment_events.events.examples import example_fields

    span_id = "3030303033333333"
    assert luhn_valid(span_id)
    fields = example_fields(PaymentSucceeded)
    fields["traceparent"] = f"00-00000000000000000000000000000001-{span_id}-00"
    assert PaymentSucceeded(**fields).traceparent == fields["traceparent"]
