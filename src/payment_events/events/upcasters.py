"""Upcasters: pure functions that turn the wire form of version N of an event into version N + 1.

Decoding an old event validates it against its own version's model, then runs the upcasters up to the
newest version and validates the result against the newest model, so consumers only ever handle the
current classes. An upcaster works on the JSON object (camelCase keys), never on model instances, and
must return a new dict with ``schemaVersion`` increased by exactly one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["Upcaster", "payment_failed_v1_to_v2"]

#: Turns the JSON object of version N into the JSON object of version N + 1.
Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]


def payment_failed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """PaymentFailed v1 -> v2: ``retryable`` did not exist in v1, so it is unknown (``null``)."""
    return {**data, "schemaVersion": 2, "retryable": None}
