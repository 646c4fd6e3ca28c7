"""The examples end to end, as a user runs them: HTTP request -> payment row and event in one
transaction -> the library's relay -> Kafka, read back with kcat. FastAPI on asyncpg, Flask on
Flask-SQLAlchemy (psycopg), Django on its own connection (psycopg)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from payment_events.events import PaymentSucceeded
from payment_events.events.codec import decode
from payment_events.outbox import migrate
from tests.conftest import KcatMessage
from tests.integration.django_app.django_setup import DjangoProject
from tests.integration.relay_support import RelayThread, make_relay, state_counts, wait_for

Consume = Callable[..., list[KcatMessage]]

PAYMENT = {"order_id": "ord-1", "amount_minor": 2599, "currency": "EUR"}


def counts(url: str, payment_table: str, payment_id: str) -> tuple[int, int]:
    """(payment rows, outbox rows) for ``payment_id``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            paid = conn.execute(
                sa.text(f"SELECT count(*) FROM {payment_table} WHERE payment_id = :p"), {"p": payment_id}
            ).scalar_one()
            events = conn.execute(
                sa.text("SELECT count(*) FROM payment_events_outbox WHERE key = :k"),
                {"k": payment_id.encode()},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(paid), int(events)


def relay_and_read(url: str, bootstrap: str, topic: str, consume: Consume) -> list[KcatMessage]:
    """Run the library's relay on ``url`` until the outbox is drained; return what kcat reads in ``topic``."""
    engine = sa.create_engine(url)
    relay = RelayThread(make_relay(url, bootstrap))
    try:
        wait_for(lambda: set(state_counts(engine)) == {"published"}, 60, "the relay to publish every event")
    finally:
        relay.stop()
        engine.dispose()
    return consume(topic, 1)


def check_delivered(messages: list[KcatMessage], response: dict[str, Any], payment_id: str) -> None:
    """Exactly the committed payment's event reached Kafka, keyed by its payment, decodable."""
    assert len(messages) == 1
    [message] = messages
    event = decode(message.value, message.headers)
    assert isinstance(event, PaymentSucceeded)
    assert str(event.event_id) == response["event_id"]
    assert event.payment_id == payment_id
    assert message.key == payment_id.encode()
    assert event.amount_paid == PAYMENT["amount_minor"]


def test_fastapi_on_asyncpg_end_to_end(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """FastAPI + AsyncSession on asyncpg: a committed request reaches Kafka through the relay; a request
    that fails after publishing leaves neither the payment nor the event."""
    from examples.fastapi_service.app import create_app
    from fastapi.testclient import TestClient

    topic = new_topic()
    migrate.upgrade(pg_url)
    app = create_app(pg_url.replace("postgresql+psycopg://", "postgresql+asyncpg://"), topic)
    with TestClient(app) as client:
        ok = client.post("/payments", json={**PAYMENT, "payment_id": "fa-ok"})
        failed = client.post(
            "/payments", json={**PAYMENT, "payment_id": "fa-fail", "fail_after_publish": True}
        )
    assert ok.status_code == 201, ok.text
    assert failed.status_code == 409, failed.text
    assert counts(pg_url, "payments", "fa-ok") == (1, 1)
    assert counts(pg_url, "payments", "fa-fail") == (0, 0)
    check_delivered(relay_and_read(pg_url, kafka_bootstrap, topic, kcat_consume), ok.json(), "fa-ok")


def test_flask_sqlalchemy_end_to_end(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """Flask + Flask-SQLAlchemy (db.session, a scoped_session): commit delivers, rollback removes both."""
    from examples.flask_app.app import create_app

    topic = new_topic()
    migrate.upgrade(pg_url)
    app = create_app(pg_url, topic)
    client = app.test_client()
    ok = client.post("/payments", json={**PAYMENT, "payment_id": "fl-ok"})
    failed = client.post("/payments", json={**PAYMENT, "payment_id": "fl-fail", "fail_after_publish": True})
    assert ok.status_code == 201, ok.text
    assert failed.status_code == 409, failed.text
    with app.app_context():
        from examples.flask_app.app import db

        db.engines[None].dispose()
    assert counts(pg_url, "payments", "fl-ok") == (1, 1)
    assert counts(pg_url, "payments", "fl-fail") == (0, 0)
    response = ok.get_json()
    assert isinstance(response, dict)
    check_delivered(relay_and_read(pg_url, kafka_bootstrap, topic, kcat_consume), response, "fl-ok")


def test_django_end_to_end(
    django_project: DjangoProject, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """Django view with transaction.atomic(): commit delivers through the relay, rollback removes both."""
    from django.test import Client, override_settings

    topic = new_topic()
    url = django_project.pg_url
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # events of other Django tests in this session go to another topic
        conn.execute(sa.text("DELETE FROM payment_events_outbox"))
    engine.dispose()
    client = Client()
    with override_settings(PAYMENT_EVENTS={"TOPIC": topic}):
        ok = client.post("/payments", {**PAYMENT, "payment_id": "dj-e2e-ok"}, content_type="application/json")
        failed = client.post(
            "/payments",
            {**PAYMENT, "payment_id": "dj-e2e-fail", "fail_after_publish": True},
            content_type="application/json",
        )
    assert ok.status_code == 201, ok.content
    assert failed.status_code == 409, failed.content
    assert counts(url, "shop_payment", "dj-e2e-ok") == (1, 1)
    assert counts(url, "shop_payment", "dj-e2e-fail") == (0, 0)
    check_delivered(relay_and_read(url, kafka_bootstrap, topic, kcat_consume), ok.json(), "dj-e2e-ok")


@pytest.mark.parametrize("module", ["examples.fastapi_service.app", "examples.flask_app.app"])
def test_examples_import_without_a_database(module: str) -> None:
    """Importing an example connects to nothing (engines are made in the lifespan / create_app)."""
    import importlib

    assert importlib.import_module(module).create_app is not None
