"""Make sure the topics exist, through the Kafka admin API: create missing ones or refuse to start.

``ensure_topics`` is what ``payment-events topics ensure`` and the relay's start-up check call. Existing
topics are never changed; differences from the wanted settings (fewer partitions, another
``min.insync.replicas``) are reported back so the operator decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from payment_events.errors import ConfigurationError, TransientPublishError
from payment_events.kafka.topics import validate_topic_name

log = logging.getLogger("payment_events.kafka.admin")


@dataclass(frozen=True, slots=True)
class TopicStatus:
    """One topic after ``ensure_topics``: ``created`` now or already there, and what differs."""

    name: str
    created: bool
    partitions: int
    problems: tuple[str, ...] = ()


def ensure_topics(
    admin_config: Mapping[str, Any],
    topics: Sequence[str],
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    create: bool = True,
    timeout: float = 30.0,
) -> list[TopicStatus]:
    """Check that every topic in ``topics`` exists; create the missing ones if ``create``.

    ``admin_config`` is a librdkafka configuration (at least ``bootstrap.servers``; security settings
    too). Raises ``ConfigurationError`` when a topic is missing and ``create`` is off, or the cluster
    refuses the settings; ``TransientPublishError`` when the brokers cannot be reached.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    names = [validate_topic_name(t) for t in dict.fromkeys(topics)]
    _check_numbers(partitions, replication_factor, min_insync_replicas)
    client_log = logging.getLogger("payment_events.kafka.admin.librdkafka")
    errors: list[Any] = []
    client_config: dict[str, Any] = {"logger": client_log, **admin_config, "error_cb": errors.append}
    admin = AdminClient(client_config)
    existing = _partition_counts(admin, timeout, errors, client_config)
    missing = [n for n in names if n not in existing]
    if missing and not create:
        raise ConfigurationError(
            f"topic {missing[0]} does not exist and auto-creation is off: create it with "
            "`payment-events topics ensure` (or ask the Kafka operators), then start again"
        )
    created: set[str] = set()
    if missing:
        config = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor, config=config)
             for n in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout)
                created.add(name)
                log.info("topic created", extra={"event": "topics.created", "topic": name})
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # another instance created it first
                raise ConfigurationError(
                    f"cannot create topic {name}: {error.str()} (partitions={partitions}, "
                    f"replication_factor={replication_factor})"
                ) from None
        _wait_for_leaders(admin, sorted(created), timeout)
        existing = _partition_counts(admin, timeout)
    problems = _differences(
        admin, names, existing, partitions=partitions, min_insync_replicas=min_insync_replicas,
        timeout=timeout,
    )
    return [
        TopicStatus(n, n in created, existing.get(n, partitions), tuple(problems.get(n, ()))) for n in names
    ]


def _check_numbers(partitions: int, replication_factor: int, min_insync_replicas: int | None) -> None:
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigurationError("topic partitions must be a positive integer")
    rf = replication_factor
    if isinstance(rf, bool) or not isinstance(rf, int) or rf < 1:
        raise ConfigurationError("topic replication_factor must be a positive integer")
    if min_insync_replicas is not None and not 1 <= min_insync_replicas <= replication_factor:
        raise ConfigurationError(
            "topic min_insync_replicas must be between 1 and the replication factor "
            f"({replication_factor}); with acks=all it bounds how many replicas must confirm"
        )


def _partition_counts(
    admin: Any, timeout: float, errors: list[Any] | None = None, config: Mapping[str, Any] | None = None
) -> dict[str, int]:
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout
    while True:
        # Short attempts, so that a broker refusing our credentials or certificate (reported through
        # the error callback, served by poll) stops us at once instead of after the whole timeout.
        left = deadline - time.monotonic()
        try:
            metadata = admin.list_topics(timeout=max(0.1, min(left, 2.0) if errors is not None else left))
            break
        except KafkaException as exc:
            if errors is not None:
                admin.poll(0.1)  # serves the error callbacks: why the brokers could not be reached
                cause = connection_failure(errors, config or {})
                if cause is not None:
                    raise ConfigurationError(cause) from None
            if errors is None or time.monotonic() >= deadline:
                error = exc.args[0]
                raise TransientPublishError(broker_error_text(error.name(), str(error.str()))) from None
    return {
        name: len(meta.partitions) for name, meta in metadata.topics.items() if meta.error is None
    }


