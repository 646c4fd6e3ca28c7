"""The root `payment-events` group, the settings plumbing every command shares, and `config show`.

Exit codes: 0 success, 1 failure or problems found (``schemas check`` incompatibilities, a failed
``topics ensure``, a relay that stopped on an error), 2 usage or configuration errors (a bad flag, an
invalid setting), 130 interrupted. Errors are one clear line on stderr, never a traceback.

Settings come from defaults < ``--config FILE`` (or ``PAYMENT_EVENTS_CONFIG``) < ``PAYMENT_EVENTS_*``
environment variables < flags; every command that needs settings takes the flags of its option groups
(``payment-events relay --help`` lists them). Secrets have no flags. Heavy modules (SQLAlchemy,
confluent_kafka) are imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from payment_events import config as cfg

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

ALL_GROUPS = ("database", "kafka", "topics", "relay", "metrics", "alerts", "logging")


@dataclass
class CliState:
    """What the root group collects for the commands: the config file and root-level overrides."""

    config_file: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)


def settings_options(*groups: str) -> Callable[[F], F]:
    """Add a flag for every non-secret setting in ``groups`` (default: not given, so it overrides nothing)."""

    def decorate(func: F) -> F:
        for name in reversed(cfg.option_names()):
            group = cfg.option_group(name)
            if group not in groups or group == "logging" or not cfg.has_flag(name):
                continue
            default = cfg.option_default(name)
            shown = cfg.mask_url(default) if isinstance(default, str) else default
            help_text = f"{cfg.option_help(name)} [env {cfg.env_var(name)}; default {shown!r}]"
            if isinstance(default, bool):
                opt = click.option(
                    f"{cfg.flag(name)}/--no-{name.replace('_', '-')}", name, default=None, help=help_text
                )
            else:
                opt = click.option(cfg.flag(name), name, default=None, metavar="VALUE", help=help_text)
            func = opt(func)
        return func

    return decorate


def load(ctx: click.Context, params: Mapping[str, object]) -> cfg.Settings:
    """Settings for a command: its flags over the root flags over env over file over defaults.

    Also configures logging from the result and warns about unknown ``PAYMENT_EVENTS_*`` variables.
    """
    from payment_events.ops.logs import configure_logging, get_logger

    state = ctx.find_object(CliState) or CliState()
    overrides = dict(state.overrides)
    overrides.update({k: v for k, v in params.items() if k in cfg.Settings.model_fields and v is not None})
    settings = cfg.load_settings(config_file=state.config_file, overrides=overrides)
    configure_logging(settings.log_format, settings.log_level)
    for var in cfg.unknown_environment():
        get_logger(__name__).warning("config.unknown_environment_variable", variable=var)
    return settings


def require_existing_database(settings: cfg.Settings) -> None:
    """Refuse to go on when the SQLite outbox file does not exist: connecting would silently create an
    empty database (e.g. ``./payment_events.db`` when no URL was configured). Raises
    ``MigrationRequiredError`` (exit 1) naming the masked URL and what to do."""
    from sqlalchemy.engine import make_url

    from payment_events.errors import MigrationRequiredError

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if url.database.startswith("file:") or Path(url.database).exists():
        return
    raise MigrationRequiredError(
        f"no outbox database at {cfg.mask_url(settings.database_url)} (the file "
        f"{Path(url.database).resolve()} does not exist); point {cfg.env_var('database_url')} or "
        "--database-url at your outbox, or create it with `payment-events db upgrade`"
    )


def emit_json(data: object) -> None:
    """Print ``data`` as JSON on stdout (for scripts)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="payment-events")
@click.option(
    "--config",
    "config_file",
    envvar=cfg.CONFIG_FILE_ENV,
    metavar="FILE",
    help=f"TOML settings file [env {cfg.CONFIG_FILE_ENV}].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level [env PAYMENT_EVENTS_LOG_LEVEL; default INFO].",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"], case_sensitive=False),
    default=None,
    help="auto: console on a terminal, JSON lines otherwise [env PAYMENT_EVENTS_LOG_FORMAT].",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, log_level: str | None, log_format: str | None) -> None:
    """Turn payment outcomes into durable, versioned events on Apache Kafka (transactional outbox)."""
    overrides: dict[str, object] = {}
    if log_level is not None:
        overrides["log_level"] = log_level
    if log_format is not None:
        overrides["log_format"] = log_format
    ctx.obj = CliState(config_file=config_file, overrides=overrides)


# -- config -----------------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options(*ALL_GROUPS)
@click.pass_context
def config_show(ctx: click.Context, /, as_json: bool, **params: object) -> None:
    """Print the effective settings (secrets masked). Exits 2 if any setting is invalid."""
    settings = load(ctx, params)
    masked = settings.masked()
    if as_json:
        emit_json(masked)
        return
    width = max(len(name) for name in masked)
    for name, value in masked.items():
        click.echo(f"{name:<{width}}  {json.dumps(value, default=str)}")
