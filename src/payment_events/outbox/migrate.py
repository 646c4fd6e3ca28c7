"""Create and upgrade the outbox schema: ``upgrade(url_or_engine)`` (``payment-events db upgrade``).

Alembic runs on a connection we open (no ``alembic.ini``), and records its version in
``payment_events_alembic_version``, so an application that uses Alembic for its own tables keeps its
``alembic_version`` untouched and both histories live side by side in one database. Works on PostgreSQL
and SQLite; on PostgreSQL concurrent upgrades (two relays starting at once) wait for each other.

An application's own ``alembic revision --autogenerate`` sees the outbox tables as tables missing from
its metadata and proposes to drop them. Its ``env.py`` passes :func:`include_name` (and, if it imports
our metadata, :func:`include_object`) to ``context.configure`` so autogenerate leaves them alone::

    from payment_events.outbox.migrate import include_name, include_object

    context.configure(connection=connection, target_metadata=target_metadata,
                      include_name=include_name, include_object=include_object)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from payment_events.dburl import refuse_async_url
from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.outbox.dberrors import driver_message
from payment_events.outbox.fencing import LEASES_TABLE_NAME
from payment_events.outbox.table import TABLE_NAME

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "payment_events_alembic_version"
"""Where Alembic records the outbox schema version (never the application's ``alembic_version``)."""

OUTBOX_TABLES = frozenset({TABLE_NAME, LEASES_TABLE_NAME, VERSION_TABLE})
"""The tables payment-events owns: an application's autogenerate must neither create nor drop them."""

_PROCESS_LOCK = threading.Lock()  # Alembic's `context`/`op` are process-wide proxies: one run at a time
MIGRATION_LOCK_ID = 0x7065_6F62  # "peob": payment-events outbox, as a bigint advisory-lock key
SCRIPT_LOCATION = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _engine(url_or_engine: str | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    refuse_async_url(url_or_engine)
    engine = create_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Bring the outbox schema at ``url_or_engine`` up to ``revision`` (default: the newest). Idempotent.

    Raises :class:`~payment_events.errors.StoreError` if the database cannot be reached or the DDL fails.
    """
    from alembic import command

    with _PROCESS_LOCK, _engine(url_or_engine) as engine:
        try:
            with engine.begin() as connection:
                command.upgrade(_config(connection), revision)
        except SQLAlchemyError as exc:
            raise StoreError(f"outbox migration failed: {type(exc).__name__}; check the database URL "
                             "and that the user may create tables") from exc


def head_revision() -> str:
    """The newest schema revision this version of the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(SCRIPT_LOCATION)).get_current_head()
    assert head is not None
    return head


def current_revision(url_or_engine: str | Engine) -> str | None:
    """The outbox schema revision the database is at, or ``None`` if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with _engine(url_or_engine) as engine:
        try:
            with engine.connect() as connection:
                if not inspect(connection).has_table(VERSION_TABLE):
                    return None
                context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
                return context.get_current_revision()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the outbox schema version: {driver_message(exc)}") from exc


def check(url_or_engine: str | Engine) -> None:
    """Raise :class:`~payment_events.errors.MigrationRequiredError` unless the schema is at the head."""
    current = current_revision(url_or_engine)
    head = head_revision()
    if current != head:
        raise MigrationRequiredError(
            f"the outbox schema is at revision {current or 'none'} but this code needs {head}: "
            "run `payment-events db upgrade`"
        )


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: skip the outbox tables (and so their columns, indexes and
    constraints) when autogenerate reflects the database; everything else is included.

    To combine it with a filter of your own: ``include_name=lambda *a: include_name(*a) and mine(*a)``.
    """
    if type_ == "table":
        return name not in OUTBOX_TABLES
    table = parent_names.get("table_name") if hasattr(parent_names, "get") else None
    return table not in OUTBOX_TABLES


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic ``include_object`` hook: skip the outbox tables and anything on them, whether reflected
    from the database or present in the application's metadata (e.g. after importing our table)."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = getattr(table, "name", None)
    return table_name not in OUTBOX_TABLES
