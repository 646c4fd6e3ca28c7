"""Generators for the two privacy rates: an adversarial card corpus and realistic honest ids.

Used by ``python -m bench.privacy_rates`` (millions of ids, the whole corpus) and by
``tests/unit/test_card_numbers.py`` (samples). Pure Python, no servers, deterministic for a seed.

* :func:`adversarial_texts`: the published test card numbers of every recognised brand, written with
  every separator, Unicode digit form and URL encoding of issue 13, bare and inside ids, URLs and text.
* :func:`honest_ids`: ids as payment services really make them (prefixed UUIDv4/UUIDv7 and hex, ULIDs,
  Stripe-like ids, ``ORD-YYYYMMDD-NNNNNN``, 6-20 digit numeric ids, gateway references).
"""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from payment_events.errors import PaymentEventsError, SensitiveDataError
from payment_events.events import BaseEvent
from payment_events.events.card_numbers import contains_card_number, is_card_number
from payment_events.events.codec import decode
from payment_events.events.examples import example_event
from payment_events.events.registry import DEFAULT_REGISTRY

__all__ = [
    "DIGIT_FORMS",
    "HONEST_FORMATS",
    "SEPARATORS",
    "TEST_CARDS",
    "AdversarialText",
    "Probe",
    "adversarial_texts",
    "grouped",
    "honest_ids",
    "is_bare_card_id",
    "probe",
    "probed_models",
    "string_paths",
    "wire_example",
]

#: Published test card numbers (scheme and PSP test pages), by brand; every one is a card number.
TEST_CARDS: dict[str, tuple[str, ...]] = {
    "visa": ("4111111111111111", "4242424242424242", "4012888888881881", "4222222222222", "4000056655665556",
             "4111111111111111110"),
    "mastercard": ("5555555555554444", "5105105105105100", "2223003122003222", "2221000000000009",
                   "5200828282828210"),
    "amex": ("378282246310005", "371449635398431", "378734493671000"),
    "discover": ("6011111111111117", "6011000990139424", "6445644564456445", "6500000000000002"),
    "jcb": ("3530111333300000", "3566002020360505", "3566111111111113"),
    "diners": ("30569309025904", "38520000023237", "36227206271667", "3056930009020004"),
    "unionpay": ("6200000000000005", "6205500000000000004", "6250941006528599", "8171999927660000"),
    "maestro": ("6759649826438453", "6799990100000000019", "5018000000000009"),
    "mir": ("2200000000000004",),
}

#: Separators between digit groups: every form of issue 13 and a few more.
SEPARATORS: dict[str, str] = {
    "none": "",
    "space": " ",
    "dash": "-",
    "dot": ".",
    "slash": "/",
    "underscore": "_",
    "colon": ":",
    "double-space": "  ",
    "no-break-space": "\u00a0",
    "narrow-no-break-space": "\u202f",
    "thin-space": "\u2009",
    "zero-width-space": "\u200b",
    "en-dash": "\u2013",
    "em-dash": "\u2014",
    "spaced-dash": " - ",
    "comma": ",",
    "plus": "+",
    "mixed": "mixed",  # cycles through " ", ".", "-", "/", "\u00a0"
}
_MIXED = (" ", ".", "-", "/", "\u00a0")

#: Unicode digit forms: the zero of each script (digits are zero + 0..9).
DIGIT_FORMS: dict[str, int | None] = {
    "ascii": 0x30,
    "arabic-indic": 0x660,
    "extended-arabic-indic": 0x6F0,
    "fullwidth": 0xFF10,
    "devanagari": 0x966,
    "bengali": 0x9E6,
    "thai": 0xE50,
    "math-bold": 0x1D7CE,
    "mixed-ascii-fullwidth": None,
}

#: Where a card is put: (name, template); ``{}`` is the written card.
CONTEXTS: tuple[tuple[str, str], ...] = (
    ("bare", "{}"),
    ("id-prefix", "pay_{}"),
    ("id-prefix-dash", "ord-{}"),
    ("text", "card {} declined"),
    ("text-punct", "ref:{}."),
    ("text-letters-after", "{}x"),
)

def _percent_each(text: str) -> str:
    return "".join(f"%{ord(char):X}" for char in text)


