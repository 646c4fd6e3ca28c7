"""The Django app config: ``INSTALLED_APPS = [..., "payment_events.django"]``."""

from __future__ import annotations

from django.apps import AppConfig


class PaymentEventsConfig(AppConfig):
    """payment-events' outbox table and publisher (app label ``payment_events``)."""

    name = "payment_events.django"
    label = "payment_events"
    verbose_name = "Payment events outbox"
    default_auto_field = "django.db.models.BigAutoField"
