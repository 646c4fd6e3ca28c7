"""The services the suite stands on are real: PostgreSQL through SQLAlchemy, Kafka checked with kcat."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa
from confluent_kafka import KafkaError, Message, Producer

from tests.conftest import KcatMessage


def test_postgres_row_round_trip(pg_url: str) -> None:
    """A row written through SQLAlchemy in one transaction is read back in another."""
    engine = sa.create_engine(pg_url)
    try:
        meta = sa.MetaData()
        table = sa.Table(
            "probe", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Text)
        )
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(table.insert().values(id=1, v="written"))
        with engine.connect() as conn:
            assert conn.execute(sa.select(table.c.v).where(table.c.id == 1)).scalar_one() == "written"
            version = conn.execute(sa.text("select current_setting('server_version_num')::int")).scalar_one()
            assert version >= 130000
    finally:
        engine.dispose()


def test_kafka_idempotent_produce_is_seen_by_kcat(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Callable[..., list[KcatMessage]],
) -> None:
    """A message produced with acks=all and idempotence is acknowledged and then read back by kcat."""
    topic = new_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    reports: list[tuple[KafkaError | None, int | None]] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        reports.append((err, msg.offset()))

    value = f"probe-{uuid.uuid4()}".encode()
    producer.produce(topic, key=b"k1", value=value, headers=[("h", b"v")], on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert reports == [(None, 0)]

    messages = kcat_consume(topic, 1)
    assert [(m.key, m.value, m.offset, m.headers) for m in messages] == [(b"k1", value, 0, {"h": b"v"})]
