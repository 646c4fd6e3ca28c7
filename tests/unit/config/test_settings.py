"""Settings: precedence of the sources, validation messages, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from payment_events.config import (
    Settings,
    env_var,
    flag,
    load_settings,
    mask_url,
    option_names,
    parse_duration,
    unknown_environment,
)
from payment_events.errors import ConfigurationError


def test_defaults_are_the_embedded_setup() -> None:
    """Without any source the settings point at the SQLite file and the local broker, bound to localhost."""
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///payment_events.db"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert settings.topic == "payment.events"
    assert settings.metrics_host == "127.0.0.1"
    assert settings.kafka_sasl_password is None


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    """A flag beats the environment, which beats the TOML file, which beats the default."""
    conf = tmp_path / "pe.toml"
    conf.write_text(
        'topic = "from.file"\nrelay_batch_size = 10\n[relay]\nmax_attempts = 3\n'
        '[topic_routing]\nRefundProcessed = "refunds"\n'
    )
    env = {"PAYMENT_EVENTS_RELAY_BATCH_SIZE": "20", "PAYMENT_EVENTS_TOPIC": "from.env"}
    settings = load_settings(config_file=conf, environ=env, overrides={"topic": "from.flag"})
    assert settings.topic == "from.flag"
    assert settings.relay_batch_size == 20
    assert settings.relay_max_attempts == 3
    assert settings.topic_routing == {"RefundProcessed": "refunds"}
    assert settings.topic_router().topic_for("RefundProcessed") == "refunds"
    assert settings.topic_router().topic_for("PaymentSucceeded") == "from.flag"


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    """PAYMENT_EVENTS_CONFIG names the TOML file when no --config is given."""
    conf = tmp_path / "pe.toml"
    conf.write_text('dlq_topic = "dead.letters"\n')
    settings = load_settings(environ={"PAYMENT_EVENTS_CONFIG": str(conf)})
    assert settings.dlq_topic == "dead.letters"


@pytest.mark.parametrize(
    ("env", "option", "expected"),
    [
        ({"PAYMENT_EVENTS_RELAY_BATCH_SIZE": "lots"}, "relay_batch_size", "an integer from 1 to 100000"),
        ({"PAYMENT_EVENTS_RELAY_BATCH_SIZE": "0"}, "relay_batch_size", "an integer from 1 to 100000"),
        ({"PAYMENT_EVENTS_RETENTION": "a week"}, "retention", "a duration such as"),
        ({"PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "kafka_bootstrap_servers", "HOST:PORT"),
        ({"PAYMENT_EVENTS_DATABASE_URL": "mysql://x/y"}, "database_url", "sqlite:///"),
        ({"PAYMENT_EVENTS_METRICS_PORT": "70000"}, "metrics_port", "0 to 65535"),
        ({"PAYMENT_EVENTS_LOG_LEVEL": "LOUD"}, "log_level", "DEBUG, INFO, WARNING or ERROR"),
        ({"PAYMENT_EVENTS_TOPIC": "has space"}, "topic", "[A-Za-z0-9._-]"),
        ({"PAYMENT_EVENTS_TOPIC_ROUTING": "PaymentFailed"}, "topic_routing", "EventType=topic"),
        ({"PAYMENT_EVENTS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka_sasl_mechanism", "SCRAM-SHA-512"),
        ({"PAYMENT_EVENTS_KAFKA_SSL_CA_LOCATION": "/no/ca.pem"}, "kafka_ssl_ca_location", "does not exist"),
    ],
)
def test_invalid_values_name_option_env_var_and_form(env: dict[str, str], option: str, expected: str) -> None:
    """Each bad value fails with the option name, its environment variable and the expected form."""
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ=env)
    message = str(err.value)
    assert option in message
    assert env_var(option) in message
    assert expected in message


def test_flag_source_is_named() -> None:
    """An invalid flag value says it came from the flag."""
    with pytest.raises(ConfigurationError, match="from flag --relay-backoff-cap"):
        load_settings(environ={}, overrides={"relay_backoff_cap": "soon"})


def test_cross_field_rules() -> None:
    """min.insync.replicas above the replication factor, or SASL without credentials, are refused."""
    with pytest.raises(ConfigurationError, match="topic_min_insync_replicas"):
        load_settings(environ={"PAYMENT_EVENTS_TOPIC_MIN_INSYNC_REPLICAS": "2"})
    with pytest.raises(ConfigurationError, match="kafka_sasl_password"):
        load_settings(
            environ={
                "PAYMENT_EVENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "PAYMENT_EVENTS_KAFKA_SASL_USERNAME": "u",
            }
        )


def test_unknown_file_key_and_bad_toml_are_refused(tmp_path: Path) -> None:
    """A typo in the TOML file and a file that is not TOML fail with the file named."""
    conf = tmp_path / "pe.toml"
    conf.write_text("relay_batch_sise = 5\n")
    with pytest.raises(ConfigurationError, match="unknown key 'relay_batch_sise'"):
        load_settings(config_file=conf, environ={})
    conf.write_text("this is = not = toml")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_settings(config_file=conf, environ={})
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})


def test_secrets_never_appear_in_repr_masked_or_errors() -> None:
    """The SASL password, webhook URL and database password are masked in repr, masked() and errors."""
    env = {
        "PAYMENT_EVENTS_DATABASE_URL": "postgresql+psycopg://app:db-pass-123@db:5432/pay",
        "PAYMENT_EVENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "PAYMENT_EVENTS_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "PAYMENT_EVENTS_KAFKA_SASL_USERNAME": "relay",
        "PAYMENT_EVENTS_KAFKA_SASL_PASSWORD": "kafka-pass-456",
        "PAYMENT_EVENTS_ALERT_WEBHOOK_URL": "https://hooks.example.com/T0/secret-token-789",
    }
    settings = load_settings(environ=env)
    shown = repr(settings) + str(settings) + repr(settings.masked())
    for secret in ("db-pass-123", "kafka-pass-456", "secret-token-789"):
        assert secret not in shown
    assert settings.masked()["kafka_sasl_password"] == "***"
    assert settings.kafka_config()["sasl.password"] == "kafka-pass-456"
    assert settings.kafka_config()["sasl.mechanism"] == "SCRAM-SHA-512"
    assert settings.alert_webhook() == "https://hooks.example.com/T0/secret-token-789"
    with pytest.raises(ConfigurationError) as err:
        load_settings(environ={**env, "PAYMENT_EVENTS_ALERT_WEBHOOK_URL": "ftp://secret-token-789"})
    assert "secret-token-789" not in str(err.value)


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.topic = "other"  # type: ignore[misc]


def test_to_relay_config_maps_every_relay_option() -> None:
    """The relay's config carries the batch, retry, timing, retention, shard and Kafka security settings."""
    env = {
        "PAYMENT_EVENTS_RELAY_BATCH_SIZE": "100",
        "PAYMENT_EVENTS_RELAY_MAX_ATTEMPTS": "0",
        "PAYMENT_EVENTS_RELAY_BACKOFF_BASE": "250ms",
        "PAYMENT_EVENTS_RELAY_BACKOFF_CAP": "90s",
        "PAYMENT_EVENTS_RETENTION": "1d",
        "PAYMENT_EVENTS_RELAY_SHARD_COUNT": "16",
        "PAYMENT_EVENTS_DLQ_TOPIC": "dead",
    }
    relay = load_settings(environ=env).to_relay_config()
    assert relay.batch_size == 100
    assert relay.max_attempts is None
    assert relay.backoff_base_seconds == 0.25
    assert relay.backoff_cap_seconds == 90.0
    assert relay.retention_seconds == 86400.0
    assert relay.shard_count == 16
    assert relay.dlq_topic == "dead"
    assert relay.producer_overrides["security.protocol"] == "plaintext"
    assert "bootstrap.servers" not in relay.producer_overrides


