"""The CLI refuses an async driver URL up front and names the synchronous one to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.support import cli_env, run_cli


@pytest.mark.parametrize(
    ("command", "url", "expected"),
    [
        (("relay",), "postgresql+asyncpg://app:s3cret@127.0.0.1:5432/app", "postgresql+psycopg://"),
        (("db", "upgrade"), "postgresql+psycopg_async://app:s3cret@127.0.0.1/app", "postgresql+psycopg://"),
        (("outbox", "status"), "sqlite+aiosqlite:///app.db", "sqlite://"),
    ],
)
def test_async_url_exits_2_naming_the_sync_form(
    tmp_path: Path, command: tuple[str, ...], url: str, expected: str
) -> None:
    """`payment-events relay|db upgrade|outbox status` with an async URL exit 2 with one clear line that
    names the synchronous scheme, never the password, and no traceback."""
    result = run_cli(*command, env=cli_env(database_url=url), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "async driver" in result.stderr
    assert expected in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
