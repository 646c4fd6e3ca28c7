"""Configuration: one frozen :class:`Settings` object (``settings``), what each option is called and means
(``options``), and where values come from: defaults < TOML file < environment < flags (``sources``)."""

from payment_events.config.options import (
    env_var,
    flag,
    is_secret,
    option_default,
    option_form,
    option_group,
    option_help,
    option_names,
)
from payment_events.config.settings import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    Duration,
    Settings,
    mask_url,
    parse_duration,
)
from payment_events.config.sources import load_settings, unknown_environment

__all__ = [
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "Duration",
    "Settings",
    "env_var",
    "flag",
    "is_secret",
    "load_settings",
    "mask_url",
    "option_default",
    "option_form",
    "option_group",
    "option_help",
    "option_names",
    "parse_duration",
    "unknown_environment",
]
