"""Settings of the Django example: a shop whose payments publish events through the outbox.

The database comes from ``SHOP_DATABASE_URL`` (``postgresql://user:pass@host:port/db`` or
``sqlite:///path``; default: ``shop.sqlite3`` here). Run it like any Django project::

    DJANGO_SETTINGS_MODULE=examples.django_shop.settings python -m django migrate
    DJANGO_SETTINGS_MODULE=examples.django_shop.settings python -m django runserver
    payment-events relay --database-url postgresql+psycopg://user:pass@host:port/db
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent


def database(url: str) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for a ``postgresql://`` or ``sqlite:///`` URL."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.split(":///", 1)[1]}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "payment_events.django",
    "examples.django_shop.shop",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "examples.django_shop.urls"
DATABASES = {
    "default": database(os.environ.get("SHOP_DATABASE_URL", f"sqlite:///{BASE_DIR / 'shop.sqlite3'}"))
}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PAYMENT_EVENTS = {"TOPIC": os.environ.get("SHOP_TOPIC", "payment.events")}
