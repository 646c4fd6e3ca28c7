"""Database URLs: the relay, the CLI and the migrations run on synchronous drivers only.

An application on async SQLAlchemy (``postgresql+asyncpg://``, ``postgresql+psycopg_async://``,
``sqlite+aiosqlite://``) publishes with :class:`~payment_events.outbox.aio.AsyncOutboxPublisher` on its
own async engine; the relay is a separate, threaded process and needs the synchronous form of the same
URL. Handing it an async URL used to fail late and obscurely (``TypeError``, ``MissingGreenlet``); it is
now refused up front, with the URL to use instead. Pure string work: no SQLAlchemy import.
"""

from __future__ import annotations

from payment_events.errors import ConfigurationError

__all__ = ["ASYNC_DRIVERS", "async_url_problem", "refuse_async_url", "sync_form"]

ASYNC_DRIVERS: dict[str, str] = {
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "postgres+asyncpg": "postgresql+psycopg",
    "sqlite+aiosqlite": "sqlite",
}
"""Async driver schemes and the synchronous scheme to use instead."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def sync_form(url: str) -> str:
    """``url`` with an async driver scheme replaced by its synchronous one (unchanged otherwise)."""
    scheme = _scheme(url)
    replacement = ASYNC_DRIVERS.get(scheme)
    if replacement is None:
        return url
    return replacement + url[len(scheme) :]


def async_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be used by the relay, the CLI or the migrations, or ``None`` if it can.

    The message names the synchronous scheme to use and never repeats the URL (it may hold a password).
    """
    scheme = _scheme(url)
    replacement = ASYNC_DRIVERS.get(scheme)
    if replacement is None:
        return None
    return (
        f"expected a synchronous driver URL: {scheme}:// is an async driver, which the relay, the CLI and "
        f"`db upgrade` do not use; give the same URL as {replacement}://... (your application keeps "
        f"{scheme} and publishes with payment_events.AsyncOutboxPublisher)"
    )


def refuse_async_url(url: str) -> None:
    """Raise :class:`~payment_events.errors.ConfigurationError` if ``url`` names an async driver."""
    problem = async_url_problem(url)
    if problem is not None:
        raise ConfigurationError(problem)
