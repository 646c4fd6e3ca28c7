"""Kafka security settings: OAUTHBEARER (OIDC) options and their mapping to librdkafka, any librdkafka
setting from TOML or the environment (kafka_client), what is refused, and what is masked."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import click
import pytest

from payment_events import config as cfg
from payment_events.cli.base import settings_options
from payment_events.config import load_settings, unknown_environment
from payment_events.errors import ConfigurationError
from payment_events.kafka.producer import producer_config

SECRET = "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET"
ENDPOINT = "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL"
OIDC = {
    "PAYMENT_EVENTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "PAYMENT_EVENTS_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
    "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp.example/oauth2/token",
    "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "payment-events-relay",
    "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "oidc-client-s3cret",
    "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_SCOPE": "kafka.produce kafka.admin",
    "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_EXTENSIONS": "logicalCluster=lkc-123,identityPoolId=pool-456",
}


def test_oauthbearer_oidc_maps_to_librdkafka_settings() -> None:
    """OAUTHBEARER with its fields becomes sasl.mechanism OAUTHBEARER, sasl.oauthbearer.method oidc and
    the endpoint, client id, secret, scope and extensions; no username or password is passed."""
    conf = load_settings(environ=OIDC).kafka_config()
    assert conf["security.protocol"] == "sasl_ssl"
    assert conf["sasl.mechanism"] == "OAUTHBEARER"
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/oauth2/token"
    assert conf["sasl.oauthbearer.client.id"] == "payment-events-relay"
    assert conf["sasl.oauthbearer.client.secret"] == "oidc-client-s3cret"
    assert conf["sasl.oauthbearer.scope"] == "kafka.produce kafka.admin"
    assert conf["sasl.oauthbearer.extensions"] == "logicalCluster=lkc-123,identityPoolId=pool-456"
    assert "sasl.username" not in conf
    assert "sasl.password" not in conf


def test_oauthbearer_client_secret_is_masked_and_has_no_flag() -> None:
    """The client secret is *** in config show and repr, and no command takes it as a flag."""
    settings = load_settings(environ=OIDC)
    assert settings.masked()["kafka_sasl_oauthbearer_client_secret"] == "***"
    assert "oidc-client-s3cret" not in repr(settings)
    assert "oidc-client-s3cret" not in json.dumps(settings.masked())
    assert cfg.is_secret("kafka_sasl_oauthbearer_client_secret")

    @settings_options("kafka")
    def command(**params: object) -> None:
        """A command with the kafka flags."""

    flags = {opt for param in click.command()(command).params for opt in param.opts}
    assert "--kafka-sasl-oauthbearer-client-id" in flags
    assert "--kafka-sasl-oauthbearer-client-secret" not in flags
    assert "--kafka-client" not in flags


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({SECRET: ""}, "needs kafka_sasl_oauthbearer_client_secret"),
        ({ENDPOINT: ""}, "needs kafka_sasl_oauthbearer_token"),
        ({"PAYMENT_EVENTS_KAFKA_SASL_USERNAME": "relay"}, "kafka_sasl_username is not used with"),
        ({"PAYMENT_EVENTS_KAFKA_SECURITY_PROTOCOL": "SSL"}, "OAUTHBEARER needs kafka_security_protocol"),
        ({"PAYMENT_EVENTS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, "only used with kafka_sasl_mechanism"),
        (
            {"PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "idp.example/token"},
            "expected an https:// URL",
        ),
        (
            {"PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://u:pw@idp.example/t"},
            "without a password",
        ),
        ({"PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_EXTENSIONS": "logicalCluster"}, "key=value pairs"),
    ],
)
def test_oauthbearer_options_are_validated(change: dict[str, str], message: str) -> None:
    """OAUTHBEARER needs its endpoint, client id and secret over SASL_*; its options need it; bad forms
    are refused with the option named, and the secret is never echoed."""
    env = {k: v for k, v in {**OIDC, **change}.items() if v}
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_settings(environ=env)
    assert "oidc-client-s3cret" not in str(caught.value)


def test_kafka_client_from_toml_and_environment_is_merged_into_kafka_config(tmp_path: Path) -> None:
    """[kafka.client] in TOML, PAYMENT_EVENTS_KAFKA_CLIENT pairs and PAYMENT_EVENTS_KAFKA_CLIENT__<KEY>
    variables merge key by key (later wins) and reach kafka_config() and the relay's producer config."""
    toml = tmp_path / "pe.toml"
    toml.write_text(
        '[kafka]\nclient_id = "relay-a"\n\n[kafka.client]\n"socket.timeout.ms" = 30000\n'
        '"client.rack" = "eu-west-1a"\n"socket.keepalive.enable" = true\n"linger.ms" = 10\n'
    )
    settings = load_settings(
        config_file=toml,
        environ={
            "PAYMENT_EVENTS_KAFKA_CLIENT": "client.rack=eu-west-1b,topic.metadata.refresh.interval.ms=60000",
            "PAYMENT_EVENTS_KAFKA_CLIENT__SOCKET_TIMEOUT_MS": "45000",
            "PAYMENT_EVENTS_KAFKA_CLIENT__SSL_CIPHER_SUITES": "ECDHE-RSA-AES256-GCM-SHA384,AES128-SHA",
        },
    )
    assert settings.kafka_client_id == "relay-a"
    assert settings.kafka_client == {
        "socket.timeout.ms": "45000",
        "client.rack": "eu-west-1b",
        "socket.keepalive.enable": "true",
        "linger.ms": "10",
        "topic.metadata.refresh.interval.ms": "60000",
        "ssl.cipher.suites": "ECDHE-RSA-AES256-GCM-SHA384,AES128-SHA",
    }
    conf = settings.kafka_config()
    assert conf["socket.timeout.ms"] == "45000"
    assert conf["client.rack"] == "eu-west-1b"
    relay = settings.to_relay_config()
    produced = producer_config(settings.kafka_bootstrap_servers, relay.producer_overrides)
    assert produced["linger.ms"] == "10"
    assert produced["enable.idempotence"] is True
    assert produced["acks"] == "all"


