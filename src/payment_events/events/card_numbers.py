"""The one card-number (PAN) detector: event validation, log redaction, CLI output and errors all use it.

A card number is recognised by what it is, after the text is normalised:

1. **Normalise.** Each character goes through Unicode NFKC (fullwidth digits, superscripts and the
   no-break space become ASCII), then every Unicode decimal digit becomes its ASCII digit
   (``unicodedata.decimal``: Arabic-Indic ``٤``, Devanagari ``४``...). When the text holds ``%``, a
   second view is scanned too, percent-decoded as a URL component (``+`` as a space) up to three times
   (double encoding). Every normalised character remembers where it came from, so redaction masks the
   original characters.
2. **Tokenise.** A *digit group* is a maximal run of ASCII digits. Groups are separated by any run of
   characters that are neither letters nor digits (spaces, ``.``, ``/``, ``_``, ``:``, dashes of every
   kind, zero-width spaces...). A letter ends a chain of groups. Digits inside a *hex token* (8 or more
   characters, only ``0-9a-fA-F``, at least one letter: a UUID segment, ``uuid4().hex``, a hash) are not
   groups at all: random hex holds long digit runs far too often, and no card is written that way.
3. **Group shapes.** A candidate is one group of 13-19 digits, or consecutive groups of a chain where
   every group but the last has 3-6 digits and the last 1-6 (``4111 1111 1111 1111``, Amex
   ``3782 822463 10005``, Diners ``3056 930902 5904``, ``4222 2222 22222``, 19 digits as 4-4-4-4-3).
   Shapes like ``YYYYMMDD-NNNNNN`` or a UUID's 8-4-4-4-12 never form a candidate.
4. **Issuer range, length, Luhn.** A candidate is a card number when its prefix and length belong to a
   brand (:data:`BRANDS`) and it passes the Luhn check.

A string that is exactly a W3C traceparent is not scanned (its random 16-hex parent id is now and then
all digits). Known limits, chosen so that honest ids are not refused (docs/privacy.md has the measured
rates): a card number glued to further digits (``1234111111111111111``) is judged as one number; one
glued to letters inside a hex token (``cafe4111111111111111``) is not seen; 12-digit Maestro numbers are
not recognised; brands outside :data:`BRANDS` are not recognised. A bare 13-19 digit id that is itself a
valid card number cannot be told from one and is refused by design.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "BRANDS",
    "MAX_PAN_LENGTH",
    "MIN_PAN_LENGTH",
    "Brand",
    "brand_of",
    "contains_card_number",
    "find_card_numbers",
    "is_card_number",
    "luhn_valid",
    "might_contain_card_number",
    "normalise",
    "redact_card_numbers",
]

MIN_PAN_LENGTH, MAX_PAN_LENGTH = 13, 19


@dataclass(frozen=True, slots=True)
class Brand:
    """A card scheme: its issuer-number prefixes (inclusive ranges, all of one width) and PAN lengths."""

    name: str
    prefixes: tuple[tuple[int, int], ...]
    lengths: frozenset[int]

    def matches(self, digits: str) -> bool:
        """Whether ``digits`` (ASCII) has one of this brand's lengths and prefixes."""
        if len(digits) not in self.lengths:
            return False
        for low, high in self.prefixes:
            width = len(str(low))
            if low <= int(digits[:width]) <= high:
                return True
        return False


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


#: The brands recognised, with their IIN ranges and lengths (ISO/IEC 7812; scheme publications).
#: Maestro is taken broadly (50, 56-69), as many national debit schemes issue in that space too.
BRANDS: tuple[Brand, ...] = (
    Brand("visa", ((4, 4),), frozenset({13, 16, 19})),
    Brand("mastercard", ((51, 55), (2221, 2720)), frozenset({16})),
    Brand("amex", ((34, 34), (37, 37)), frozenset({15})),
    Brand("discover", ((6011, 6011), (644, 649), (65, 65), (622126, 622925)), _lengths(16, 19)),
    Brand("jcb", ((3528, 3589),), _lengths(16, 19)),
    Brand("diners", ((300, 305), (3095, 3095), (36, 36), (38, 39)), _lengths(14, 19)),
    Brand("unionpay", ((62, 62), (81, 81)), _lengths(16, 19)),
    Brand("maestro", ((50, 50), (56, 69)), _lengths(13, 19)),
    Brand("mir", ((2200, 2204),), _lengths(16, 19)),
)


