"""Any librdkafka setting from the configuration: ``kafka_client`` (a TOML ``[kafka.client]`` table,
``PAYMENT_EVENTS_KAFKA_CLIENT`` as ``key=value`` pairs, or ``PAYMENT_EVENTS_KAFKA_CLIENT__<KEY>`` variables).

Refused, with the reason: keys that have an option of their own (one place to set each, and that option's
checks apply), keys that would weaken the relay's delivery guarantees (idempotence, ``acks=all``, order),
and callbacks only code can set. Values of secret-looking keys (passwords, secrets, tokens, key material)
are masked wherever settings are shown.
"""

from __future__ import annotations

import re

_ENV_PREFIX = "PAYMENT_EVENTS_"  # settings.ENV_PREFIX (settings imports this module)
KAFKA_CLIENT_ENV_PREFIX = _ENV_PREFIX + "KAFKA_CLIENT__"
"""``PAYMENT_EVENTS_KAFKA_CLIENT__SOCKET_TIMEOUT_MS=30000`` sets ``socket.timeout.ms`` in ``kafka_client``."""
_KAFKA_KEY_RE = re.compile(r"^[a-z][a-z0-9]*(\.[a-z0-9]+)*$")
_KAFKA_SECRET_KEY_RE = re.compile(
    r"pass(word)?|secret|token|credential|jaas|oauthbearer\.config|\.pem$|keystore|private", re.IGNORECASE
)
# librdkafka keys with an option of their own: one place to set each (and the option's checks apply).
_KAFKA_OWN_OPTION = {
    "bootstrap.servers": "kafka_bootstrap_servers",
    "metadata.broker.list": "kafka_bootstrap_servers",
    "client.id": "kafka_client_id",
    "security.protocol": "kafka_security_protocol",
    "ssl.ca.location": "kafka_ssl_ca_location",
    "ssl.certificate.location": "kafka_ssl_certificate_location",
    "ssl.key.location": "kafka_ssl_key_location",
    "ssl.key.password": "kafka_ssl_key_password",
    "sasl.mechanism": "kafka_sasl_mechanism",
    "sasl.mechanisms": "kafka_sasl_mechanism",
    "sasl.username": "kafka_sasl_username",
    "sasl.password": "kafka_sasl_password",
    "sasl.oauthbearer.method": "kafka_sasl_mechanism",
    "sasl.oauthbearer.token.endpoint.url": "kafka_sasl_oauthbearer_token_endpoint_url",
    "sasl.oauthbearer.client.id": "kafka_sasl_oauthbearer_client_id",
    "sasl.oauthbearer.client.secret": "kafka_sasl_oauthbearer_client_secret",
    "sasl.oauthbearer.scope": "kafka_sasl_oauthbearer_scope",
    "sasl.oauthbearer.extensions": "kafka_sasl_oauthbearer_extensions",
}
# Keys that would weaken the relay's delivery guarantees (idempotent, acks=all, ordered, not
# transactional) or that only code can set (callbacks).
_KAFKA_REFUSED = {
    "enable.idempotence": "it would weaken delivery (the relay's producer is idempotent)",
    "acks": "it would weaken delivery (the relay waits for acks=all)",
    "request.required.acks": "it would weaken delivery (the relay waits for acks=all)",
    "max.in.flight.requests.per.connection": "it would break per-key order (at most 5 with idempotence)",
    "max.in.flight": "it would break per-key order (at most 5 with idempotence)",
    "enable.gapless.guarantee": "it would weaken delivery",
    "message.send.max.retries": "it would weaken delivery (the relay relies on librdkafka's retries)",
    "retries": "it would weaken delivery (the relay relies on librdkafka's retries)",
    "transactional.id": "the relay's producer is not transactional",
    "logger": "payment-events sets it (librdkafka's lines go through its logs)",
    "error_cb": "payment-events sets it",
    "stats_cb": "payment-events sets it",
    "throttle_cb": "payment-events sets it",
    "oauth_cb": "it is a Python callback; use kafka_sasl_mechanism OAUTHBEARER (OIDC) instead",
    "on_delivery": "payment-events sets it",
}


def kafka_key_is_secret(key: str) -> bool:
    """Whether a librdkafka setting's value is masked when shown (passwords, secrets, tokens, keys)."""
    return bool(_KAFKA_SECRET_KEY_RE.search(key))


def _pairs(value: object) -> dict[str, object]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError("expected a table of librdkafka settings or key=value pairs")
    pairs: dict[str, object] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value pairs separated by commas; {item.strip()!r} has no '='")
        pairs[key.strip()] = text.strip()
    return pairs


def parse_kafka_client(value: object) -> dict[str, str]:
    """librdkafka settings from a TOML table or ``key=value`` pairs separated by commas, checked (see the
    module docstring) and with every value as text (booleans as ``true``/``false``)."""
    pairs = _pairs(value)
    out: dict[str, str] = {}
    for key, raw in pairs.items():
        if not _KAFKA_KEY_RE.match(key):
            raise ValueError(f"{key!r} is not a librdkafka setting name (lower case, dot separated)")
        if key in _KAFKA_OWN_OPTION:
            raise ValueError(f"{key} has its own option: set {_KAFKA_OWN_OPTION[key]} instead")
        if key in _KAFKA_REFUSED:
            raise ValueError(f"{key} cannot be set: {_KAFKA_REFUSED[key]}")
        if isinstance(raw, bool):
            out[key] = "true" if raw else "false"
        elif isinstance(raw, str | int | float):
            out[key] = str(raw)
        else:
            raise ValueError(f"{key} must be a string, number or boolean")
    return out


def masked_kafka_client(settings: dict[str, str]) -> dict[str, str]:
    """``kafka_client`` as shown: values of secret-looking keys replaced by ``***``."""
    return {key: ("***" if kafka_key_is_secret(key) else value) for key, value in settings.items()}


def env_key(variable: str) -> str | None:
    """The librdkafka key of a ``PAYMENT_EVENTS_KAFKA_CLIENT__<KEY>`` variable (``_`` becomes ``.``),
    or None for any other variable."""
    if not variable.startswith(KAFKA_CLIENT_ENV_PREFIX):
        return None
    return variable[len(KAFKA_CLIENT_ENV_PREFIX) :].lower().replace("_", ".")
