"""The example shop app."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Payments of the example shop."""

    name = "examples.django_shop.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"
