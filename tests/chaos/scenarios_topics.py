"""Scenarios for the faults of one topic or one key (issue 11) on the shared broker: a small
``max.message.bytes``, a topic that does not exist, a deleted dead-letter topic, and many writers of one
key committing in any order. Each must end with 0 lost, 0 order violations and no valid event dead."""

from __future__ import annotations

import random
import threading
import time
import uuid

import sqlalchemy as sa

from payment_events.events import PaymentSucceeded
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.table import outbox_table
from tests.chaos.harness import (
    RelayProcess,
    ScenarioResult,
    WriteLog,
    Writers,
    make_event,
    relay_options,
    scenario_space,
    verdict,
    wait_drained,
)
from tests.chaos.infra import SHARED_KAFKA, create_topics, delete_topics
from tests.chaos.scale import Scale

SMALL_LIMIT = 65_536
STALL_LIMIT = 20.0
"""Seconds: the relay's delivery timeout is 30 s, so a topic's trouble that stalls other rows shows as
waits of 30 s or more; healthy rows drain in a few seconds."""


def small_max_message(scale: Scale) -> ScenarioResult:
    """A topic with ``max.message.bytes`` = 64 KB under a steady stream of ~500-byte events."""
    result = ScenarioResult("small-max-message")
    limit = {"max.message.bytes": str(SMALL_LIMIT)}
    with scenario_space(SHARED_KAFKA, partitions=2, topic_config=limit) as (url, topic, dlq):
        # Big claims, few partitions and a longer linger fill record batches far past 64 KB (compressed),
        # as a relay draining a backlog does: without the fix the broker refuses most of them.
        options = relay_options(dlq, batch_size=5000, producer_overrides={"linger.ms": 50})
        relay = RelayProcess("relay-small-limit", url, SHARED_KAFKA, options)
        writers = Writers(url, topic, total=scale.multi_events, rate=scale.multi_rate, writers=4, batch=20)
        writers.start()
        writers.join()  # a backlog first: the relay then claims full batches, as after any outage
        relay.start(wait=True)
        wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, SHARED_KAFKA, [topic], writers.log, relays=[relay])
    result.notes.insert(0, f"topic max.message.bytes={SMALL_LIMIT}, dead={result.dead}")
    return result


def missing_topic(scale: Scale) -> ScenarioResult:
    """Rows routed to a topic that does not exist: the healthy topic's stream drains while they wait;
    once the topic is created they are published too."""
    result = ScenarioResult("missing-topic")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        missing = f"{topic}.late"
        relay = RelayProcess("relay-missing-topic", url, SHARED_KAFKA, relay_options(dlq, max_attempts=None))
        late_log = WriteLog()
        late = Writers(url, missing, total=50, rate=20.0, writers=1, keys_per_writer=10)
        late.log = late_log
        writers = Writers(url, topic, total=scale.poison_events, rate=scale.poison_rate, writers=2)
        relay.start(wait=True)
        late.start()
        writers.start()
        started = time.monotonic()
        writers.join()
        late.join()
        healthy_left = _wait_topic_drained(url, topic, scale.drain_timeout)
        healthy_seconds = time.monotonic() - started
        waiting = _pending(url, missing)
        create_topics(SHARED_KAFKA, [missing], 3)
        try:
            wait_drained(url, scale.drain_timeout, [relay])
            relay.terminate()
            writers.log.committed.extend(late_log.committed)
            verdict(result, url, SHARED_KAFKA, [topic, missing], writers.log, relays=[relay])
        finally:
            delete_topics(SHARED_KAFKA, [missing])
    result.notes.insert(
        0,
        f"healthy topic drained in {healthy_seconds:.1f}s with {healthy_left} left while {waiting} rows "
        "waited for the missing topic",
    )
    if healthy_left or not waiting or healthy_seconds > STALL_LIMIT:
        result.passed = False
        result.notes.append(f"the healthy topic was held up (limit {STALL_LIMIT:.0f}s)")
    return result


