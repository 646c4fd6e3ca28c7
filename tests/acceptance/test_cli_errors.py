"""Operator-facing errors say what the driver said, never a secret (issue 11, defect 12)."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.support import cli_env, run_cli
from tests.brokers import free_port


def test_a_wrong_password_shows_the_servers_answer_and_no_secret(pg_url: str, tmp_path: Path) -> None:
    """``relay --drain`` with a wrong password names the server's answer (authentication failed for the
    user, at which host and port), not just OperationalError, and never prints the password."""
    wrong = pg_url.replace("://payment_events:payment_events@", "://payment_events:s3cr3t-W0rd@")
    assert wrong != pg_url
    result = run_cli("relay", "--drain", env=cli_env(database_url=wrong), cwd=tmp_path)
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr
    assert "127.0.0.1" in result.stderr
    assert "s3cr3t-W0rd" not in result.stderr + result.stdout


def test_connection_refused_names_the_host_and_port(tmp_path: Path) -> None:
    """A database that is not listening: the message names where it tried."""
    port = free_port()
    url = f"postgresql+psycopg://u:topsecret@127.0.0.1:{port}/db"
    result = run_cli("relay", "--drain", env=cli_env(database_url=url), cwd=tmp_path)
    assert result.returncode != 0
    assert str(port) in result.stderr
    assert "OperationalError:" in result.stderr
    assert "topsecret" not in result.stderr


def test_a_bad_port_in_the_url_is_a_configuration_error(tmp_path: Path) -> None:
    """``host:abc`` is refused as a configuration error naming the port, not 'unexpected ValueError'."""
    url = "postgresql+psycopg://u:p@127.0.0.1:abc/db"
    result = run_cli("relay", "--drain", env=cli_env(database_url=url), cwd=tmp_path)
    assert result.returncode == 2
    assert "port" in result.stderr
    assert "unexpected" not in result.stderr


def test_toml_with_both_spellings_of_one_option_is_refused(tmp_path: Path) -> None:
    """``relay_batch_size`` and ``[relay] batch_size`` in one file: refused, both spellings named."""
    config = tmp_path / "pe.toml"
    config.write_text('relay_batch_size = 10\n[relay]\nbatch_size = 20\n')
    result = run_cli("--config", str(config), "config", "show", env=cli_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "relay_batch_size" in result.stderr
    assert "[relay] batch_size" in result.stderr