#: URL forms: (name, function from (digits, grouped-with-spaces) to a URL).
URL_FORMS: tuple[tuple[str, Callable[[str, list[str]], str]], ...] = (
    ("query-plus", lambda d, g: "https://pay.example.com/return?ref=" + "+".join(g)),
    ("query-%20", lambda d, g: "https://pay.example.com/return?ref=" + "%20".join(g)),
    ("query-%2D", lambda d, g: "https://pay.example.com/return?ref=" + "%2D".join(g)),
    ("query-percent-digits", lambda d, g: "https://pay.example.com/r?ref=" + _percent_each(d)),
    ("query-double-encoded", lambda d, g: "https://pay.example.com/r?ref=" + "%2520".join(g)),
    ("query-fullwidth-utf8", lambda d, g: "https://pay.example.com/r?ref="
     + quote("".join(chr(0xFF10 + int(c)) for c in d), safe="")),
    ("query-arabic-utf8", lambda d, g: "https://pay.example.com/r?ref="
     + quote("".join(chr(0x660 + int(c)) for c in d), safe="")),
    ("path", lambda d, g: "https://pay.example.com/card/" + d + "/done"),
    ("path-slashes", lambda d, g: "https://pay.example.com/c/" + "/".join(g)),
    ("fragment-dotted", lambda d, g: "https://pay.example.com/done#" + ".".join(g)),
    ("fragment-param", lambda d, g: "https://pay.example.com/done#ref=" + "-".join(g)),
)


def grouped(digits: str) -> list[str]:
    """``digits`` cut into the groups cards are printed in: Amex 4-6-5, 14 digits 4-6-4, else fours."""
    if len(digits) == 15:
        return [digits[:4], digits[4:10], digits[10:]]
    if len(digits) == 14:
        return [digits[:4], digits[4:10], digits[10:]]
    return [digits[i : i + 4] for i in range(0, len(digits), 4)]


def _join(groups: list[str], separator: str) -> str:
    if separator != "mixed":
        return separator.join(groups)
    out = groups[0]
    for index, group in enumerate(groups[1:]):
        out += _MIXED[index % len(_MIXED)] + group
    return out


def _digits_in(text: str, zero: int | None) -> str:
    if zero is None:
        return "".join(chr(0xFF10 + int(c)) if i % 2 and c.isdigit() else c for i, c in enumerate(text))
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


@dataclass(frozen=True, slots=True)
class AdversarialText:
    """One adversarial string: the card it hides (ASCII digits), how it was written, and the text."""

    card: str
    brand: str
    form: str
    text: str
    is_url: bool


def adversarial_texts() -> Iterator[AdversarialText]:
    """Every test card in every separator x digit form x context, and in every URL form."""
    for brand, cards in TEST_CARDS.items():
        for card in cards:
            groups = grouped(card)
            for sep_name, separator in SEPARATORS.items():
                written = _join(groups, separator)
                for digit_name, zero in DIGIT_FORMS.items():
                    shown = _digits_in(written, zero)
                    for context_name, template in CONTEXTS:
                        form = f"{sep_name}/{digit_name}/{context_name}"
                        yield AdversarialText(card, brand, form, template.format(shown), is_url=False)
            for url_name, build in URL_FORMS:
                yield AdversarialText(card, brand, f"url/{url_name}", build(card, groups), is_url=True)


# -- honest ids ------------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE62 = string.digits + string.ascii_letters
_START = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
_END = datetime(2035, 1, 1, tzinfo=UTC).timestamp()