def deleted_dlq(scale: Scale) -> ScenarioResult:
    """The dead-letter topic is deleted; oversized events go dead at once and nothing else waits."""
    result = ScenarioResult("deleted-dlq")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        delete_topics(SHARED_KAFKA, [dlq])
        relay = RelayProcess("relay-deleted-dlq", url, SHARED_KAFKA, relay_options(dlq))
        writers = Writers(url, topic, total=scale.poison_events, rate=scale.poison_rate, writers=2)
        relay.start(wait=True)
        writers.start()
        time.sleep(1.0)
        poison = _insert_oversized(url, topic, 3)
        writers.join()
        started = time.monotonic()
        drained = wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, SHARED_KAFKA, [topic], writers.log, expected_dead=len(poison), relays=[relay])
    result.notes.insert(0, f"drained {drained:.1f}s after the writers ({time.monotonic() - started:.0f}s)")
    if drained > STALL_LIMIT:
        result.passed = False
        result.notes.append(f"dead-letter copies held up live traffic (limit {STALL_LIMIT:.0f}s)")
    return result


def one_key_writers(scale: Scale) -> ScenarioResult:
    """Twelve writer threads on three keys, each holding its transaction open a random while after the
    insert: every key's events must reach the topic in the order the transactions committed."""
    result = ScenarioResult("one-key-writers")
    with scenario_space(SHARED_KAFKA) as (url, topic, dlq):
        relay = RelayProcess("relay-one-key", url, SHARED_KAFKA, relay_options(dlq))
        log = WriteLog()
        keys = [f"user_{uuid.uuid4().hex[:6]}_{k}" for k in range(3)]
        per_thread = max(20, scale.poison_events // 40)
        relay.start(wait=True)
        threads = [
            threading.Thread(target=_same_key_writer, args=(url, topic, keys, per_thread, log, i))
            for i in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        wait_drained(url, scale.drain_timeout, [relay])
        relay.terminate()
        verdict(result, url, SHARED_KAFKA, [topic], log, relays=[relay])
    result.notes.insert(0, f"{len(log.committed)} events on {len(keys)} keys from 12 writers")
    return result


def _same_key_writer(  # noqa: PLR0917 - a thread target
    url: str, topic: str, keys: list[str], count: int, log: WriteLog, seed: int
) -> None:
    rnd = random.Random(seed)
    engine = sa.create_engine(url, pool_size=1, max_overflow=0)
    try:
        for _ in range(count):
            event = make_event(PaymentSucceeded, rnd.choice(keys))
            with engine.connect() as conn:
                tx = conn.begin()
                OutboxPublisher(conn, router=lambda _t: topic).publish(event)  # type: ignore[arg-type]
                time.sleep(rnd.uniform(0.0, 0.03))  # other writers of the key arrive meanwhile
                tx.commit()
            with log.lock:
                log.committed.append(str(event.event_id))
    finally:
        engine.dispose()


def _pending(url: str, topic: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(outbox_table).where(
                outbox_table.c.state == "pending", outbox_table.c.topic == topic
            )
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def _wait_topic_drained(url: str, topic: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    left = _pending(url, topic)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _pending(url, topic)
    return left


def _insert_oversized(url: str, topic: str, count: int) -> list[str]:
    """Oversized events (larger than the broker's limit: dead by themselves)."""
    from payment_events.events.codec import EncodedEvent, encode

    ids = []
    engine = sa.create_engine(url)
    try:
        for i in range(count):
            base = encode(make_event(PaymentSucceeded, f"poison_{uuid.uuid4().hex[:6]}_{i}"))
            event_id = str(uuid.uuid4())
            big = EncodedEvent(
                event_id=event_id, event_type=base.event_type, schema_version=base.schema_version,
                key=base.key, value=b'{"pad":"' + b"x" * 1_500_000 + b'"}',
                headers=(*((n, v) for n, v in base.headers if n != "ce_id"), ("ce_id", event_id.encode())),
                occurred_at=base.occurred_at,
            )
            with engine.begin() as conn:
                OutboxPublisher(conn, router=lambda _t: topic).publish_encoded([big])
            ids.append(event_id)
    finally:
        engine.dispose()
    return ids
