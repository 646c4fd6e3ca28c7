"""Kafka security end to end against a real broker listener: TLS (the server verified with our CA) and
SASL_SSL with SCRAM-SHA-512, through the relay's own producer, ``topics ensure`` and a relay drain; a
wrong password or an unknown CA fails with a message that says so and never shows the secret."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from payment_events.config import Settings, load_settings
from payment_events.errors import ConfigurationError
from payment_events.kafka.producer import KafkaBatchProducer, producer_config
from payment_events.relay.delivery import Delivered
from payment_events.relay.ports import OutgoingMessage
from payment_events.service import drain, prepare_topics
from tests.acceptance.support import cli_env, run_cli
from tests.brokers import SecureBroker
from tests.integration.relay_support import migrated_engine, payment_event, write


def secure_env(broker: SecureBroker, protocol: str, password: str | None = None) -> dict[str, str]:
    """Settings (as environment variables) that reach ``broker`` over ``protocol``, CA-verified."""
    env = {"PAYMENT_EVENTS_KAFKA_SSL_CA_LOCATION": str(broker.ca)}
    if protocol == "SSL":
        env.update(
            PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS=broker.ssl_bootstrap,
            PAYMENT_EVENTS_KAFKA_SECURITY_PROTOCOL="SSL",
        )
    else:
        env.update(
            PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS=broker.sasl_bootstrap,
            PAYMENT_EVENTS_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            PAYMENT_EVENTS_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            PAYMENT_EVENTS_KAFKA_SASL_USERNAME=broker.username,
            PAYMENT_EVENTS_KAFKA_SASL_PASSWORD=password if password is not None else broker.password,
        )
    return env


def settings_for(broker: SecureBroker, protocol: str, tmp_path: Path, **extra: str) -> Settings:
    """Settings over ``protocol`` with fresh topics and an SQLite outbox in ``tmp_path``."""
    suffix = uuid.uuid4().hex[:10]
    env = {
        **secure_env(broker, protocol),
        "PAYMENT_EVENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'outbox.db'}",
        "PAYMENT_EVENTS_TOPIC": f"secure.events.{suffix}",
        "PAYMENT_EVENTS_DLQ_TOPIC": f"secure.events.{suffix}.dlq",
        "PAYMENT_EVENTS_TOPIC_PARTITIONS": "1",
        **extra,
    }
    return load_settings(environ=env)


def read_back(settings: Settings, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    """``count`` messages of ``topic`` read by an independent consumer over the same secure listener."""
    from confluent_kafka import Consumer

    config = {k: v for k, v in settings.kafka_config().items() if k != "logger"}
    consumer = Consumer(
        {**config, "group.id": f"security-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
         "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    try:
        import time

        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_relay_producer_round_trips_an_event_over_a_secure_listener(
    secure_broker: SecureBroker, protocol: str, tmp_path: Path
) -> None:
    """The relay's producer, built from the settings' kafka_config, gets an ack over TLS (and over
    SASL_SSL with SCRAM-SHA-512), and an independent consumer reads the event back."""
    settings = settings_for(secure_broker, protocol, tmp_path)
    (status, _) = prepare_topics(settings)
    assert status.created
    config = settings.to_relay_config()
    producer = KafkaBatchProducer(
        producer_config(settings.kafka_bootstrap_servers, config.producer_overrides)
    )
    try:
        (outcome,) = producer.produce_batch(
            [OutgoingMessage(settings.topic, b"pay-1", b'{"ok": true}', (("ce_id", b"evt-1"),))], 30.0
        )
    finally:
        producer.close(5.0)
    assert isinstance(outcome, Delivered), outcome
    (message,) = read_back(settings, settings.topic, 1)
    assert (message.key(), message.value(), message.offset()) == (b"pay-1", b'{"ok": true}', outcome.offset)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_relay_drain_publishes_the_outbox_over_a_secure_listener(
    secure_broker: SecureBroker, protocol: str, tmp_path: Path
) -> None:
    """`relay --drain`'s code path (schema check, topics ensure, relay) publishes committed outbox rows
    over a secure listener, each marked with the offset the broker gave it."""
    settings = settings_for(secure_broker, protocol, tmp_path)
    engine = migrated_engine(settings.database_url)
    try:
        ids = write(engine, settings.topic, [payment_event("pay-7", n) for n in range(5)])
    finally:
        engine.dispose()
    assert drain(settings) == 5
    messages = read_back(settings, settings.topic, 5)
    seen = [dict(m.headers() or [])["ce_id"].decode() for m in messages]
    assert seen == ids


def test_topics_ensure_cli_over_sasl_ssl_scram(secure_broker: SecureBroker) -> None:
    """`payment-events topics ensure` creates the topics over SASL_SSL with SCRAM-SHA-512 (exit 0)."""
    suffix = uuid.uuid4().hex[:10]
    env = cli_env()
    env.update(secure_env(secure_broker, "SASL_SSL"))
    topics = {f"secure.cli.{suffix}", f"secure.cli.{suffix}.dlq"}
    env.update(PAYMENT_EVENTS_TOPIC=f"secure.cli.{suffix}")
    env.update(PAYMENT_EVENTS_DLQ_TOPIC=f"secure.cli.{suffix}.dlq")
    result = run_cli("topics", "ensure", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert {t["topic"] for t in json.loads(result.stdout)} == topics
    assert secure_broker.password not in result.stdout + result.stderr


def test_wrong_password_says_authentication_failed_and_never_prints_it(
    secure_broker: SecureBroker,
) -> None:
    """A wrong SCRAM password stops `topics ensure` with exit 2 and 'Kafka authentication failed' naming
    the mechanism and user, not 'is bootstrap.servers right?'; neither the wrong nor the right password
    appears in the output or the logs (librdkafka's lines come out as kafka.auth_failed)."""
    wrong = "Wr0ng-" + uuid.uuid4().hex
    env = cli_env()
    env.update(secure_env(secure_broker, "SASL_SSL", password=wrong))
    env["PAYMENT_EVENTS_LOG_LEVEL"] = "DEBUG"
    result = run_cli("topics", "ensure", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    expected = "Kafka authentication failed (SASL SCRAM-SHA-512 as user 'payment-events' over SASL_SSL)"
    assert expected in output
    assert "bootstrap.servers right" not in output
    assert wrong not in output
    assert secure_broker.password not in output
    events = [json.loads(line).get("event") for line in result.stderr.splitlines() if line.startswith("{")]
    assert "kafka.auth_failed" in events


def test_relay_producer_with_a_wrong_password_logs_auth_failed_and_delivers_nothing(
    secure_broker: SecureBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A running relay whose credentials the brokers refuse gets no ack (its rows stay pending) and logs
    relay.auth_failed at ERROR, without the password."""
    settings = settings_for(secure_broker, "SASL_SSL", tmp_path)
    prepare_topics(settings)
    wrong = "Wr0ng-" + uuid.uuid4().hex
    bad = settings.model_copy(update={"kafka_sasl_password": SecretStr(wrong)})
    config = bad.to_relay_config()
    producer = KafkaBatchProducer(producer_config(bad.kafka_bootstrap_servers, config.producer_overrides))
    caplog.set_level(logging.DEBUG)
    try:
        (outcome,) = producer.produce_batch(
            [OutgoingMessage(settings.topic, b"pay-1", b"{}", (("ce_id", b"evt-1"),))], 5.0
        )
    finally:
        producer.close(0.0)
    assert not isinstance(outcome, Delivered)
    refused = [r for r in caplog.records if getattr(r, "event", None) == "relay.auth_failed"]
    assert refused
    assert refused[0].levelno == logging.ERROR
    assert wrong not in caplog.text


def test_a_broker_certificate_the_ca_does_not_sign_is_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    """Without our CA (the system's CAs do not know it) the TLS handshake fails, and the error says so."""
    settings = settings_for(secure_broker, "SSL", tmp_path)
    no_ca = settings.model_copy(update={"kafka_ssl_ca_location": None})
    refused = r"TLS handshake with the Kafka brokers failed \(certificate verify failed\)"
    with pytest.raises(ConfigurationError, match=refused):
        prepare_topics(no_ca)
