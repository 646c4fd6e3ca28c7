"""The CLI's settings plumbing in-process (no servers): generated flags, precedence, exit codes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from payment_events import config as cfg
from payment_events.cli import EXIT_USAGE, cli, main, settings_options


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands install a root log handler on the (temporary) stderr; put the old ones back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_settings_options_add_flags_for_non_secret_options_only() -> None:
    """Every non-secret option of the chosen groups becomes a flag; secrets never do."""

    @click.command()
    @settings_options("kafka", "alerts")
    def command(**params: object) -> None:
        """A probe command."""

    flags = {opt for param in command.params for opt in param.opts}
    assert "--kafka-bootstrap-servers" in flags
    assert "--alert-cooldown" in flags
    assert "--kafka-sasl-password" not in flags
    assert "--alert-webhook-url" not in flags
    assert "--database-url" not in flags  # not in the chosen groups
    secrets = [n for n in cfg.option_names() if cfg.is_secret(n)]
    assert secrets
    assert all(cfg.flag(n) not in flags for n in secrets)


def test_config_show_in_process_follows_env_and_flags() -> None:
    """config show --json reflects the environment, overridden by a flag."""
    result = CliRunner().invoke(
        cli,
        ["config", "show", "--json", "--relay-batch-size", "11"],
        env={"PAYMENT_EVENTS_RELAY_BATCH_SIZE": "10", "PAYMENT_EVENTS_TOPIC": "from.env"},
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["relay_batch_size"] == 11
    assert shown["topic"] == "from.env"


def test_main_turns_configuration_errors_into_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() prints one 'configuration error' line and exits 2 for an invalid setting."""
    monkeypatch.setenv("PAYMENT_EVENTS_METRICS_PORT", "not-a-port")
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "show"])
    assert exit_info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("configuration error: invalid setting metrics_port")
    assert "Traceback" not in err


def test_main_exit_codes_for_usage_and_success(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits 2; --help exits 0."""
    with pytest.raises(SystemExit) as unknown:
        main(["no-such-command"])
    assert unknown.value.code == 2
    with pytest.raises(SystemExit) as helped:
        main(["--help"])
    assert helped.value.code == 0
    assert "relay" in capsys.readouterr().out