def luhn_valid(digits: str) -> bool:
    """Whether the ASCII digit string ``digits`` passes the Luhn (mod 10) check used by card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def brand_of(digits: str) -> str | None:
    """The brand whose issuer range and length ``digits`` (ASCII) fits, or ``None``; Luhn not checked."""
    for brand in BRANDS:
        if brand.matches(digits):
            return brand.name
    return None


def is_card_number(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only) is a card number: a brand's range and length, and Luhn."""
    return (
        MIN_PAN_LENGTH <= len(digits) <= MAX_PAN_LENGTH
        and brand_of(digits) is not None
        and luhn_valid(digits)
    )


# -- normalisation ----------------------------------------------------------------------------------

_ASCII_DIGITS = "0123456789"


def _normalise_char(char: str) -> str:
    # Decimal digits first: NFKC leaves Arabic-Indic and other scripts' digits alone.
    value = unicodedata.decimal(char, None)
    if value is not None:
        return _ASCII_DIGITS[value]
    folded = unicodedata.normalize("NFKC", char)
    if folded == char and char.isascii():
        return char
    return "".join(
        _ASCII_DIGITS[d] if (d := unicodedata.decimal(c, None)) is not None else c for c in folded
    )


Origins = list[tuple[int, int]]
"""For each character of a normalised view, the (start, end) of the original characters it came from."""


def _normalise_with_origins(text: str, origins: Origins | None) -> tuple[str, Origins | None]:
    """``text`` normalised, with the origin of each output character."""
    if text.isascii():
        return text, origins
    out: list[str] = []
    where: Origins = []
    for index, char in enumerate(text):
        folded = _normalise_char(char)
        out.append(folded)
        origin = (index, index + 1) if origins is None else origins[index]
        where.extend([origin] * len(folded))
    return "".join(out), where


def normalise(text: str) -> str:
    """``text`` with NFKC applied per character and every Unicode decimal digit made ASCII."""
    return _normalise_with_origins(text, None)[0]


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def _percent_decode(text: str, origins: Origins | None) -> tuple[str, Origins]:
    """``text`` percent-decoded (UTF-8, bad bytes replaced) with ``+`` as a space, keeping origins."""
    base = [(i, i + 1) for i in range(len(text))] if origins is None else origins
    out: list[str] = []
    where: Origins = []
    index = 0
    while index < len(text):
        if text[index] == "%" and _PERCENT.match(text, index):
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            first = index
            while index < len(text) and (match := _PERCENT.match(text, index)):
                chars = decoder.decode(bytes([int(match.group(1), 16)]))
                index = match.end()
                if chars:
                    span = (base[first][0], base[index - 1][1])
                    out.extend(chars)
                    where.extend([span] * len(chars))
                    first = index
            tail = decoder.decode(b"", final=True)
            if tail:
                span = (base[min(first, index - 1)][0], base[index - 1][1])
                out.extend(tail)
                where.extend([span] * len(tail))
            continue
        out.append(" " if text[index] == "+" else text[index])
        where.append(base[index])
        index += 1
    return "".join(out), where


def _views(text: str) -> Iterator[tuple[str, Origins | None]]:
    """The normalised text, then (if it holds ``%``) its URL-decoded forms, each with origins."""
    view, origins = _normalise_with_origins(text, None)
    yield view, origins
    for _ in range(3):
        if "%" not in view:
            return
        decoded, where = _percent_decode(view, origins)
        if decoded == view:
            return
        view, origins = _normalise_with_origins(decoded, where)
        yield view, origins


# -- tokenising and matching -----------------------------------------------------------------------

# Letters and digits (str.isalnum), i.e. \w without the underscore.
_ALNUM = re.compile(r"[^\W_]+")
_DIGIT_PIECE = re.compile(r"[0-9]+")
_HEX_TOKEN = re.compile(r"[0-9A-Fa-f]{8,}")
_MIN_GROUP, _MAX_GROUP = 3, 6