_AUTH_CODES = {"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL"}


def broker_error_text(code: str, message: str) -> str:
    """What to tell an operator when the brokers cannot be used: the client's own words, and the likely
    fix (authentication settings for an authentication failure, the address otherwise)."""
    detail = " ".join(message.split())[:300]
    if code in _AUTH_CODES or "authentication" in detail.lower() or "sasl" in detail.lower():
        return (
            f"the Kafka brokers refused the client's authentication ({code}: {detail}); check "
            "kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password"
        )
    return f"cannot reach the Kafka brokers to check topics ({code}: {detail}); is bootstrap.servers right?"


def connection_failure(errors: Sequence[Any], config: Mapping[str, Any]) -> str | None:
    """What an operator must fix when the client errors (``KafkaError`` objects from ``error_cb``) show the
    brokers answered but refused us: authentication or the TLS handshake. None for other failures.

    The message names the mechanism, user and CA file, never the password.
    """
    protocol = str(config.get("security.protocol", "plaintext")).upper()
    for error in errors:
        code = error.name()
        text = str(error.str())
        if code == "_AUTHENTICATION" or "authentication failed" in text.lower():
            mechanism = config.get("sasl.mechanism", config.get("sasl.mechanisms", "?"))
            user = config.get("sasl.username")
            who = f" as user {user!r}" if user else ""
            return (
                f"Kafka authentication failed (SASL {mechanism}{who} over {protocol}): the brokers refused "
                "the credentials; check kafka_sasl_username and kafka_sasl_password (or the OAUTHBEARER "
                "client id and secret) and that the user exists on the cluster"
            )
        if code == "_SSL" or "ssl handshake failed" in text.lower() or "certificate verify" in text.lower():
            ca = config.get("ssl.ca.location")
            where = f"the CA file {ca}" if ca else "the system's CAs (kafka_ssl_ca_location unset)"
            return (
                f"TLS handshake with the Kafka brokers failed ({_tls_reason(text)}); the broker's "
                f"certificate must be signed by {where} and name the host in bootstrap.servers"
            )
    return None


def _tls_reason(text: str) -> str:
    lowered = text.lower()
    if "certificate verify failed" in lowered:
        return "certificate verify failed"
    if "plaintext" in lowered:
        return "the listener does not speak TLS"
    return "handshake refused"


def _wait_for_leaders(admin: Any, names: Sequence[str], timeout: float) -> None:
    """New topics are usable once every partition has a leader; wait for that (bounded)."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        pending = [
            n
            for n in pending
            if n not in metadata.topics
            or metadata.topics[n].error is not None
            or not metadata.topics[n].partitions
            or any(p.leader < 0 for p in metadata.topics[n].partitions.values())
        ]
        if pending:
            time.sleep(0.1)


def _differences(
    admin: Any,
    names: Sequence[str],
    existing: Mapping[str, int],
    *,
    partitions: int,
    min_insync_replicas: int | None,
    timeout: float,
) -> dict[str, list[str]]:
    # Imported from where they are defined: confluent_kafka.admin does not re-export them for mypy.
    from confluent_kafka.admin._config import ConfigResource
    from confluent_kafka.admin._resource import ResourceType

    problems: dict[str, list[str]] = {}
    for name in names:
        count = existing.get(name)
        if count is not None and count < partitions:
            problems.setdefault(name, []).append(f"has {count} partitions, {partitions} wanted")
    if min_insync_replicas is not None:
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in names if n in existing]
        for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
            entries = future.result(timeout=timeout)
            entry = entries.get("min.insync.replicas")
            if entry is not None and str(entry.value) != str(min_insync_replicas):
                problems.setdefault(resource.name, []).append(
                    f"min.insync.replicas is {entry.value}, {min_insync_replicas} wanted"
                )
    return problems
