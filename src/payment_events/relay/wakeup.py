"""Wake-ups: sleep until a commit notifies (PostgreSQL LISTEN) or a poll interval passes.

PostgreSQL delivers a ``NOTIFY`` to listeners only when the notifying transaction commits, so a wake-up
always means "committed rows may be waiting". Notifications can be lost (the listening connection
drops), which is why the relay also polls: a lost notification costs at most one poll interval.
"""

from __future__ import annotations

import logging
import time

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


def libpq_dsn(database_url: str) -> str:
    """A psycopg connection string from a SQLAlchemy URL (``postgresql+psycopg://`` -> ``postgresql://``)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresNotifyWaker:
    """LISTENs on a channel with its own autocommit psycopg connection; reconnects after failures."""

    def __init__(self, database_url: str, channel: str, reconnect_seconds: float = 5.0) -> None:
        self._dsn = libpq_dsn(database_url)
        self._channel = channel
        self._reconnect_seconds = reconnect_seconds
        self._conn: object | None = None
        self._next_connect = 0.0
        self._connect()

    def _connect(self) -> None:
        import psycopg

        self._next_connect = time.monotonic() + self._reconnect_seconds
        try:
            conn = psycopg.connect(self._dsn, autocommit=True)
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
