"""Fixtures shared by the relay integration tests: the same behaviour on PostgreSQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.django_app.django_setup import DjangoProject, configured_project
from tests.integration.relay_support import migrated_engine


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The outbox database: a fresh PostgreSQL database, or an SQLite file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """A writer's engine on the migrated outbox."""
    engine = migrated_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def django_project(_pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoProject]:
    """The example Django project (examples/django_shop), configured once per session on fresh databases."""
    yield from configured_project(_pg_admin_url, tmp_path_factory.mktemp("django"))
