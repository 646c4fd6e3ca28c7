"""ensure_topics against the real broker: creates what is missing, refuses when told not to create."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from payment_events.errors import ConfigurationError, TransientPublishError
from payment_events.kafka.admin import ensure_topics


@pytest.fixture
def fresh_names(kafka_bootstrap: str) -> Iterator[Callable[[], str]]:
    """Unique topic names; whatever got created under them is deleted afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"test.ensure.{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [n for n in names if n in existing]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result(timeout=30)


def test_missing_topics_are_created_with_the_wanted_settings(
    kafka_bootstrap: str, fresh_names: Callable[[], str]
) -> None:
    """Missing topics are created with the partitions and min.insync.replicas asked for; a second call
    finds them existing and changes nothing."""
    events, dlq = fresh_names(), fresh_names()
    statuses = ensure_topics(
        {"bootstrap.servers": kafka_bootstrap}, [events, dlq, events], partitions=4, min_insync_replicas=1
    )
    assert [(s.name, s.created, s.partitions, s.problems) for s in statuses] == [
        (events, True, 4, ()),
        (dlq, True, 4, ()),
    ]
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics[events].partitions) == 4
    again = ensure_topics({"bootstrap.servers": kafka_bootstrap}, [events], partitions=6)
    assert again[0].created is False
    assert again[0].problems == ("has 4 partitions, 6 wanted",)


def test_a_missing_topic_is_refused_when_creation_is_off(
    kafka_bootstrap: str, fresh_names: Callable[[], str]
) -> None:
    """With create=False a missing topic is a clear configuration error, and nothing is created."""
    name = fresh_names()
    with pytest.raises(ConfigurationError, match=f"topic {name} does not exist and auto-creation is off"):
        ensure_topics({"bootstrap.servers": kafka_bootstrap}, [name], create=False)
    assert name not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics


def test_impossible_settings_are_refused_with_the_reason(
    kafka_bootstrap: str, fresh_names: Callable[[], str]
) -> None:
    """A replication factor the single broker cannot give, or min.insync.replicas above it, is refused."""
    with pytest.raises(ConfigurationError, match="min_insync_replicas"):
        ensure_topics({"bootstrap.servers": kafka_bootstrap}, [fresh_names()], min_insync_replicas=2)
    with pytest.raises(ConfigurationError, match="cannot create topic"):
        ensure_topics({"bootstrap.servers": kafka_bootstrap}, [fresh_names()], replication_factor=3)


def test_unreachable_brokers_are_reported_as_transient() -> None:
    """A bootstrap address where nothing listens fails fast with a transient error naming the setting."""
    with pytest.raises(TransientPublishError, match=r"bootstrap\.servers"):
        ensure_topics({"bootstrap.servers": "127.0.0.1:1"}, ["payment.events"], timeout=2.0)
