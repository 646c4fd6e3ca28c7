"""A real Django project for the tests: the example shop (examples/django_shop) configured in-process
with two databases, ``default`` on a PostgreSQL database of its own and ``lite`` on an SQLite file,
both migrated with ``manage.py migrate`` (which runs payment_events.django's migration)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa


@dataclass(frozen=True)
class DjangoProject:
    """Where the configured Django project keeps its data."""

    pg_url: str
    """SQLAlchemy (psycopg) URL of the ``default`` database."""
    sqlite_path: Path
    """File of the ``lite`` database."""


def _drop(admin: sa.Engine, name: str) -> None:
    for attempt in range(5):
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except sa.exc.DBAPIError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def configured_project(admin_url: str, tmp: Path) -> Iterator[DjangoProject]:
    """Configure Django once for this process (fresh databases) and migrate both; drop them after."""
    import django
    from django.conf import settings
    from django.core.management import call_command
    from examples.django_shop import settings as shop

    name = f"pe_django_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    pg_url = admin_url.rsplit("/", 1)[0] + "/" + name
    sqlite_path = tmp / "django-lite.sqlite3"
    try:
        if not settings.configured:
            options = {key: getattr(shop, key) for key in dir(shop) if key.isupper()}
            options["DATABASES"] = {
                "default": shop.database(pg_url.replace("postgresql+psycopg://", "postgresql://")),
                "lite": shop.database(f"sqlite:///{sqlite_path}"),
            }
            settings.configure(**options)
            django.setup()
        for alias in ("default", "lite"):
            call_command("migrate", database=alias, verbosity=0)
        yield DjangoProject(pg_url, sqlite_path)
    finally:
        from django.db import connections

        connections.close_all()
        _drop(admin, name)
        admin.dispose()
