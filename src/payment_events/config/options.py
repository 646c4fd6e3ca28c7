"""Metadata of each setting, for flags, docs and error messages: its environment variable, flag, group,
expected form, help text and default, all read from the fields of :class:`Settings`."""

from __future__ import annotations

from typing import Any

from payment_events.config.settings import ENV_PREFIX, NO_FLAG_FIELDS, SECRET_FIELDS, Settings


def env_var(name: str) -> str:
    """The environment variable of a setting."""
    return ENV_PREFIX + name.upper()


def flag(name: str) -> str:
    """The command-line flag of a setting (secrets have none)."""
    return "--" + name.replace("_", "-")


def option_names() -> list[str]:
    """Every setting name, in declaration order."""
    return list(Settings.model_fields)


def is_secret(name: str) -> bool:
    """Whether a setting is a secret (masked when shown, no command-line flag)."""
    return name in SECRET_FIELDS


def has_flag(name: str) -> bool:
    """Whether a setting has a command-line flag: not the secrets, not ``kafka_client`` (it may hold
    secret keys, and a flag shows in ``ps``)."""
    return name not in SECRET_FIELDS and name not in NO_FLAG_FIELDS


def option_group(name: str) -> str:
    """The group (database, kafka, topics, relay, metrics, alerts, logging) a setting belongs to."""
    return str(_extra(name).get("group", ""))


def option_form(name: str) -> str:
    """The expected form of a setting's value, in words."""
    return str(_extra(name).get("form", ""))


def option_help(name: str) -> str:
    """The one-line meaning of a setting."""
    return Settings.model_fields[name].description or ""


def option_default(name: str) -> Any:
    """The default value of a setting."""
    return Settings.model_fields[name].default


def _extra(name: str) -> dict[str, Any]:
    extra = Settings.model_fields[name].json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}
