"""Alembic environment: runs on the connection handed over by :mod:`payment_events.outbox.migrate`.

There is no ``alembic.ini`` and no URL in here: the library passes an open connection, so the same code
serves the CLI (``payment-events db upgrade``), tests and applications that migrate at start-up.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from payment_events.outbox.migrate import MIGRATION_LOCK_ID, VERSION_TABLE
from payment_events.outbox.table import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two relays starting at once must not race through the same DDL: serialize on a lock that
            # is released when this migration transaction ends.
            connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK_ID})
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("run outbox migrations through payment_events.outbox.migrate.upgrade()")
_run(_connection)
