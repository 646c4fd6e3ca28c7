"""Data minimisation, enforced: detectors for card numbers, CVVs and secrets in event fields.

Events are broadcast to every consumer of the topic, so they must never carry card data (PCI DSS) or
credentials. The event models call :func:`check_text` on every string they hold and
:func:`check_redirect_url` on redirect URLs. Errors name the field and what it looked like, never the
value, so they are safe to log.

What counts as a card number is decided in one place, :mod:`payment_events.events.card_numbers`
(normalised text, issuer ranges and lengths per brand, Luhn, card-shaped digit groups with any
separators, URL decoding); log redaction, CLI output and decode errors use the same detector. The
measured miss and false-refusal rates, and the rule for id formats, are in docs/privacy.md.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from payment_events.errors import SensitiveDataError
from payment_events.events.card_numbers import contains_card_number, luhn_valid, might_contain_card_number

__all__ = [
    "MAX_URL_LENGTH",
    "check_redirect_url",
    "check_text",
    "contains_card_number",
    "contains_cvv",
    "contains_secret",
    "luhn_valid",
    "might_be_sensitive",
    "shown_name",
]

MAX_URL_LENGTH = 2048

_CVV = re.compile(
    r"(?i)\b(?:cvv2?|cvc2?|cvn|csc|cav2|card\s+(?:security|verification)\s+(?:code|value)|security\s+code)"
    r"\b\W{0,3}\d{3,4}\b"
)
# Well-known credential shapes: Stripe secret/restricted keys, client secrets, webhook secrets,
# and bearer tokens pasted into text.
_SECRET = re.compile(
    r"(?i)\b(?:sk|rk)_(?:live|test)_[a-z0-9]{8,}|_secret_[a-z0-9]{8,}|\bwhsec_[a-z0-9]{8,}"
    r"|\bbearer\s+[a-z0-9._~+/-]{16,}"
)
_SECRET_PARAM_PARTS = (
    "secret",
    "password",
    "passwd",
    "token",
    "apikey",
    "api_key",
    "access_key",
    "private_key",
    "credential",
    "signature",
    "cvv",
    "cvc",
    "card_number",
    "cardnumber",
)
_SECRET_PARAM_NAMES = frozenset({"pwd", "sig", "key", "auth", "code", "pan"})


# A cheap pre-filter for the CVV and secret detectors (searched in the lower-cased text; Python's `re` is
# slow with case-insensitive alternations, hence the explicit lower()).
_SUSPECT = re.compile(r"cvv|cvc|cvn|csc|cav2|security|secret|sk_|rk_|whsec_|bearer")


def might_be_sensitive(text: str) -> bool:
    """A fast over-approximation of :func:`check_text`: ``False`` means the text is certainly clean."""
    return might_contain_card_number(text) or _SUSPECT.search(text.lower()) is not None


_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def shown_name(value: object) -> str:
    """``value`` quoted for an error message if it is a plain short name, else a placeholder.

    Errors about input that was not validated (an unknown ``eventType``, a header name) must never echo
    it: only a name of letters, digits and ``_ . -`` starting with a letter, at most 64 characters and
    with fewer than four digits (no room for card data), is shown.
    """
    if (
        isinstance(value, str)
        and _PLAIN_NAME.fullmatch(value)
        and sum(char.isdigit() for char in value) < 4
        and not might_be_sensitive(value)
    ):
        return repr(value)
    return "(not shown)"


def contains_cvv(text: str) -> bool:
    """Whether ``text`` mentions a card security code with a value (``"CVV 123"``, ``"cvc: 4567"``)."""
    return _CVV.search(text) is not None


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds a well-known credential shape (API key, client secret, bearer token)."""
    return _SECRET.search(text) is not None


def check_text(field: str, text: str) -> None:
    """Refuse ``text`` if it holds a card number, a CVV or a secret; the error names ``field`` only."""
    if contains_card_number(text):
        msg = (
            f"field {field!r} looks like it contains a card number (PAN); card data must never be "
            "published: send only cardLastFour on PaymentMethodAdded"
        )
        raise SensitiveDataError(msg)
    if contains_cvv(text):
        msg = f"field {field!r} looks like it contains a card security code (CVV/CVC); remove it"
        raise SensitiveDataError(msg)
    if contains_secret(text):
        msg = f"field {field!r} looks like it contains an API key, client secret or token; remove it"
        raise SensitiveDataError(msg)


def _is_secret_param(name: str) -> bool:
    normalised = name.lower().replace("-", "_")
    return normalised in _SECRET_PARAM_NAMES or any(part in normalised for part in _SECRET_PARAM_PARTS)


def check_redirect_url(field: str, url: str) -> None:
    """Refuse a redirect URL that is not plain https or that carries credentials.

    Rules: at most :data:`MAX_URL_LENGTH` characters; scheme ``https``; a host; no ``user:password@``;
    no query or fragment parameter whose name looks secret (``client_secret``, ``token``, ``password``,
    ``signature``, ``key``...). Put an opaque, short-lived session id in the URL and let the page resolve
    it server-side. Structural problems raise ``ValueError``; credentials raise
    :class:`~payment_events.errors.SensitiveDataError`. Neither echoes the URL.
    """
    if len(url) > MAX_URL_LENGTH:
        msg = f"URL is longer than {MAX_URL_LENGTH} characters"
        raise ValueError(msg)
    # Card data first (in every component, percent- and plus-decoded), so it is reported as such.
    check_text(field, url)
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        msg = "not a valid URL"
        raise ValueError(msg) from None
    if parts.scheme != "https":
        msg = "redirect URLs must use https"
        raise ValueError(msg)
    if not hostname:
        msg = "URL has no host"
        raise ValueError(msg)
    if any(char.isspace() for char in url):
        msg = "URL contains whitespace: percent-encode it"
        raise ValueError(msg)
    if has_userinfo:
        msg = f"field {field!r} carries credentials in the URL (user:password@); remove them"
        raise SensitiveDataError(msg)
    for component in (parts.query, parts.fragment):
        for name, _value in parse_qsl(component, keep_blank_values=True):
            if _is_secret_param(name):
                msg = (
                    f"field {field!r} carries a secret-looking query parameter ({name[:40]!r}); "
                    "pass an opaque session id and resolve it server-side"
                )
                raise SensitiveDataError(msg)
