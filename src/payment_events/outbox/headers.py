"""Kafka headers as the outbox's JSON text column: readable for operators, exact for any bytes.

Stored as a JSON list of ``[name, value]`` pairs (Kafka headers are ordered and may repeat a name).
A value that is valid UTF-8 is stored as text; any other value as ``[name, base64, "base64"]``.
Pure: no database imports.
"""

from __future__ import annotations

import base64
import json
from json.scanner import make_scanner
from typing import Any, cast

from payment_events.errors import SerializationError

Headers = tuple[tuple[str, bytes], ...]

_scan: Any = cast(Any, make_scanner)(json.JSONDecoder())
"""The json module's scanner (C when available): ``_scan(text, 0) -> (value, end)``."""


def dump_headers(headers: Headers) -> str:
    """The JSON text stored in the ``headers`` column."""
    items: list[list[str]] = []
    for name, value in headers:
        try:
            items.append([name, value.decode("utf-8")])
        except UnicodeDecodeError:
            items.append([name, base64.b64encode(value).decode("ascii"), "base64"])
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def load_headers(text: str) -> Headers:
    """Headers back from the ``headers`` column; raises ``SerializationError`` on malformed text.

    This runs for every row the relay claims, so the common case (every value is text) is one
    comprehension; anything else takes the checked path.
    """
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise SerializationError("the outbox row's headers column is not valid JSON") from exc
    if items.__class__ is not list:
        return _load_checked(items)
    try:
        headers = tuple([(name, value.encode()) for name, value in items])
    except (ValueError, TypeError, AttributeError):
        return _load_checked(items)
    for name, _ in headers:
        if name.__class__ is not str:
            return _load_checked(items)
    return headers


HEADERS_NOT_JSON = "headers column is not valid JSON"
HEADERS_NOT_HEADER_JSON = "headers column is not a JSON list of [name, value] pairs"


def parse_headers(text: object) -> tuple[Headers, str | None]:
    """Like :func:`load_headers`, but never raises: ``(headers, None)`` for a sound column, or
    ``((), problem)`` with a short, content-free description of what is wrong with it.

    The relay's claim uses this, so one malformed row is dead-lettered instead of failing every claim.
    """
    try:
        # The C scanner straight away: json.loads' Python layers cost about as much as the parse of a
        # ~400-byte header list. Anything unusual (whitespace around it, bytes) takes json.loads below.
        items, end = _scan(text, 0)
        if end != len(text):  # type: ignore[arg-type]  # str here, or the scanner raised
            raise ValueError("trailing data")
    except (StopIteration, ValueError, TypeError, RecursionError):
        if not isinstance(text, str | bytes | bytearray):
            return (), HEADERS_NOT_JSON
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            return (), HEADERS_NOT_JSON
    if items.__class__ is list:
        try:
            headers = tuple([(name, value.encode()) for name, value in items])
        except (ValueError, TypeError, AttributeError):
            pass
        else:
            for name, _ in headers:
                if name.__class__ is not str:
                    break
            else:
                return headers, None
    try:
        return _load_checked(items), None
    except SerializationError:
        return (), HEADERS_NOT_HEADER_JSON


def _load_checked(items: object) -> Headers:
    out: list[tuple[str, bytes]] = []
    try:
        if not isinstance(items, list):
            raise TypeError("headers must be a JSON list")
        for item in items:
            if not isinstance(item, list) or not item or not isinstance(item[0], str):
                raise TypeError("header item must start with a name")
            if len(item) == 2 and isinstance(item[1], str):
                out.append((item[0], item[1].encode("utf-8")))
            elif len(item) == 3 and item[2] == "base64" and isinstance(item[1], str):
                out.append((item[0], base64.b64decode(item[1], validate=True)))
            else:
                raise ValueError("header item must be [name, value] or [name, value, 'base64']")
    except (ValueError, TypeError) as exc:
        raise SerializationError("the outbox row's headers column is not valid header JSON") from exc
    return tuple(out)
