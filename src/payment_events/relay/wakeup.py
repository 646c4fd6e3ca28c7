"""Wake-ups: sleep until a commit notifies (PostgreSQL LISTEN), a commit changes the SQLite file, or a
poll interval passes.

PostgreSQL delivers a ``NOTIFY`` to listeners only when the notifying transaction commits, so a wake-up
always means "committed rows may be waiting". Notifications can be lost (the listening connection
drops), which is why the relay also polls: a lost notification costs at most one poll interval.

SQLite has no NOTIFY. :class:`SqliteChangeWaker` watches ``PRAGMA data_version`` instead: a counter that
changes on a connection whenever *another* connection (any thread or process) committed to the
database. Reading it is a few microseconds and touches no table, so the relay can look every
millisecond or two and claim only when something was committed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("payment_events.relay.wakeup")


class SleepWaker:
    """Polling only: waits the whole timeout (SQLite, or LISTEN disabled)."""

    def wait(self, timeout: float) -> bool:
        """Sleep ``timeout`` seconds; never reports a notification."""
        if timeout > 0:
            time.sleep(timeout)
        return False

    def close(self) -> None:
        """Nothing to release."""


class SqliteChangeWaker:
    """Wakes when a commit changed the SQLite database (``PRAGMA data_version``), polling adaptively.

    Looks every ``hot_interval`` seconds (1 ms) for ``hot_seconds`` (1 s) after the last change seen,
    then every ``idle_interval`` (10 ms) until the next change: prompt under load, ~100 cheap reads a
    second when idle. Works whether the writers share the relay's process or not. The relay's own marks
    also change the database (its store uses other connections), so a cycle that marked rows is followed
    by one wake-up and one short claim; that is the price of knowing nothing about the writers.
    If the file cannot be opened the waker only sleeps (the relay's polling still finds the rows).
    """

    def __init__(
        self,
        path: str,
        *,
        hot_interval: float = 0.001,
        idle_interval: float = 0.01,
        hot_seconds: float = 1.0,
    ) -> None:
        import sqlite3

        self._hot_interval = hot_interval
        self._idle_interval = idle_interval
        self._hot_seconds = hot_seconds
        self._last_change = float("-inf")
        self._conn: sqlite3.Connection | None = None
        try:
            # Autocommit (isolation_level=None): never holds a read transaction open between looks.
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._version = self._read()
        except sqlite3.Error as exc:
            log.warning(
                "cannot watch the SQLite file; polling only",
                extra={"event": "relay.watch_failed", "error": type(exc).__name__},
            )
            self._conn = None
            self._version = 0

    def _read(self) -> int:
        assert self._conn is not None
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def wait(self, timeout: float) -> bool:
        """Block until another connection committed (True) or ``timeout`` seconds passed (False)."""
        import sqlite3

        if self._conn is None:
            return SleepWaker().wait(timeout)
        now = time.monotonic()
        deadline = now + max(timeout, 0.0)
        while True:
            try:
                version = self._read()
            except sqlite3.Error:
                return SleepWaker().wait(deadline - time.monotonic())
            now = time.monotonic()
            if version != self._version:
                self._version = version
                self._last_change = now
                return True
            left = deadline - now
            if left <= 0:
                return False
            hot = now - self._last_change < self._hot_seconds
            time.sleep(min(left, self._hot_interval if hot else self._idle_interval))

    def close(self) -> None:
        """Close the watching connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def libpq_dsn(database_url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL (``postgresql+psycopg://`` -> ``postgresql://``)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresNotifyWaker:
    """LISTENs on a channel with its own autocommit psycopg connection; reconnects after failures."""

    def __init__(self, database_url: str, channel: str, reconnect_seconds: float = 5.0) -> None:
        from payment_events.outbox.postgres import application_name

        self._dsn = libpq_dsn(database_url)
        name = application_name(database_url, "listen")
        self._name: dict[str, Any] = {} if name is None else {"application_name": name}
        self._channel = channel
        self._reconnect_seconds = reconnect_seconds
        self._conn: object | None = None
        self._next_connect = 0.0
        self._connect()

    def _connect(self) -> None:
        import psycopg

        self._next_connect = time.monotonic() + self._reconnect_seconds
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, **self._name)
        except (psycopg.Error, OSError) as exc:  # OSError: EMFILE and other transient resource errors
            log.warning(
                "cannot LISTEN; polling until the connection works",
                extra={"event": "relay.listen_failed", "error": type(exc).__name__},
            )
            return
        try:
            conn.execute(f"LISTEN {self._channel}")  # channel is validated as an identifier
        except (psycopg.Error, OSError) as exc:
            conn.close()
            log.warning(
                "cannot LISTEN; polling until the connection works",
                extra={"event": "relay.listen_failed", "error": type(exc).__name__},
            )
            return
        self._conn = conn
        log.debug("listening", extra={"event": "relay.listening", "channel": self._channel})

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives (True) or ``timeout`` seconds passed (False)."""
        import psycopg

        conn = self._conn
        if conn is None:
            if time.monotonic() >= self._next_connect:
                self._connect()
            return SleepWaker().wait(timeout)
        assert isinstance(conn, psycopg.Connection)
        try:
            woke = False
            for _ in conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
                woke = True
            if woke:
                # Several commits may have notified: take what is already queued without waiting.
                for _ in conn.notifies(timeout=0.0, stop_after=1000):
                    pass
            return woke
        except (psycopg.Error, OSError) as exc:
            log.warning(
                "the LISTEN connection failed; polling until it is back",
                extra={"event": "relay.listen_lost", "error": type(exc).__name__},
            )
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone anyway
                log.debug("closing the LISTEN connection failed", extra={"event": "relay.listen_close"})

    def close(self) -> None:
        """Close the LISTEN connection."""
        self._drop()