def test_kafka_client_settings_are_accepted_by_librdkafka() -> None:
    """What kafka_client passes is what librdkafka reads: a real client accepts the keys, and an unknown
    key is refused by librdkafka naming it."""
    from confluent_kafka import KafkaException, Producer

    pairs = "socket.timeout.ms=45000,client.rack=r1"
    settings = load_settings(environ={"PAYMENT_EVENTS_KAFKA_CLIENT": pairs})
    Producer({k: v for k, v in settings.kafka_config().items() if k != "logger"})
    typo = load_settings(environ={"PAYMENT_EVENTS_KAFKA_CLIENT__SOCKET_TIMOUT_MS": "1"})
    with pytest.raises(KafkaException, match=r"socket\.timout\.ms"):
        Producer({k: v for k, v in typo.kafka_config().items() if k != "logger"})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PAYMENT_EVENTS_KAFKA_CLIENT__ACKS", "1", "acks cannot be set: it would weaken delivery"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT__ENABLE_IDEMPOTENCE", "false", "enable.idempotence cannot be set"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT", "max.in.flight.requests.per.connection=20", "per-key order"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT", "bootstrap.servers=evil:9092", "set kafka_bootstrap_servers instead"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT", "sasl.password=hunter2", "set kafka_sasl_password instead"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT", "logger=x", "logger cannot be set"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT", "socket.timeout.ms", "has no '='"),
        ("PAYMENT_EVENTS_KAFKA_CLIENT", "Socket Timeout=1", "not a librdkafka setting name"),
    ],
)
def test_kafka_client_refuses_what_would_weaken_delivery_or_bypass_an_option(
    variable: str, value: str, message: str
) -> None:
    """Delivery-weakening keys, keys with their own option, callbacks and malformed input are refused
    with the variable and the reason named, never echoing the value."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_settings(environ={variable: value})
    assert variable in str(caught.value) or "PAYMENT_EVENTS_KAFKA_CLIENT" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_kafka_client_refused_in_toml_names_the_file(tmp_path: Path) -> None:
    """A refused key in the [kafka.client] table names the config file."""
    toml = tmp_path / "pe.toml"
    toml.write_text('[kafka.client]\nacks = "1"\n')
    with pytest.raises(ConfigurationError, match=r"config file .*pe\.toml.*acks cannot be set"):
        load_settings(config_file=toml, environ={})


def test_kafka_client_secret_keys_are_masked_everywhere_settings_are_shown() -> None:
    """Values of password, secret, token and key-material keys are *** in config show and repr."""
    settings = load_settings(
        environ={
            "PAYMENT_EVENTS_KAFKA_CLIENT__SSL_KEYSTORE_PASSWORD": "ks-s3cret",
            "PAYMENT_EVENTS_KAFKA_CLIENT__SASL_OAUTHBEARER_CONFIG": "principal=x token=tok-s3cret",
            "PAYMENT_EVENTS_KAFKA_CLIENT__SSL_KEY_PEM": "-----BEGIN PRIVATE KEY-----pem-s3cret",
            "PAYMENT_EVENTS_KAFKA_CLIENT__SOCKET_TIMEOUT_MS": "45000",
        }
    )
    shown = settings.masked()["kafka_client"]
    assert shown == {
        "ssl.keystore.password": "***",
        "sasl.oauthbearer.config": "***",
        "ssl.key.pem": "***",
        "socket.timeout.ms": "45000",
    }
    for text in (json.dumps(settings.masked()), repr(settings), str(settings)):
        assert "s3cret" not in text
    assert settings.kafka_config()["ssl.keystore.password"] == "ks-s3cret"  # passed to the client, only


def test_kafka_client_variables_are_not_reported_as_unknown() -> None:
    """PAYMENT_EVENTS_KAFKA_CLIENT__<KEY> variables are options, not typos."""
    env = {"PAYMENT_EVENTS_KAFKA_CLIENT__SOCKET_TIMEOUT_MS": "1", "PAYMENT_EVENTS_KAFKA_CLEINT": "x"}
    assert unknown_environment(env) == ["PAYMENT_EVENTS_KAFKA_CLEINT"]


class _TokenEndpoint(BaseHTTPRequestHandler):
    """A fake OIDC token endpoint that records each request and answers with an unsigned JWT."""

    requests: ClassVar[list[tuple[dict[str, str], dict[str, list[str]]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        type(self).requests.append(({k.lower(): v for k, v in self.headers.items()}, form))
        claims = {"sub": "payment-events-relay", "exp": int(time.time()) + 3600, "iat": int(time.time())}

        def part(data: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        token = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"
        body = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    """A local fake token endpoint's URL."""
    _TokenEndpoint.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/token"
    server.shutdown()
    server.server_close()


def test_librdkafka_fetches_an_oidc_token_with_the_configured_client_credentials(
    token_endpoint: str,
) -> None:
    """A real librdkafka client built from the OAUTHBEARER settings asks the token endpoint for a token
    with the client credentials grant, the client id and secret (HTTP Basic) and the scope."""
    from confluent_kafka import Producer

    from tests.brokers import free_port

    env = {
        **OIDC,
        "PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "PAYMENT_EVENTS_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": token_endpoint,
    }
    conf = {k: v for k, v in load_settings(environ=env).kafka_config().items() if k != "logger"}
    producer = Producer(conf)
    deadline = time.monotonic() + 15
    while not _TokenEndpoint.requests and time.monotonic() < deadline:
        producer.poll(0.1)
    assert _TokenEndpoint.requests, "librdkafka never asked the token endpoint"
    headers, form = _TokenEndpoint.requests[0]
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["kafka.produce kafka.admin"]
    basic = base64.b64encode(b"payment-events-relay:oidc-client-s3cret").decode()
    assert headers["authorization"] == f"Basic {basic}"
