"""Small pieces every confluent-kafka producer of this package shares (the relay's and the direct
publisher's): how a producer is closed without leaving a message in limbo."""

from __future__ import annotations

from typing import Any


def flush_then_purge(producer: Any, timeout: float) -> int:
    """Flush ``producer`` for up to ``timeout`` seconds; if messages are still undelivered, purge them
    (queued and in flight) and serve their delivery reports, so every message gets an outcome (a purge
    error) instead of vanishing with the client. Returns how many were still undelivered after the
    flush (0: all delivered). The caller says what that means for its messages."""
    left = int(producer.flush(max(0.0, timeout)))
    if left:
        producer.purge(in_queue=True, in_flight=True, blocking=True)
        producer.flush(0)
    return left
