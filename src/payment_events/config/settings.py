"""One frozen :class:`Settings` object, filled from defaults < TOML file < environment < CLI flags.

Every option has one name used everywhere: the field ``relay_batch_size`` is the TOML key
``relay_batch_size`` (or ``batch_size`` inside a ``[relay]`` table), the environment variable
``PAYMENT_EVENTS_RELAY_BATCH_SIZE`` and the flag ``--relay-batch-size``. Secrets (the SASL password, the
SSL key password, the alert webhook URL, the password inside the database URL) are never printed: they
are ``SecretStr`` or masked, they have no command-line flag (a flag would show in ``ps``), and
:meth:`Settings.masked` is what ``config show`` prints.

Any other librdkafka setting goes in ``kafka_client`` (TOML ``[kafka.client]``, the environment variable
``PAYMENT_EVENTS_KAFKA_CLIENT`` as ``key=value`` pairs, or one variable per setting,
``PAYMENT_EVENTS_KAFKA_CLIENT__SOCKET_TIMEOUT_MS`` for ``socket.timeout.ms``); settings that have their own
option, that would weaken delivery, or that are callbacks are refused, and secret-looking keys are masked.

Invalid values raise :class:`~payment_events.errors.ConfigurationError` naming the option, where it came
from (environment variable, flag, file) and the expected form. Nothing here imports SQLAlchemy or
confluent_kafka, so loading settings is fast.

Why this module is longer than the house's 400 lines: it is one model, and most of it is the declaration
of its options with their metadata (group, form, help). Splitting the fields would scatter what an
operator reads as one list; loading and option metadata already live in ``sources`` and ``options``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from payment_events.config.kafka_client import masked_kafka_client, parse_kafka_client
from payment_events.dburl import async_url_problem, mask_url
from payment_events.errors import ConfigurationError

if TYPE_CHECKING:
    from payment_events.kafka.topics import TopicRouter
    from payment_events.relay.settings import RelayConfig

ENV_PREFIX = "PAYMENT_EVENTS_"
CONFIG_FILE_ENV = "PAYMENT_EVENTS_CONFIG"

_DURATION_FORM = "a duration such as 500ms, 30s, 5m, 2h or 7d (a bare number means seconds)"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_HOST_PORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
_RELAY_FIELDS = {
    "relay_batch_size": "batch_size",
    "relay_max_attempts": "max_attempts",
    "relay_backoff_base": "backoff_base_seconds",
    "relay_backoff_cap": "backoff_cap_seconds",
    "relay_poll_interval": "poll_interval_seconds",
    "relay_delivery_timeout": "delivery_timeout_seconds",
    "relay_lease_refresh": "lease_refresh_seconds",
    "relay_backlog_interval": "backlog_interval_seconds",
    "relay_shard_count": "shard_count",
    "retention": "retention_seconds",
    "purge_interval": "purge_interval_seconds",
    "purge_batch_size": "purge_batch_size",
    "purge_max_batches": "purge_max_batches",
    "purge_budget": "purge_budget_seconds",
    "relay_lease_takeover": "lease_takeover_seconds",
}
"""Settings that are relay options: their limits are the relay's (:data:`RELAY_LIMITS`)."""
SECRET_FIELDS = frozenset(
    {
        "kafka_sasl_password",
        "kafka_ssl_key_password",
        "kafka_sasl_oauthbearer_client_secret",
        "alert_webhook_url",
    }
)
NO_FLAG_FIELDS = frozenset({"kafka_client"})
"""Options without a command-line flag besides the secrets: ``kafka_client`` may hold secret keys."""
def parse_duration(value: object) -> float:
    """Seconds from ``500ms``, ``30s``, ``5m``, ``2h``, ``7d`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_DURATION_FORM}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"expected {_DURATION_FORM}")
    if seconds < 0:
        raise ValueError(f"expected {_DURATION_FORM}, not negative")
    return seconds


def _parse_routing(value: object) -> dict[str, str]:
    from payment_events.kafka.topics import parse_routing

    try:
        return parse_routing(value)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


def _checked_topic(name: str, option: str) -> str:
    """Kafka's topic-name rules (one home: :func:`payment_events.kafka.topics.validate_topic_name`)."""
    from payment_events.kafka.topics import validate_topic_name

    try:
        return validate_topic_name(name, option)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


