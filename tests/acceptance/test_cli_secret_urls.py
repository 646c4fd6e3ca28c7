"""A real PostgreSQL role whose password holds #, ?, / and @ never shows in CLI output or relay logs."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from tests.acceptance.support import RelayProcess, cli_env, run_cli
from tests.brokers import wait_for
from tests.conftest import PG_ADMIN_URL


@pytest.fixture
def odd_role(_pg_admin_url: str) -> Iterator[tuple[str, str, str]]:
    """A login role with a password full of URL delimiters and a fresh database it may create tables in:
    (role, password, database). Both dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    role, database = f"pe_odd_{suffix}", f"pe_test_odd_{suffix}"
    password = f"Zq#x?y/w@v:{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_pg_admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        db_admin = sa.create_engine(
            _pg_admin_url.rsplit("/", 1)[0] + "/" + database, isolation_level="AUTOCOMMIT"
        )
        with db_admin.connect() as conn:
            conn.execute(sa.text(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"'))
        db_admin.dispose()
        yield role, password, database
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _logged(relay: RelayProcess, event: str) -> bool:
    return event in relay.output()


def _host_port() -> str:
    return sa.make_url(PG_ADMIN_URL).render_as_string().split("@", 1)[1].split("/", 1)[0]


def _leaks(text: str, password: str) -> list[str]:
    """Pieces of ``password`` (raw or encoded) that appear in ``text``."""
    suffix = password.rsplit(":", 1)[1]
    pieces = [password, quote(password, safe=""), "Zq#x", "y/w", suffix]
    return [piece for piece in pieces if piece in text]


def test_odd_password_never_shows_in_config_db_upgrade_or_relay_logs(
    tmp_path: Path, odd_role: tuple[str, str, str], kafka_bootstrap: str
) -> None:
    """config show, db upgrade (success and failure) and the relay's relay.serving line mask the password,
    written percent-encoded, raw (as SQLAlchemy partly accepts it) or as a libpq ?password= parameter."""
    role, password, database = odd_role
    host = _host_port()
    encoded = f"postgresql+psycopg://{role}:{quote(password, safe='')}@{host}/{database}"
    raw = f"postgresql+psycopg://{role}:{password}@{host}/{database}"
    as_param = f"postgresql+psycopg://{role}@{host}/{database}?password={quote(password, safe='')}"
    raw_param = f"postgresql+psycopg://{role}@{host}/{database}?sslmode=disable&password={password}"

    for url in (encoded, as_param):
        shown = run_cli("config", "show", env=cli_env(database_url=url), cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert _leaks(shown.stdout + shown.stderr, password) == [], url
        assert "***" in shown.stdout
    # SQLAlchemy ends a userinfo at the first "@": raw forms are refused, the password hidden.
    for url in (raw, raw_param):
        refused = run_cli("config", "show", env=cli_env(database_url=url), cwd=tmp_path)
        assert refused.returncode == 2
        assert "percent-encode" in refused.stderr
        assert _leaks(refused.stdout + refused.stderr, password) == [], url

    # The encoded forms connect: db upgrade succeeds and names the database with the password hidden.
    for url in (encoded, as_param):
        upgrade = run_cli("db", "upgrade", env=cli_env(database_url=url), cwd=tmp_path)
        assert upgrade.returncode == 0, upgrade.stderr
        assert _leaks(upgrade.stdout + upgrade.stderr, password) == []
        assert role in upgrade.stdout

    # Failures: the raw form is refused before connecting; a wrong password fails to log in.
    wrong = encoded.replace(quote(password, safe=""), quote(password + "#wrong", safe=""))
    for url in (raw, wrong, raw_param):
        failed = run_cli("db", "upgrade", env=cli_env(database_url=url, log_level="DEBUG"), cwd=tmp_path)
        assert failed.returncode != 0
        assert failed.stderr.strip()
        assert _leaks(failed.stdout + failed.stderr, password) == [], url

    for url in (encoded, as_param):
        env = cli_env(
            database_url=url, kafka_bootstrap_servers=kafka_bootstrap, log_level="DEBUG", log_format="json"
        )
        relay = RelayProcess(env, tmp_path)
        try:
            relay.wait_serving()
            wait_for(functools.partial(_logged, relay, "relay.serving"), 60, "the relay.serving log line")
        finally:
            relay.stop()
        output = relay.output()
        assert "relay.serving" in output
        assert _leaks(output, password) == [], url
