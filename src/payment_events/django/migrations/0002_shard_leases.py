"""The shard lease table, exactly as Alembic revision 0003 creates it (fenced leases, exactly-once mode).

Frozen SQL per database vendor like ``0001_outbox``; the Alembic version is moved from 0002 to 0003 so
the relay's schema check passes. A database already at revision 0003 (``payment-events db upgrade``) is
left as it is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations

VERSION_TABLE = "payment_events_alembic_version"
TABLE = "payment_events_shard_leases"
ALEMBIC_REVISION = "0003"

_COLUMNS = """
    namespace INTEGER NOT NULL,
    shard SMALLINT NOT NULL,
    owner VARCHAR(200),
    generation BIGINT NOT NULL,
    transactional_id VARCHAR(249),
    taken_at {timestamp} NOT NULL,
    settled_at {timestamp},
    CONSTRAINT pk_payment_events_shard_leases PRIMARY KEY (namespace, shard)"""

SQL: dict[str, str] = {
    "postgresql": f"CREATE TABLE {TABLE} (" + _COLUMNS.format(timestamp="TIMESTAMP WITH TIME ZONE") + "\n)",
    "sqlite": f"CREATE TABLE {TABLE} (" + _COLUMNS.format(timestamp="DATETIME") + "\n)",
}


def create_leases(apps: Any, schema_editor: Any) -> None:
    """Create the lease table and move the Alembic version to 0003, unless it already exists."""
    connection = schema_editor.connection
    vendor = connection.vendor
    if vendor not in SQL:
        raise RuntimeError(f"the payment-events outbox supports PostgreSQL and SQLite, not {vendor}")
    if TABLE in connection.introspection.table_names():
        return
    schema_editor.execute(SQL[vendor])
    schema_editor.execute(f"UPDATE {VERSION_TABLE} SET version_num = '{ALEMBIC_REVISION}'")


def drop_leases(apps: Any, schema_editor: Any) -> None:
    """Drop the lease table and move the Alembic version back to 0002."""
    schema_editor.execute(f"DROP TABLE IF EXISTS {TABLE}")
    schema_editor.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0002'")


class Migration(migrations.Migration):
    """Create ``payment_events_shard_leases`` at Alembic revision 0003."""

    dependencies: ClassVar[list[tuple[str, str]]] = [("payment_events", "0001_outbox")]
    operations: ClassVar[list[Any]] = [migrations.RunPython(create_leases, drop_leases)]
