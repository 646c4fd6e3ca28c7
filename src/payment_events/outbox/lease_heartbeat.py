"""A heartbeat that keeps a live relay's lease session from expiring between refreshes.

The lease session expires on the server after ``takeover_seconds`` of silence (see
:mod:`payment_events.outbox.leases`), so that a relay whose host or network vanished loses its shards
quickly. A live relay may be silent longer than that on its lease connection -- a batch waiting for its
delivery reports, a long purge -- so this thread renews the session (``PostgresShardLeases.ping``) every
``interval`` seconds, independent of the relay loop.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Pingable(Protocol):
    """Leases whose session can be renewed."""

    def ping(self) -> bool:
        """Renew the session; False if the connection is gone."""
        ...


class LeaseHeartbeat:
    """A daemon thread calling ``leases.ping()`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, leases: Pingable, interval: float) -> None:
        self._leases = leases
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay-lease-heartbeat", daemon=True)

    def start(self) -> LeaseHeartbeat:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (bounded wait)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._leases.ping()
            except Exception:  # noqa: BLE001, S112 - a failed ping is the lease's own business (it drops)
                continue
