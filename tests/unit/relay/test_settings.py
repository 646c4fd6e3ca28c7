"""RelayConfig: the one home of the relay's limits, shared with the relay_* settings."""

from __future__ import annotations

import pytest

from payment_events.config import load_settings
from payment_events.errors import ConfigurationError
from payment_events.relay.settings import RELAY_LIMITS, RelayConfig, check_relay_option
from payment_events.service import build_relay


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("batch_size", 0, "batch_size must be an integer >= 1"),
        ("batch_size", 100_001, "batch_size must be at most 100000"),
        ("max_attempts", 0, "max_attempts must be an integer >= 1"),
        ("poll_interval_seconds", 0, "poll_interval_seconds must be a positive number of seconds"),
        ("retention_seconds", -1, "retention_seconds must be >= 0 seconds"),
        ("shard_count", 40_000, "shard_count must be at most 32767"),
        ("purge_batch_size", True, "purge_batch_size must be an integer"),
    ],
)
def test_out_of_range_relay_options_are_refused_naming_the_option(
    option: str, value: object, fragment: str
) -> None:
    """RelayConfig refuses a value outside its limits with a message naming the option."""
    with pytest.raises(ConfigurationError, match=fragment):
        RelayConfig(**{option: value})  # type: ignore[arg-type]


def test_backoff_base_above_the_cap_is_refused() -> None:
    """The first retry delay may not exceed the cap."""
    with pytest.raises(ConfigurationError, match="backoff_cap_seconds must be >= backoff_base_seconds"):
        RelayConfig(backoff_base_seconds=10, backoff_cap_seconds=1)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PAYMENT_EVENTS_RELAY_BATCH_SIZE", "100001"),
        ("PAYMENT_EVENTS_RELAY_SHARD_COUNT", "0"),
        ("PAYMENT_EVENTS_RELAY_POLL_INTERVAL", "0s"),
        ("PAYMENT_EVENTS_PURGE_BATCH_SIZE", "0"),
        ("PAYMENT_EVENTS_RELAY_LEASE_REFRESH", "0"),
    ],
)
def test_settings_refuse_what_the_relay_refuses(setting: str, value: str) -> None:
    """A relay_* setting outside the relay's limits fails when the settings load, not when the relay
    starts: both read the same limits."""
    name = setting.removeprefix("PAYMENT_EVENTS_").lower()
    with pytest.raises(ConfigurationError, match=f"invalid setting {name}"):
        load_settings(environ={setting: value})


def test_every_limit_names_a_relay_config_field() -> None:
    """The limits table and RelayConfig's fields cannot drift apart."""
    assert set(RELAY_LIMITS) <= set(RelayConfig.__dataclass_fields__)
    for name in RELAY_LIMITS:
        check_relay_option(name, getattr(RelayConfig(), name))


def test_build_relay_refuses_a_dead_letter_topic_kafka_would_refuse(tmp_path: object) -> None:
    """The dead-letter topic's name follows Kafka's rules, checked where the relay is built ('..' too)."""
    with pytest.raises(ConfigurationError, match="dlq_topic"):
        build_relay(f"sqlite:///{tmp_path}/x.db", "127.0.0.1:1", RelayConfig(dlq_topic=".."))
