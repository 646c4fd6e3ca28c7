"""`payment-events` configuration as a user meets it: bad values exit 2 with a clear line, secrets hidden."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.support import cli_env, run_cli


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("relay_batch_size", "many", "PAYMENT_EVENTS_RELAY_BATCH_SIZE"),
        ("kafka_bootstrap_servers", "broker-without-port", "HOST:PORT"),
        ("database_url", "mysql://db/payments", "sqlite:///"),
        ("retention", "forever", "a duration such as"),
        ("metrics_port", "99999", "0 to 65535"),
        ("kafka_security_protocol", "SASL_SSL", "kafka_sasl_password"),
    ],
)
def test_bad_environment_value_exits_2_with_the_option_named(
    tmp_path: Path, setting: str, value: str, expected: str
) -> None:
    """A bad PAYMENT_EVENTS_* value stops the command with exit 2, the option's name and no traceback."""
    result = run_cli("config", "show", env=cli_env(**{setting: value}), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert setting in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_and_bad_config_file(tmp_path: Path) -> None:
    """A bad flag value, an unknown TOML key and a missing config file each exit 2 with a clear line."""
    flag = run_cli("topics", "ensure", "--topic-partitions", "0", cwd=tmp_path)
    assert flag.returncode == 2
    assert "topic_partitions" in flag.stderr
    assert "--topic-partitions" in flag.stderr
    toml = tmp_path / "pe.toml"
    toml.write_text("[relay]\nbatch_sise = 10\n")
    typo = run_cli("--config", str(toml), "config", "show", cwd=tmp_path)
    assert typo.returncode == 2
    assert "unknown key 'relay_batch_sise'" in typo.stderr
    missing = run_cli("--config", str(tmp_path / "nope.toml"), "config", "show", cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot be read" in missing.stderr
    usage = run_cli("dlq", "replay", cwd=tmp_path)
    assert usage.returncode == 2
    assert "exactly one of" in usage.stderr


def test_config_show_masks_secrets_and_follows_precedence(tmp_path: Path) -> None:
    """config show --json prints file < env < flag values and never a password or webhook token."""
    toml = tmp_path / "pe.toml"
    toml.write_text('topic = "from.file"\nrelay_batch_size = 7\n[kafka]\nsasl_username = "relay"\n')
    env = cli_env(
        config=str(toml),
        relay_batch_size="9",
        database_url="postgresql+psycopg://app:db-secret-1@db:5432/pay",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_password="kafka-secret-2",
        alert_webhook_url="https://hooks.example.com/services/token-secret-3",
    )
    result = run_cli("config", "show", "--json", "--topic", "from.flag", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["topic"] == "from.flag"
    assert shown["relay_batch_size"] == 9
    assert shown["kafka_sasl_username"] == "relay"
    assert shown["kafka_sasl_password"] == "***"
    assert shown["alert_webhook_url"] == "***"
    assert shown["database_url"] == "postgresql+psycopg://app:***@db:5432/pay"
    for secret in ("db-secret-1", "kafka-secret-2", "token-secret-3"):
        assert secret not in result.stdout + result.stderr


def test_help_lists_commands_and_no_secret_flags(tmp_path: Path) -> None:
    """--help shows every command; no command offers a flag for a secret."""
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ("relay", "db", "outbox", "dlq", "topics", "schemas", "config", "demo"):
        assert command in top.stdout
    relay_help = run_cli("relay", "--help", cwd=tmp_path)
    assert relay_help.returncode == 0
    assert "--relay-batch-size" in relay_help.stdout
    assert "PAYMENT_EVENTS_RELAY_BATCH_SIZE" in relay_help.stdout
    assert "password" not in relay_help.stdout.lower()
    assert "--alert-webhook-url" not in relay_help.stdout


def test_relay_refuses_a_metrics_port_in_use_and_an_unmigrated_database(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """relay exits 1 naming `db upgrade` on an unmigrated database, and 2 when its metrics port is taken."""
    topic, dlq = new_topic(partitions=1), new_topic(partitions=1)
    env = cli_env(
        database_url=f"sqlite:///{tmp_path / 'outbox.db'}",
        kafka_bootstrap_servers=kafka_bootstrap,
        topic=topic,
        dlq_topic=dlq,
    )
    unmigrated = run_cli("relay", env=env, cwd=tmp_path)
    assert unmigrated.returncode == 1
    assert "payment-events db upgrade" in unmigrated.stderr
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_cli("relay", "--metrics-port", str(port), env=env, cwd=tmp_path)
    assert busy.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr
