"""Reachability probes: the broker and the database checked on their own schedule (every few seconds,
each on a small client of its own), so readiness and the broker alert reflect an outage even while the
relay is idle."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from payment_events.ops.health import HealthState
from payment_events.ops.logs import get_logger
from payment_events.relay.observer import RelayObserver

_log = get_logger(__name__)


class ReachabilitySink(Protocol):
    """Where probe results go: any RelayObserver fits, or a sink that updates state without a tick."""

    def broker_reachable(self, reachable: bool) -> None:
        """The broker answered (or not)."""

    def database_reachable(self, reachable: bool) -> None:
        """The database answered (or not)."""


class ProbeSink:
    """Sends probe results to observers (metrics, alerts) and to the health state *without* a liveness
    tick: a probe thread being alive says nothing about the relay loop."""

    def __init__(self, state: HealthState, *observers: RelayObserver) -> None:
        self._state = state
        self._observers = observers

    def broker_reachable(self, reachable: bool) -> None:
        """Forward to the observers, then set the state."""
        for observer in self._observers:
            observer.broker_reachable(reachable)
        self._state.set_broker(reachable)

    def database_reachable(self, reachable: bool) -> None:
        """Forward to the observers, then set the state."""
        for observer in self._observers:
            observer.database_reachable(reachable)
        self._state.set_database(reachable)


class ReachabilityProbe:
    """Checks the broker and the database every ``interval`` seconds from a daemon thread.

    Each check is a callable returning True when the dependency answers (it may raise: that means False).
    Results go to ``observer.broker_reachable`` / ``observer.database_reachable``, so metrics, alerts and
    readiness see an outage even when the relay has nothing to publish.
    """

    def __init__(
        self,
        observer: ReachabilitySink,
        broker_check: Callable[[], bool] | None,
        database_check: Callable[[], bool] | None,
        interval: float = 5.0,
    ) -> None:
        self._observer = observer
        self._broker_check = broker_check
        self._database_check = database_check
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="payment-events-probe", daemon=True)

    def start(self) -> ReachabilityProbe:
        """Start probing; returns self."""
        self._thread.start()
        return self

    def probe_once(self) -> None:
        """Run every check once and report the results."""
        if self._broker_check is not None:
            self._observer.broker_reachable(_check(self._broker_check))
        if self._database_check is not None:
            self._observer.database_reachable(_check(self._database_check))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop probing and wait for the thread (bounded)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.probe_once()
            self._stop.wait(self._interval)


def _check(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 -- any failure of a probe means "unreachable"
        return False


class ReachabilityChecks:
    """The probe's two checks: broker metadata and ``SELECT 1``, each on its own small client."""

    def __init__(self, kafka_config: Mapping[str, Any], database_url: str) -> None:
        import sqlalchemy as sa
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient({**kafka_config, "socket.timeout.ms": 3000})
        self._engine = sa.create_engine(database_url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            from payment_events.outbox.sqlite import configure_sqlite

            configure_sqlite(self._engine)  # a busy timeout, so the relay's writes do not read as an outage

    def broker(self) -> bool:
        """True when a broker answers a metadata request within 3 s."""
        self._admin.list_topics(timeout=3)
        return True

    def database(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        import sqlalchemy as sa

        with self._engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True

    def close(self) -> None:
        """Release the database pool."""
        self._engine.dispose()