def _uuid4(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _uuid7(rng: random.Random) -> uuid.UUID:
    ms = int(rng.uniform(_START, _END) * 1000)
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    return uuid.UUID(int=value)


def _ulid(rng: random.Random) -> str:
    value = (int(rng.uniform(_START, _END) * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _pick(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choices(alphabet, k=size))


def _numeric(rng: random.Random, low: int, high: int) -> str:
    size = rng.randint(low, high)
    return str(rng.randint(1, 9)) + _pick(rng, string.digits, size - 1)


def _order_date(rng: random.Random) -> str:
    day = datetime.fromtimestamp(rng.uniform(_START, _END), UTC)
    return f"ORD-{day:%Y%m%d}-{rng.randrange(1_000_000):06d}"


#: Honest id formats: name -> generator.
HONEST_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "pay_<uuid4>": lambda r: f"pay_{_uuid4(r)}",
    "ord_<uuid4.hex>": lambda r: f"ord_{_uuid4(r).hex}",
    "pi_<uuid4>": lambda r: f"pi_{_uuid4(r)}",
    "pay_<uuid7>": lambda r: f"pay_{_uuid7(r)}",
    "ord_<uuid7.hex>": lambda r: f"ord_{_uuid7(r).hex}",
    "<uuid4>": lambda r: str(_uuid4(r)),
    "<uuid7>": lambda r: str(_uuid7(r)),
    "<uuid4.hex>": lambda r: _uuid4(r).hex,
    "pay_<hex16>": lambda r: "pay_" + _pick(r, "0123456789abcdef", 16),
    "<ULID>": _ulid,
    "pay_<ULID>": lambda r: "pay_" + _ulid(r),
    "stripe pi_/ch_/cus_/pm_ (24 base62)": lambda r: r.choice(("pi_", "ch_", "cus_", "pm_", "re_"))
    + _pick(r, _BASE62, 24),
    "checkout.com pay_ (26 base32)": lambda r: "pay_" + _pick(r, "abcdefghijklmnopqrstuvwxyz234567", 26),
    "ORD-YYYYMMDD-NNNNNN": _order_date,
    "adyen psp (16 upper alnum)": lambda r: _pick(r, string.ascii_uppercase + string.digits, 16),
    "paypal (17 upper alnum)": lambda r: _pick(r, string.ascii_uppercase + string.digits, 17),
    "braintree (8 lower alnum)": lambda r: _pick(r, string.ascii_lowercase + string.digits, 8),
    "numeric 6-20 digits": lambda r: _numeric(r, 6, 20),
    "ord_<numeric 6-12>": lambda r: "ord_" + _numeric(r, 6, 12),
    "W3C traceparent": lambda r: f"00-{r.getrandbits(128):032x}-{r.getrandbits(64):016x}-01",
}


def honest_ids(count: int, seed: int = 13) -> Iterator[tuple[str, str]]:
    """``count`` (format name, id) pairs, formats taken in turn, deterministic for ``seed``."""
    rng = random.Random(seed)
    names = list(HONEST_FORMATS)
    for index in range(count):
        name = names[index % len(names)]
        yield name, HONEST_FORMATS[name](rng)


_ID_PREFIX = re.compile(r"[A-Za-z]+[_\-.:]")


def is_bare_card_id(value: str) -> bool:
    """Whether ``value``'s body (after an optional ``pay_``-style prefix) is all digits and itself a card
    number: such an id cannot be told from ``pay_<card>``, so it is refused by design and counted apart.
    (A short random hex id is all digits now and then: ``pay_<16 hex>`` about once in 1,850.)"""
    prefix = _ID_PREFIX.match(value)
    body = value[prefix.end() :] if prefix else value
    return body.isascii() and body.isdigit() and is_card_number(body)


# -- events: every string field --------------------------------------------------------------------


_wire_examples: dict[type[BaseEvent], str] = {}


def wire_example(model: type[BaseEvent]) -> dict[str, Any]:
    """The wire (camelCase JSON) form of ``model``'s valid example event (a fresh copy)."""
    cached = _wire_examples.get(model)
    if cached is None:
        cached = _wire_examples[model] = example_event(model).model_dump_json(by_alias=True)
    data = json.loads(cached)
    assert isinstance(data, dict)
    return data


def string_paths(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every string value in the wire form ``data`` (nested objects included)."""
    paths: list[tuple[str, ...]] = []
    for name, value in data.items():
        if isinstance(value, str):
            paths.append((*prefix, name))
        elif isinstance(value, dict):
            paths.extend(string_paths(value, (*prefix, name)))
    return paths


def _with(data: dict[str, Any], path: tuple[str, ...], value: str) -> dict[str, Any]:
    copy = data
    target = copy
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return copy


def _messages(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        current = current.__cause__ or current.__context__


@dataclass(frozen=True, slots=True)
class Probe:
    """What happened to one adversarial text put in one field: through the model and through decode."""

    accepted: bool
    """A miss: the event was built or decoded and still holds the card number (a field that drops a
    malformed value instead, like ``traceparent``, keeps the card out: not a miss)."""
    echoed: bool
    """A miss: some error message (or a chained cause) shows the card number."""
    sensitive: bool
    """Refused as card data (SensitiveDataError), not only as an invalid value."""


def probe(model: type[BaseEvent], path: tuple[str, ...], text: str, card: str) -> Probe:
    """Put ``text`` at ``path`` of ``model``'s example (wire form); build it, then decode it."""
    data = _with(wire_example(model), path, text)
    accepted = echoed = False
    sensitive = True
    attempts: list[Callable[[], object]] = [
        lambda: model(**data),
        lambda: decode(json.dumps(data, ensure_ascii=False).encode()),
    ]
    for attempt in attempts:
        try:
            built = attempt()
        except PaymentEventsError as exc:
            for message in _messages(exc):
                if text in message or card in message or contains_card_number(message):
                    echoed = True
            if not isinstance(exc, SensitiveDataError) and not isinstance(
                exc.__cause__, SensitiveDataError
            ):
                sensitive = False
        else:
            wire = built.model_dump_json(by_alias=True) if isinstance(built, BaseEvent) else repr(built)
            if text in wire or card in wire or contains_card_number(wire):
                accepted = True
    return Probe(accepted=accepted, echoed=echoed, sensitive=sensitive)


#: Every registered model whose fields the corpus is put in.
def probed_models() -> list[type[BaseEvent]]:
    """The registered event models (all versions)."""
    return DEFAULT_REGISTRY.models()
