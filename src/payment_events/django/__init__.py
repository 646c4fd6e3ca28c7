"""Django integration: the outbox table as a Django migration and a publisher on Django's connection.

Add ``"payment_events.django"`` to ``INSTALLED_APPS``, run ``python manage.py migrate payment_events``
(it creates exactly the table ``payment-events db upgrade`` creates, and records the same schema version,
so the relay accepts it), then publish inside the transaction that writes the payment::

    from django.db import transaction
    from payment_events.django import DjangoOutboxPublisher

    with transaction.atomic():
        payment.save()
        DjangoOutboxPublisher().publish_payment_succeeded(event)

The event is written through Django's own connection, so it commits or rolls back with the payment;
nothing opens a second connection (a SQLAlchemy engine built over Django's connection can roll back
Django's open transaction). Run the relay as usual (``payment-events relay``) with the database's
``postgresql+psycopg://`` URL. Optional settings: ``PAYMENT_EVENTS`` (see :mod:`payment_events.django.conf`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from payment_events.django.publisher import DjangoOutboxPublisher

__all__ = ["DjangoOutboxPublisher"]


def __getattr__(name: str) -> Any:
    """``DjangoOutboxPublisher`` on first use: importing the app package must not touch the ORM."""
    if name == "DjangoOutboxPublisher":
        from payment_events.django.publisher import DjangoOutboxPublisher

        return DjangoOutboxPublisher
    raise AttributeError(f"module 'payment_events.django' has no attribute {name!r}")
