"""Configuration: one frozen :class:`Settings` object (``settings``), what each option is called and means
(``options``), and where values come from: defaults < TOML file < environment < flags (``sources``).
``mask_url`` is :mod:`payment_events.dburl`'s, re-exported."""

from payment_events.config.options import (
    env_var,
    flag,
    has_flag,
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
    parse_duration,
)
from payment_events.config.sources import load_settings, unknown_environment
from payment_events.dburl import mask_url, url_has_secret

__all__ = [
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "Duration",
    "Settings",
    "env_var",
    "flag",
    "has_flag",
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
    "url_has_secret",
]