def _opt(default: Any, group: str, form: str, help_text: str) -> Any:
    """A settings field with the metadata that flags, docs and error messages are built from."""
    return Field(default=default, description=help_text, json_schema_extra={"group": group, "form": form})


Duration = float
"""Seconds; accepted as ``500ms``, ``30s``, ``5m``, ``2h``, ``7d`` or a number."""

_OAUTH_FIELDS = (
    "kafka_sasl_oauthbearer_token_endpoint_url",
    "kafka_sasl_oauthbearer_client_id",
    "kafka_sasl_oauthbearer_client_secret",
    "kafka_sasl_oauthbearer_scope",
    "kafka_sasl_oauthbearer_extensions",
)
"""The OAUTHBEARER (OIDC) options; the first three are required with that mechanism."""


class Settings(BaseModel):
    """Every knob of payment-events. Frozen; build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # database
    database_url: str = _opt(
        "sqlite:///payment_events.db",
        "database",
        "a SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB",
        "Outbox database. SQLite file is the embedded default; PostgreSQL in production.",
    )
    # kafka
    kafka_bootstrap_servers: str = _opt(
        "127.0.0.1:19092", "kafka", "HOST:PORT[,HOST:PORT...]", "Kafka bootstrap servers."
    )
    kafka_client_id: str = _opt("payment-events", "kafka", "a short name", "Kafka client.id.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _opt(
        "PLAINTEXT", "kafka", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", "Kafka security.protocol."
    )
    kafka_ssl_ca_location: Path | None = _opt(
        None, "kafka", "a path to an existing PEM file", "CA certificate(s) to verify the brokers (TLS)."
    )
    kafka_ssl_certificate_location: Path | None = _opt(
        None, "kafka", "a path to an existing PEM file", "Client certificate for mutual TLS."
    )
    kafka_ssl_key_location: Path | None = _opt(
        None, "kafka", "a path to an existing PEM file", "Client private key for mutual TLS."
    )
    kafka_ssl_key_password: SecretStr | None = _opt(
        None, "kafka", "a string (secret; environment or file only)", "Password of the client key."
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"] | None = _opt(
        None,
        "kafka",
        "SCRAM-SHA-512 (recommended), SCRAM-SHA-256, PLAIN or OAUTHBEARER (OIDC)",
        "SASL mechanism.",
    )
    kafka_sasl_username: str | None = _opt(None, "kafka", "a string", "SASL username.")
    kafka_sasl_password: SecretStr | None = _opt(
        None, "kafka", "a string (secret; environment or file only)", "SASL password. Never printed."
    )
    kafka_sasl_oauthbearer_token_endpoint_url: str | None = _opt(
        None,
        "kafka",
        "an https:// URL (http:// only for a local identity provider)",
        "OAUTHBEARER (OIDC): the identity provider's token endpoint (client credentials grant).",
    )
    kafka_sasl_oauthbearer_client_id: str | None = _opt(
        None, "kafka", "a string", "OAUTHBEARER (OIDC): the client id registered at the identity provider."
    )
    kafka_sasl_oauthbearer_client_secret: SecretStr | None = _opt(
        None,
        "kafka",
        "a string (secret; environment or file only)",
        "OAUTHBEARER (OIDC): the client secret. Never printed.",
    )
    kafka_sasl_oauthbearer_scope: str | None = _opt(
        None, "kafka", "scopes separated by spaces", "OAUTHBEARER (OIDC): scope requested with the token."
    )
    kafka_sasl_oauthbearer_extensions: str | None = _opt(
        None,
        "kafka",
        "key=value pairs separated by commas",
        "OAUTHBEARER: SASL extensions (Confluent Cloud: logicalCluster=lkc-123,identityPoolId=pool-456).",
    )
    kafka_client: dict[str, str] = _opt(
        {},
        "kafka",
        "librdkafka settings: a [kafka.client] table, key=value pairs separated by commas, or "
        "PAYMENT_EVENTS_KAFKA_CLIENT__<KEY> variables (dots as _)",
        "Any other librdkafka setting (e.g. socket.timeout.ms, client.rack); secret keys are masked.",
    )
    # topics
    topic: str = _opt(
        "payment.events", "topics", "a Kafka topic name ([A-Za-z0-9._-], 1-249 chars)", "Aggregate topic."
    )
    topic_routing: dict[str, str] = _opt(
        {},
        "topics",
        "EventType=topic pairs separated by commas (TOML: a [topic_routing] table)",
        "Per-event-type topics; types not listed go to the aggregate topic.",
    )
    dlq_topic: str = _opt("payment.events.dlq", "topics", "a Kafka topic name", "Dead-letter topic.")
    topic_partitions: int = _opt(6, "topics", "an integer >= 1", "Partitions when creating topics.")
    topic_replication_factor: int = _opt(
        1, "topics", "an integer >= 1", "Replication factor when creating topics (3 in production)."
    )
    topic_min_insync_replicas: int = _opt(
        1, "topics", "an integer >= 1 and <= the replication factor", "min.insync.replicas (2 in production)."
    )
    create_topics: bool = _opt(
        True, "topics", "true or false", "Create missing topics at start; if false, refuse to start."
    )
    # relay
    relay_batch_size: int = _opt(2000, "relay", "an integer from 1 to 100000", "Rows claimed per batch.")
    relay_max_attempts: int = _opt(
        25,
        "relay",
        "an integer >= 0 (0 = retry forever)",
        "Retry budget: failed attempts before an event is dead-lettered (broker outages do not count).",
    )
    relay_backoff_base: Duration = _opt(
        0.5, "relay", _DURATION_FORM, "First retry delay (full jitter, doubling per attempt)."
    )
    relay_backoff_cap: Duration = _opt(60.0, "relay", _DURATION_FORM, "Longest retry delay.")
    relay_poll_interval: Duration = _opt(
        1.0, "relay", _DURATION_FORM, "Longest idle sleep (PostgreSQL NOTIFY wakes the relay sooner)."
    )
    relay_delivery_timeout: Duration = _opt(
        30.0,
        "relay",
        _DURATION_FORM,
        "Longest wait for one batch's delivery reports (then the rest is retried); also bounds SIGTERM.",
    )
    relay_delivery: Literal["at-least-once", "exactly-once"] = _opt(
        "at-least-once",
        "relay",
        "at-least-once or exactly-once",
        "exactly-once: Kafka transactions fenced per shard owner, for read_committed consumers.",
    )
    relay_listen: bool = _opt(
        True, "relay", "true or false", "On PostgreSQL, wake up on LISTEN/NOTIFY (polling is the fallback)."
    )
    relay_lease_refresh: Duration = _opt(
        5.0, "relay", _DURATION_FORM, "How often shard ownership is re-balanced (takeover of a dead relay)."
    )
    relay_lease_takeover: Duration = _opt(
        30.0,
        "relay",
        _DURATION_FORM + ", at least 2s",
        "A relay silent this long (host or network gone) loses its shards to the others (PostgreSQL).",
    )
    relay_backlog_interval: Duration = _opt(
        15.0, "relay", _DURATION_FORM, "How often backlog metrics (and the outbox_stuck check) are refreshed."
    )
    relay_shard_count: int = _opt(
        64,
        "relay",
        "an integer from 1 to 32767",
        "Key shards (fixed for a deployment; writers and relays must agree).",
    )
    retention: Duration = _opt(
        7 * 86400.0, "relay", _DURATION_FORM, "Published rows are deleted after this long."
    )
    purge_interval: Duration = _opt(60.0, "relay", _DURATION_FORM, "How often published rows are purged.")
    purge_batch_size: int = _opt(
        1000, "relay", "an integer from 1 to 100000", "Rows deleted per purge transaction."
    )
    purge_max_batches: int = _opt(
        10_000, "relay", "a positive integer", "Purge transactions per purge run, at most."
    )
    purge_budget: Duration = _opt(
        50.0,
        "relay",
        _DURATION_FORM,
        "A purge run (on its own thread) deletes until caught up or this long has passed.",
    )
    # metrics / health
    metrics_enabled: bool = _opt(True, "metrics", "true or false", "Serve /metrics, /healthz, /readyz.")
    metrics_host: str = _opt("127.0.0.1", "metrics", "an IP address or host name", "Metrics bind address.")
    metrics_port: int = _opt(9464, "metrics", "an integer from 0 to 65535 (0 = any free port)", "Port.")
    health_liveness_timeout: Duration = _opt(
        120.0,
        "metrics",
        _DURATION_FORM + ", longer than relay_backoff_cap",
        "/healthz fails when the relay loop has not ticked for this long.",
    )
    # alerts
    alert_oldest_pending_age: Duration = _opt(
        300.0, "alerts", _DURATION_FORM, "Alert when the oldest pending event is older than this."
    )
    alert_broker_unreachable: Duration = _opt(
        60.0, "alerts", _DURATION_FORM, "Alert when the broker is unreachable for longer than this."
    )
    alert_cooldown: Duration = _opt(
        300.0, "alerts", _DURATION_FORM, "Repeat the same alert at most this often."
    )
    alert_webhook_url: SecretStr | None = _opt(
        None, "alerts", "an http:// or https:// URL (secret; environment or file only)", "Alert webhook."
    )
    # logging
    log_format: Literal["auto", "json", "console"] = _opt(
        "auto", "logging", "auto, json or console", "auto: console on a terminal, JSON lines otherwise."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _opt(
        "INFO", "logging", "DEBUG, INFO, WARNING or ERROR", "Log level."
    )

    # -- field validation -------------------------------------------------------------------------

    @field_validator(
        "relay_backoff_base",
        "relay_backoff_cap",
        "relay_poll_interval",
        "relay_delivery_timeout",
        "relay_lease_refresh",
        "relay_lease_takeover",
        "relay_backlog_interval",
        "retention",
        "purge_budget",
        "purge_interval",
        "health_liveness_timeout",
        "alert_oldest_pending_age",
        "alert_broker_unreachable",
        "alert_cooldown",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> float:
        return parse_duration(value)

    @field_validator("topic_routing", mode="before")
    @classmethod
    def _routing(cls, value: object) -> dict[str, str]:
        routing = _parse_routing(value)
        for event_type, topic in routing.items():
            _checked_topic(topic, f"the topic route for {event_type}")
        return routing

    @field_validator("kafka_client", mode="before")
    @classmethod
    def _kafka_client(cls, value: object) -> dict[str, str]:
        return parse_kafka_client(value)

    @field_validator("kafka_sasl_oauthbearer_token_endpoint_url")
    @classmethod
    def _token_endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError("expected an https:// URL")
            if parts.password is not None:
                raise ValueError(
                    "expected a URL without a password (set kafka_sasl_oauthbearer_client_secret)"
                )
        return value

    @field_validator("kafka_sasl_oauthbearer_extensions")
    @classmethod
    def _extensions(cls, value: str | None) -> str | None:
        if value is not None:
            for item in value.split(","):
                key, sep, text = item.partition("=")
                if not sep or not key.strip() or not text.strip():
                    raise ValueError(f"expected key=value pairs separated by commas; {item!r} is not one")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme.split("+", 1)[0] not in {"sqlite", "postgresql"}:
            raise ValueError("expected a URL starting with sqlite:/// or postgresql+psycopg://")
        problem = async_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        unparseable = ValueError(
            "SQLAlchemy cannot parse this URL; percent-encode special characters in the user name "
            "and password (@ as %40, : as %3A, / as %2F, # as %23, ? as %3F)"
        )
        try:
            port = make_url(value).port  # parsed lazily on some versions: make a bad one fail here
        except ArgumentError:
            raise unparseable from None
        except ValueError:
            # A raw "@", "/", "#" or "?" in the password moves the rest into the host and port.
            rest = value.split("://", 1)[-1]
            userinfo = rest.rpartition("@")[0]
            if rest.count("@") > 1 or any(char in userinfo for char in "/#?"):
                raise unparseable from None
            raise ValueError("the port in the URL is not a number (host:port, e.g. db:5432)") from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"the port in the URL must be 1-65535, not {port}")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("expected at least one HOST:PORT")
        for server in servers:
            match = _HOST_PORT_RE.match(server)
            if not match or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"expected HOST:PORT entries; {server!r} is not one")
        return ",".join(servers)

    @field_validator("topic", "dlq_topic")
    @classmethod
    def _topic_name(cls, value: str, info: ValidationInfo) -> str:
        return _checked_topic(value, str(info.field_name))

    @field_validator("kafka_ssl_ca_location", "kafka_ssl_certificate_location", "kafka_ssl_key_location")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @field_validator("topic_partitions", "topic_replication_factor", "topic_min_insync_replicas")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("expected an integer >= 1")
        return value

    @field_validator(*_RELAY_FIELDS)
    @classmethod
    def _relay_limit(cls, value: Any, info: ValidationInfo) -> Any:
        # The relay's own limits (one home: payment_events.relay.settings.RELAY_LIMITS).
        from payment_events.relay.settings import check_relay_option

        name = _RELAY_FIELDS[str(info.field_name)]
        try:
            check_relay_option(name, (value or None) if name == "max_attempts" else value)
        except ConfigurationError as exc:
            raise ValueError(str(exc).replace(f"relay option {name} ", "")) from None
        return value

    @field_validator("metrics_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("expected an integer from 0 to 65535")
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                "topic_min_insync_replicas must not exceed topic_replication_factor "
                f"({self.topic_min_insync_replicas} > {self.topic_replication_factor})"
            )
        from payment_events.relay.settings import check_backoff

        try:
            check_backoff(self.relay_backoff_base, self.relay_backoff_cap)
        except ConfigurationError:
            raise ValueError("relay_backoff_base must not exceed relay_backoff_cap") from None
        if self.health_liveness_timeout <= self.relay_backoff_cap:
            raise ValueError(
                f"health_liveness_timeout ({self.health_liveness_timeout:g}s) must be longer than "
                f"relay_backoff_cap ({self.relay_backoff_cap:g}s): a relay pausing during a broker outage "
                "would otherwise look dead to /healthz"
            )
        self._check_sasl()
        return self

    def _check_sasl(self) -> None:
        """The SASL options agree with the protocol and the mechanism."""
        oauth = [name for name in _OAUTH_FIELDS if getattr(self, name) is not None]
        mechanism = self.kafka_sasl_mechanism
        if oauth and mechanism != "OAUTHBEARER":
            raise ValueError(f"{oauth[0]} is only used with kafka_sasl_mechanism OAUTHBEARER")
        if not self.kafka_security_protocol.startswith("SASL_"):
            if mechanism == "OAUTHBEARER":
                raise ValueError("kafka_sasl_mechanism OAUTHBEARER needs kafka_security_protocol SASL_SSL")
            return
        if mechanism == "OAUTHBEARER":
            needed: tuple[str, ...] = _OAUTH_FIELDS[:3]
            extra = [n for n in ("kafka_sasl_username", "kafka_sasl_password") if getattr(self, n)]
            if extra:
                raise ValueError(f"{extra[0]} is not used with kafka_sasl_mechanism OAUTHBEARER (OIDC)")
        else:
            needed = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            what = "kafka_sasl_mechanism OAUTHBEARER" if mechanism == "OAUTHBEARER" else (
                f"kafka_security_protocol {self.kafka_security_protocol}"
            )
            raise ValueError(f"{what} needs " + ", ".join(missing))

    # -- views ------------------------------------------------------------------------------------

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "database_url" and isinstance(value, str):
                yield name, mask_url(value)
            elif name == "kafka_client" and isinstance(value, dict):
                yield name, masked_kafka_client(value)
            else:
                yield name, value

    def masked(self) -> dict[str, Any]:
        """Every setting as JSON-friendly values, secrets replaced by ``***`` (or absent as ``null``)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECRET_FIELDS:
                out[name] = None if value is None else "***"
            elif name == "database_url":
                out[name] = mask_url(value)
            elif name == "kafka_client":
                out[name] = masked_kafka_client(value)
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, dict):
                out[name] = dict(value)
            else:
                out[name] = value
        return out

    def kafka_config(self) -> dict[str, Any]:
        """librdkafka client settings (connection and security only), secrets included: pass, never print.

        librdkafka's own log lines go to the ``payment_events.kafka`` logger (so they are structured and
        redacted like every other line) instead of raw text on stderr.
        """
        conf: dict[str, Any] = {
            "logger": logging.getLogger("payment_events.kafka"),
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "client.id": self.kafka_client_id,
            "security.protocol": self.kafka_security_protocol.lower(),
        }
        oauth = self.kafka_sasl_mechanism == "OAUTHBEARER"
        optional: dict[str, object] = {
            "ssl.ca.location": self.kafka_ssl_ca_location,
            "ssl.certificate.location": self.kafka_ssl_certificate_location,
            "ssl.key.location": self.kafka_ssl_key_location,
            "ssl.key.password": self.kafka_ssl_key_password,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": self.kafka_sasl_password,
            # OIDC: librdkafka fetches and refreshes the token itself (client credentials grant).
            "sasl.oauthbearer.method": "oidc" if oauth else None,
            "sasl.oauthbearer.token.endpoint.url": self.kafka_sasl_oauthbearer_token_endpoint_url,
            "sasl.oauthbearer.client.id": self.kafka_sasl_oauthbearer_client_id,
            "sasl.oauthbearer.client.secret": self.kafka_sasl_oauthbearer_client_secret,
            "sasl.oauthbearer.scope": self.kafka_sasl_oauthbearer_scope,
            "sasl.oauthbearer.extensions": self.kafka_sasl_oauthbearer_extensions,
        }
        for key, value in optional.items():
            if value is None:
                continue
            conf[key] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        conf.update(self.kafka_client)  # checked at load: no key above, nothing weakening delivery
        return conf

    def to_relay_config(self) -> RelayConfig:
        """The relay's own frozen config, from these settings (Kafka security goes in producer overrides)."""
        from payment_events.relay.settings import RelayConfig

        overrides = {k: v for k, v in self.kafka_config().items() if k != "bootstrap.servers"}
        return RelayConfig(
            batch_size=self.relay_batch_size,
            max_attempts=self.relay_max_attempts or None,
            backoff_base_seconds=self.relay_backoff_base,
            backoff_cap_seconds=self.relay_backoff_cap,
            poll_interval_seconds=self.relay_poll_interval,
            delivery_timeout_seconds=self.relay_delivery_timeout,
            retention_seconds=self.retention,
            purge_interval_seconds=self.purge_interval,
            purge_batch_size=self.purge_batch_size,
            purge_max_batches=self.purge_max_batches,
            purge_budget_seconds=self.purge_budget,
            dlq_topic=self.dlq_topic,
            shard_count=self.relay_shard_count,
            listen=self.relay_listen,
            delivery=self.relay_delivery,
            lease_refresh_seconds=self.relay_lease_refresh,
            lease_takeover_seconds=self.relay_lease_takeover,
            backlog_interval_seconds=self.relay_backlog_interval,
            producer_overrides=overrides,
        )

    def topic_router(self) -> TopicRouter:
        """The topic router for these settings (raises ConfigurationError for a route Kafka refuses)."""
        from payment_events.kafka.topics import TopicRouter

        return TopicRouter(self.topic, self.topic_routing)

    def alert_webhook(self) -> str | None:
        """The webhook URL in clear, for the notifier only."""
        return None if self.alert_webhook_url is None else self.alert_webhook_url.get_secret_value()
