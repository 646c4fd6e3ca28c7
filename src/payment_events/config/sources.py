"""Loading :class:`Settings` from its sources: defaults < TOML file < environment < CLI flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from payment_events.config.kafka_client import KAFKA_CLIENT_ENV_PREFIX, env_key, parse_kafka_client
from payment_events.config.options import env_var, flag, has_flag, is_secret, option_form
from payment_events.config.settings import CONFIG_FILE_ENV, ENV_PREFIX, Settings
from payment_events.dburl import mask_url
from payment_events.errors import ConfigurationError


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build settings from defaults < TOML file < environment < ``overrides`` (CLI flags).

    ``config_file`` defaults to ``$PAYMENT_EVENTS_CONFIG``. Raises ConfigurationError on any bad value,
    unknown key or unreadable file, naming the option, its environment variable and the expected form.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    path = config_file if config_file is not None else env.get(CONFIG_FILE_ENV) or None
    if path is not None:
        for name, value in _read_toml(Path(path)).items():
            values[name] = value
            sources[name] = f"config file {str(path)!r}"
    fields = Settings.model_fields
    file_client = (values.get("kafka_client"), sources.get("kafka_client", ""))
    for name in fields:
        var = env_var(name)
        if var in env and env[var] != "":
            values[name] = env[var]
            sources[name] = "the environment"
    _merge_kafka_client(values, sources, env, file_client)
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in fields:
            raise ConfigurationError(f"unknown setting {name!r}")
        values[name] = value
        sources[name] = f"flag {flag(name)}"
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc, sources, values)) from None


def _merge_kafka_client(
    values: dict[str, object],
    sources: dict[str, str],
    env: Mapping[str, str],
    file_client: tuple[object, str],
) -> None:
    """``kafka_client`` merges key by key: the file's table < ``PAYMENT_EVENTS_KAFKA_CLIENT`` pairs <
    ``PAYMENT_EVENTS_KAFKA_CLIENT__<KEY>`` variables (each parsed and checked on its own, so an error
    names the variable or the file)."""
    merged: dict[str, str] = {}
    file_value, file_source = file_client
    if file_value is not None:
        merged.update(_checked_client(file_value, file_source))
    var = env_var("kafka_client")
    if env.get(var):
        merged.update(_checked_client(env[var], f"the environment ({var})"))
    for name in sorted(env):
        key = env_key(name)
        if key is not None and env[name] != "":
            merged.update(_checked_client({key: env[name]}, f"the environment ({name})"))
    if merged or "kafka_client" in values:
        values["kafka_client"] = merged
        sources["kafka_client"] = "the environment and/or the config file"


def _checked_client(value: object, source: str) -> dict[str, str]:
    try:
        return parse_kafka_client(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"invalid setting kafka_client [{env_var('kafka_client')} or {KAFKA_CLIENT_ENV_PREFIX}<KEY>] "
            f"from {source}: {exc}"
        ) from None


def unknown_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """``PAYMENT_EVENTS_*`` variables that match no option (likely typos); the CLI warns about them."""
    env = os.environ if environ is None else environ
    fields = Settings.model_fields
    return sorted(
        k
        for k in env
        if k.startswith(ENV_PREFIX)
        and not k.startswith(ENV_PREFIX + "TEST_")
        and k != CONFIG_FILE_ENV
        and env_key(k) is None
        and k[len(ENV_PREFIX) :].lower() not in fields
    )


def _read_toml(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(
            f"config file {str(path)!r} cannot be read ({exc.strerror}); expected a readable TOML file "
            f"(--config FILE or {CONFIG_FILE_ENV})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    flat: dict[str, object] = {}
    fields = Settings.model_fields
    spelled: dict[str, str] = {}
    for key, value in data.items():
        pairs = (
            [(f"{key}_{sub}", sub_value, f"[{key}] {sub}") for sub, sub_value in value.items()]
            if isinstance(value, dict) and key not in fields
            else [(key, value, key)]
        )
        for name, item, spelling in pairs:
            if name in flat:
                raise ConfigurationError(
                    f"config file {str(path)!r} sets {name} twice, as {spelled[name]!r} and as "
                    f"{spelling!r}; keep one spelling"
                )
            flat[name] = item
            spelled[name] = spelling
    unknown = sorted(k for k in flat if k not in fields)
    if unknown:
        raise ConfigurationError(
            f"config file {str(path)!r}: unknown key {unknown[0]!r}; expected one of the options listed "
            "in docs/operations.md (e.g. relay_batch_size, or batch_size inside a [relay] table)"
        )
    return flat


def _explain(exc: ValidationError, sources: Mapping[str, str], values: Mapping[str, object]) -> str:
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error.get("loc") or ()
        name = str(loc[0]) if loc else ""
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if name in Settings.model_fields:
            names = f"{env_var(name)} or {flag(name)}" if has_flag(name) else env_var(name)
            source = sources.get(name, "the default")
            # kafka_client may hold secret keys: its value is never echoed either.
            hidden = is_secret(name) or name == "kafka_client" or name not in values
            shown = "" if hidden else f" (got {_short(values[name])})"
            if not message.startswith("expected"):
                message = f"{message}; expected {option_form(name)}"
            lines.append(f"invalid setting {name} [{names}] from {source}{shown}: {message}")
        else:
            lines.append(f"invalid configuration: {message}")
    return "\n".join(lines)


def _short(value: object) -> str:
    text = repr(mask_url(value) if isinstance(value, str) else value)
    return text if len(text) <= 60 else text[:57] + "..."
