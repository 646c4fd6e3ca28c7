"""Kafka headers as the outbox's JSON text column: readable for operators, exact for any bytes.

Stored as a JSON list of ``[name, value]`` pairs (Kafka headers are ordered and may repeat a name).
A value that is valid UTF-8 is stored as text; any other value as ``[name, base64, "base64"]``.
Pure: no database imports.
"""

from __future__ import annotations

import base64
import json

from payment_events.errors import SerializationError

Headers = tuple[tuple[str, bytes], ...]


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
    """Headers back from the ``headers`` column; raises ``SerializationError`` on malformed text."""
    try:
        items = json.loads(text)
        out: list[tuple[str, bytes]] = []
        for item in items:
            if len(item) == 3 and item[2] == "base64":
                out.append((str(item[0]), base64.b64decode(item[1], validate=True)))
            elif len(item) == 2:
                out.append((str(item[0]), str(item[1]).encode("utf-8")))
            else:
                raise ValueError("header item must be [name, value] or [name, value, 'base64']")
        return tuple(out)
    except (ValueError, TypeError) as exc:
        raise SerializationError("the outbox row's headers column is not valid header JSON") from exc
