"""A Flask payment service on Flask-SQLAlchemy: ``OutboxPublisher(db.session)`` writes the event in the
request's session, so ``db.session.commit()`` stores the payment and its event together.

Run it::

    payment-events db upgrade --database-url postgresql+psycopg://user:pass@host/db
    PAYMENTS_DATABASE_URL=postgresql+psycopg://user:pass@host/db flask --app examples.flask_app.app run
    payment-events relay --database-url postgresql+psycopg://user:pass@host/db
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Flask, Response, jsonify, request
from flask_sqlalchemy import SQLAlchemy

from payment_events import OutboxPublisher, PaymentSucceeded, TopicRouter

db = SQLAlchemy()
payments = sa.Table(
    "payments",
    db.metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
)


class PaymentAborted(Exception):
    """Raised before the commit to show that a failure after publishing removes both."""


def create_app(database_url: str, topic: str = "payment.events") -> Flask:
    """The service for a synchronous database URL, publishing to ``topic``."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    with app.app_context():
        db.create_all()  # the service's own table (the outbox: `payment-events db upgrade`)
    # One publisher for the app: db.session is a scoped_session, resolved to the request's session.
    publisher = OutboxPublisher(db.session, router=TopicRouter(topic))

    @app.post("/payments")
    def create_payment() -> tuple[Response, int]:
        body = request.get_json()
        event = PaymentSucceeded(
            payment_id=body["payment_id"],
            order_id=body["order_id"],
            amount_paid=body["amount_minor"],
            currency=body["currency"],
            payment_gateway="example",
            processed_at=datetime.now(UTC),
        )
        try:
            db.session.execute(
                sa.insert(payments).values(
                    payment_id=body["payment_id"],
                    order_id=body["order_id"],
                    amount_minor=body["amount_minor"],
                    currency=body["currency"],
                )
            )
            publisher.publish_payment_succeeded(event)
            if body.get("fail_after_publish"):
                raise PaymentAborted
            db.session.commit()
        except PaymentAborted:
            db.session.rollback()
            return jsonify(status="rolled back"), 409
        return jsonify(payment_id=event.payment_id, event_id=str(event.event_id)), 201

    return app


if __name__ == "__main__":
    create_app(os.environ.get("PAYMENTS_DATABASE_URL", "sqlite:///payments.sqlite3")).run()
