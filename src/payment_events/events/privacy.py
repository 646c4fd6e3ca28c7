"""Data minimisation, enforced: detectors for card numbers, CVVs and secrets in event fields.

Events are broadcast to every consumer of the topic, so they must never carry card data (PCI DSS) or
credentials. The event models call :func:`check_text` on every string they hold and
:func:`check_redirect_url` on redirect URLs. Errors name the field and what it looked like, never the
value, so they are safe to log.

What counts as a card number: 13 to 19 digits that pass the Luhn check, written contiguously or in groups
separated by single spaces or dashes (``4111 1111 1111 1111``, ``4111-1111-1111-1111``), anywhere in the
string (``"pm_4111111111111111"`` is refused too). Every run of whole groups is checked, so a card number
followed by more digits in groups is still found. A string that is exactly a canonical UUID or a W3C
traceparent is not scanned: its shape says what it is, and scanning its hex digit groups would refuse
about one random UUID in 100,000. Consequence for producers: identifiers must not contain 13-19 digit
Luhn-valid numbers, even behind a prefix (``ord_4111111111111111`` is refused): use UUIDs or ids that are
not card-shaped.

Known limit: a card number glued to further digits with no separator (``"1234111111111111111"``, 19 digits
that fail Luhn as a whole) is not found. Checking every 13-19 digit window of longer digit strings would
refuse almost every long numeric id (each window passes Luhn one time in ten), so a run of contiguous
digits is judged as a whole; separated groups are checked in every span.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from payment_events.errors import SensitiveDataError

__all__ = [
    "MAX_URL_LENGTH",
    "check_redirect_url",
    "check_text",
    "contains_card_number",
    "contains_cvv",
    "contains_secret",
    "luhn_valid",
    "might_be_sensitive",
]

MAX_URL_LENGTH = 2048

_MIN_PAN, _MAX_PAN = 13, 19
# A run of digits in which single spaces or dashes may separate groups.
_DIGIT_RUN = re.compile(r"\d(?:[ \-]?\d)*")
_SEPARATOR = re.compile(r"[ \-]")
# Machine formats whose shape says what they are: a canonical UUID or a W3C traceparent is not scanned
# for card numbers (random hex digit groups would look like one now and then).
_STRUCTURED = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
)
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


# A cheap pre-filter: anything a detector below could match also matches this (13+ digits with
# separators, or a keyword, searched in the lower-cased text), so most strings are cleared by one search.
# Python's `re` is slow with case-insensitive alternations, hence the explicit lower().
_SUSPECT = re.compile(r"\d[\d \-]{11,}\d|cvv|cvc|cvn|csc|cav2|security|secret|sk_|rk_|whsec_|bearer")


def might_be_sensitive(text: str) -> bool:
    """A fast over-approximation of :func:`check_text`: ``False`` means the text is certainly clean."""
    return _SUSPECT.search(text.lower()) is not None


def luhn_valid(digits: str) -> bool:
    """Whether the decimal string ``digits`` passes the Luhn (mod 10) check used by card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _run_has_card(run: str) -> bool:
    groups = _SEPARATOR.split(run)
    if len(groups) == 1:
        return _MIN_PAN <= len(run) <= _MAX_PAN and luhn_valid(run)
    # Every span of consecutive whole groups: finds "4111 1111 1111 1111" inside "4111 1111 1111 1111 12".
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > _MAX_PAN:
                break
            if len(digits) >= _MIN_PAN and luhn_valid(digits):
                return True
    return False


def contains_card_number(text: str) -> bool:
    """Whether ``text`` contains a Luhn-valid 13-19 digit number, plain or grouped by spaces/dashes."""
    if _STRUCTURED.fullmatch(text):
        return False
    for match in _DIGIT_RUN.finditer(text):
        run = match.group()
        if len(run) >= _MIN_PAN and _run_has_card(run):
            return True
    return False


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
    check_text(field, url)