def _chains(view: str) -> Iterator[list[tuple[int, int]]]:
    """Chains of digit groups, as (start, end) offsets in ``view``: groups only separators apart."""
    chain: list[tuple[int, int]] = []
    for token in _ALNUM.finditer(view):
        word = token.group()
        if word.isascii() and word.isdigit():
            chain.append(token.span())
            continue
        if _HEX_TOKEN.fullmatch(word):
            # A hex token: its digits belong to it (a UUID segment, a hash), not to a card.
            if chain:
                yield chain
            chain = []
            continue
        # Letters and digits glued together: letters end a chain, each digit run is a group.
        offset = token.start()
        for piece in _DIGIT_PIECE.finditer(word):
            if piece.start() > 0 and chain:
                yield chain
                chain = []
            chain.append((offset + piece.start(), offset + piece.end()))
        if word[-1] not in _ASCII_DIGITS and chain:
            yield chain
            chain = []
    if chain:
        yield chain


def _chain_matches(view: str, chain: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """(start, end) in ``view`` of every card number written in ``chain``'s groups."""
    sizes = [end - start for start, end in chain]
    for first, (start, end) in enumerate(chain):
        size = sizes[first]
        if MIN_PAN_LENGTH <= size <= MAX_PAN_LENGTH and is_card_number(view[start:end]):
            yield start, end
        if not _MIN_GROUP <= size <= _MAX_GROUP:
            continue
        digits = view[start:end]
        for last in range(first + 1, len(chain)):
            if sizes[last] > _MAX_GROUP:
                break
            group_start, group_end = chain[last]
            digits += view[group_start:group_end]
            if len(digits) > MAX_PAN_LENGTH:
                break
            if len(digits) >= MIN_PAN_LENGTH and is_card_number(digits):
                yield start, group_end
            if sizes[last] < _MIN_GROUP:
                break


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) in ``text`` of every card number, from every view."""
    for view, origins in _views(text):
        if _THIRTEEN_DIGITS.search(view) is None:
            continue
        for chain in _chains(view):
            if sum(end - start for start, end in chain) < MIN_PAN_LENGTH:
                continue
            for start, end in _chain_matches(view, chain):
                if origins is None:
                    yield start, end
                else:
                    yield origins[start][0], origins[end - 1][1]


# A card number needs 13 digits with no letter between them (letters end a chain of groups).
_THIRTEEN_DIGITS = re.compile(r"[0-9](?:[\W_]*[0-9]){12}")


# In ASCII text those 13 digits lie in a run of 13+ characters without letters: a cheap first test.
_LETTER_FREE_RUN = re.compile(r"[^A-Za-z]{13,}")
_DIGIT_COUNT = str.maketrans("", "", "0123456789")


def might_contain_card_number(text: str) -> bool:
    """A fast over-approximation of :func:`contains_card_number`: ``False`` means certainly none."""
    if not text.isascii() or "%" in text:
        return True
    for run in _LETTER_FREE_RUN.findall(text):
        if len(run) - len(run.translate(_DIGIT_COUNT)) >= MIN_PAN_LENGTH:
            return True
    return False


# A W3C traceparent says what it is: its 16-hex parent id is all digits once in ~1,850 and would then
# look like a 16-digit card number about once in 40,000 traceparents. Tracing libraries make these, not
# people; a string that is exactly one is not scanned (the same exemption the docs state).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def contains_card_number(text: str) -> bool:
    """Whether ``text`` holds a card number in any form this module recognises (see the module doc)."""
    if not might_contain_card_number(text) or _TRACEPARENT.fullmatch(text):
        return False
    return next(_spans(text), None) is not None


def find_card_numbers(text: str) -> list[tuple[int, int]]:
    """The (start, end) offsets in ``text`` of the card numbers in it, merged and sorted."""
    if not might_contain_card_number(text) or _TRACEPARENT.fullmatch(text):
        return []
    merged: list[tuple[int, int]] = []
    for start, end in sorted(set(_spans(text))):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact_card_numbers(text: str, mask: str = "[REDACTED-PAN]") -> str:
    """``text`` with every card number (in any recognised form) replaced by ``mask``."""
    spans = find_card_numbers(text)
    if not spans:
        return text
    parts: list[str] = []
    position = 0
    for start, end in spans:
        parts.append(text[position:start])
        parts.append(mask)
        position = end
    parts.append(text[position:])
    return "".join(parts)
