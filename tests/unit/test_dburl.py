"""Async driver URLs are refused up front by the relay, the CLI and the migrations, naming the sync form."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from payment_events.config import load_settings
from payment_events.dburl import async_url_problem, sync_form
from payment_events.errors import ConfigurationError

ASYNC_URLS = [
    ("postgresql+asyncpg://u:secret@db/pay", "postgresql+psycopg://u:secret@db/pay"),
    ("postgresql+psycopg_async://u:secret@db/pay", "postgresql+psycopg://u:secret@db/pay"),
    ("sqlite+aiosqlite:///pay.db", "sqlite:///pay.db"),
]


@pytest.mark.parametrize(("url", "expected"), ASYNC_URLS)
def test_sync_form_replaces_only_the_driver(url: str, expected: str) -> None:
    """The synchronous form keeps host, user and database and swaps the async driver."""
    assert sync_form(url) == expected
    problem = async_url_problem(url)
    assert problem is not None
    assert expected.split("://", maxsplit=1)[0] + "://" in problem
    assert "secret" not in problem


def test_sync_urls_pass() -> None:
    """A synchronous URL has no problem and keeps its form."""
    for url in ("postgresql+psycopg://db/pay", "postgresql://db/pay", "sqlite:///x.db"):
        assert async_url_problem(url) is None
        assert sync_form(url) == url


@pytest.mark.parametrize(("url", "expected"), ASYNC_URLS)
def test_settings_refuse_async_url(url: str, expected: str) -> None:
    """Settings (the CLI's) refuse an async URL with the option named and the sync scheme suggested."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ={"PAYMENT_EVENTS_DATABASE_URL": url})
    message = str(caught.value)
    assert "database_url" in message
    assert expected.split("://", maxsplit=1)[0] + "://" in message
    assert "secret" not in message


def _build_relay(url: str) -> object:
    from payment_events.service import build_relay

    return build_relay(url, "127.0.0.1:1")


def _upgrade(url: str) -> object:
    from payment_events.outbox.migrate import upgrade

    upgrade(url)
    return None


def _store(url: str) -> object:
    from payment_events.outbox.store import SqlOutboxStore

    return SqlOutboxStore.from_url(url)


def _audit(url: str) -> object:
    from payment_events.audit import audit

    return audit(url, "127.0.0.1:1", ["payment.events"], timeout=1.0)


@pytest.mark.parametrize("entry", [_build_relay, _upgrade, _store, _audit])
@pytest.mark.parametrize(("url", "expected"), ASYNC_URLS)
def test_library_entry_points_refuse_async_url(
    entry: Callable[[str], object], url: str, expected: str, tmp_path: Path
) -> None:
    """build_relay, upgrade, SqlOutboxStore.from_url and audit raise ConfigurationError before
    connecting."""
    with pytest.raises(ConfigurationError, match=re.escape(expected.split("://", maxsplit=1)[0] + "://")):
        entry(url.replace("pay.db", str(tmp_path / "pay.db")))
