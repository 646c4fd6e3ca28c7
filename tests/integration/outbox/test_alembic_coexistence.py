"""An application's own Alembic project next to the outbox: `alembic revision --autogenerate` with
payment_events.outbox.migrate.include_name/include_object proposes nothing about the outbox tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from payment_events.outbox import migrate
from payment_events.outbox.table import outbox_table

MODELS = '''
import sqlalchemy as sa

metadata = sa.MetaData()
customers = sa.Table("customers", metadata, sa.Column("id", sa.Integer, primary_key=True))
orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
)
'''

ENV = '''
from alembic import context
import sqlalchemy as sa

from models import metadata
{hook_import}

engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata{hook_args})
    with context.begin_transaction():
        context.run_migrations()
'''

SCRIPT = '''"""${message}"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
'''


def user_project(root: Path, url: str, hooks: bool) -> Path:
    """A user's Alembic project (alembic.ini, env.py, its own metadata) in ``root``."""
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "models.py").write_text(MODELS)
    (root / "alembic.ini").write_text(
        f"[alembic]\nscript_location = %(here)s/migrations\nprepend_sys_path = .\nsqlalchemy.url = {url}\n"
    )
    (root / "migrations" / "script.py.mako").write_text(SCRIPT)
    (root / "migrations" / "env.py").write_text(
        ENV.format(
            hook_import="from payment_events.outbox.migrate import include_name, include_object"
            if hooks
            else "",
            hook_args=", include_name=include_name, include_object=include_object" if hooks else "",
        )
    )
    return root


def autogenerate(root: Path) -> str:
    """Run `alembic revision --autogenerate` in the project; return the generated script's text."""
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "revision", "--autogenerate", "-m", "next"],
        cwd=root, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [script] = (root / "migrations" / "versions").glob("*.py")
    return script.read_text()


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database holding the migrated outbox and the application's existing ``customers`` table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (id INTEGER NOT NULL PRIMARY KEY)"))
    engine.dispose()
    return url


def test_autogenerate_with_the_hooks_leaves_the_outbox_alone(database: str, tmp_path: Path) -> None:
    """With include_name/include_object the generated revision creates the user's new table and has
    no operation on the outbox or its version table."""
    script = autogenerate(user_project(tmp_path / "with", database, hooks=True))
    upgrade = script.split("def downgrade")[0]
    assert "op.create_table('orders'" in upgrade
    assert "payment_events" not in script
    assert "drop_table" not in upgrade


def test_autogenerate_without_the_hooks_would_drop_the_outbox(database: str, tmp_path: Path) -> None:
    """The control: without the hooks, autogenerate proposes to drop the outbox and its version table."""
    script = autogenerate(user_project(tmp_path / "without", database, hooks=False))
    assert "op.drop_table('payment_events_outbox')" in script
    assert "op.drop_table('payment_events_alembic_version')" in script


def test_include_object_skips_the_outbox_even_in_the_users_metadata() -> None:
    """include_object refuses the outbox table and its indexes and columns, and accepts the user's."""
    index = next(iter(outbox_table.indexes))
    assert not migrate.include_object(outbox_table, outbox_table.name, "table", False, None)
    assert not migrate.include_object(index, index.name, "index", False, None)
    assert not migrate.include_object(outbox_table.c.state, "state", "column", False, None)
    users = sa.Table("users", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    assert migrate.include_object(users, "users", "table", False, None)
    assert migrate.include_object(users.c.id, "id", "column", False, None)
    assert migrate.include_name("users", "table", {})
    assert not migrate.include_name("payment_events_alembic_version", "table", {})
    assert not migrate.include_name("ix_x", "index", {"table_name": "payment_events_outbox"})