def test_helpers() -> None:
    """Durations, routing strings, URL masking and option names parse as documented."""
    assert parse_duration("500ms") == 0.5
    assert parse_duration("5m") == 300.0
    assert parse_duration(12) == 12.0
    with pytest.raises(ValueError, match="duration"):
        parse_duration("-1s")
    assert mask_url("postgresql://u:p@h:5/d") == "postgresql://u:***@h:5/d"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    assert flag("relay_batch_size") == "--relay-batch-size"
    assert set(option_names()) == set(Settings.model_fields)
    assert unknown_environment({"PAYMENT_EVENTS_TOPICC": "x", "PAYMENT_EVENTS_TOPIC": "y"}) == [
        "PAYMENT_EVENTS_TOPICC"
    ]


def test_operations_doc_lists_every_option_and_its_toml_example_loads(tmp_path: Path) -> None:
    """docs/operations.md names every option's environment variable, and its TOML example is valid."""
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    for name in option_names():
        assert f"`{env_var(name)}`" in doc, name
    example = re.search(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert example is not None
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    text = re.sub(r'ssl_ca_location = "[^"]*"', f'ssl_ca_location = "{ca}"', example.group(1))
    conf = tmp_path / "payment-events.toml"
    conf.write_text(text)
    settings = load_settings(
        config_file=conf, environ={"PAYMENT_EVENTS_KAFKA_SASL_PASSWORD": "from-a-secret-store"}
    )
    assert settings.topic_replication_factor == 3
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.topic_routing == {"RefundProcessed": "refund.processed"}


def test_liveness_timeout_must_outlast_the_outage_pause() -> None:
    """A liveness timeout not longer than the backoff cap is refused (a pausing relay would look dead)."""
    with pytest.raises(ConfigurationError, match="health_liveness_timeout"):
        load_settings(environ={"PAYMENT_EVENTS_HEALTH_LIVENESS_TIMEOUT": "30s"})
    assert load_settings(environ={}).health_liveness_timeout == 120.0


def test_to_relay_config_carries_the_intervals() -> None:
    """Lease refresh and backlog interval reach the relay's config."""
    relay = load_settings(
        environ={
            "PAYMENT_EVENTS_RELAY_LEASE_REFRESH": "2s",
            "PAYMENT_EVENTS_RELAY_BACKLOG_INTERVAL": "5s",
        }
    ).to_relay_config()
    assert relay.lease_refresh_seconds == 2.0
    assert relay.backlog_interval_seconds == 5.0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:p#w?x/y@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgresql://u:pa@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=s3&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("postgresql://u@h/db?sslpassword=a@b#c&sslmode=require", "postgresql://u@h/db?sslpassword=***&sslmode=require"),
        ("postgresql://u@h/db?sslmode=disable&password=Zq#x?y/w@v:1", "postgresql://u@h/db?sslmode=disable&password=***"),
    ],
)
def test_mask_url_hides_raw_and_query_passwords(url: str, shown: str) -> None:
    """Passwords with raw #, ?, / or @, and password-like query parameters, are masked whole."""
    assert mask_url(url) == shown


def test_a_database_url_sqlalchemy_cannot_parse_is_refused_without_its_password() -> None:
    """A raw "@" in the password breaks SQLAlchemy's parse: a configuration error, password hidden."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ={"PAYMENT_EVENTS_DATABASE_URL": "postgresql+psycopg://u:Zq#x?y/w@v:9s3cr3t@h:5432/d"})
    assert "percent-encode" in str(caught.value)
    assert "9s3cr3t" not in str(caught.value)
