"""Database URLs: shown without their secrets, and refused up front when they name an async driver.

**Showing a URL** (``config show``, error messages, log lines): :func:`mask_url` masks through
SQLAlchemy's own parser (as the engine reads it), after the raw forms drivers accept are cut out first: a
password holding ``#``, ``?``, ``/`` or ``@`` unencoded, and password-like query parameters (libpq's
``password``, ``sslpassword``...).

**Synchronous drivers only**: the relay, the CLI and the migrations.

An application on async SQLAlchemy (``postgresql+asyncpg://``, ``postgresql+psycopg_async://``,
``sqlite+aiosqlite://``) publishes with :class:`~payment_events.outbox.aio.AsyncOutboxPublisher` on its
own async engine; the relay is a separate, threaded process and needs the synchronous form of the same
URL. Handing it an async URL used to fail late and obscurely (``TypeError``, ``MissingGreenlet``); it is
now refused up front, with the URL to use instead. Pure string work (SQLAlchemy is imported only to
mask a URL).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from payment_events.errors import ConfigurationError

__all__ = [
    "ASYNC_DRIVERS",
    "async_url_problem",
    "mask_url",
    "refuse_async_url",
    "sync_form",
    "url_has_secret",
]

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


# Query parameters whose value is a secret (libpq's password/sslpassword, driver variants). Paths to key
# files (sslkey, passfile) are not secrets themselves and stay visible.
_SECRET_QUERY_RE = re.compile(r"pass(word|wd)?$|secret|token|api[_-]?key|credential", re.IGNORECASE)


# A password-like query parameter and its value, written raw: the value may hold "#", "?", "/" or "@", so
# it ends only where the next "&name=" begins (or at the end).
_RAW_SECRET_PARAM_RE = re.compile(
    r"(?P<key>[?&;][A-Za-z0-9_.-]*?(?:pass(?:word|wd)?|secret|token|api[_-]?key|credential)=)"
    r"(?P<value>.*?)(?=&[A-Za-z_][A-Za-z0-9_.-]*=|$)",
    re.IGNORECASE | re.DOTALL,
)


def _split_userinfo(url: str) -> tuple[str, str | None, str] | None:
    """(``scheme://user``, the raw password or None, ``host...``) of ``url``, or None without ``://``.

    Drivers and SQLAlchemy accept passwords written unencoded, with ``#``, ``?``, ``/`` or even ``@`` in
    them, so the userinfo ends at the *last* ``@`` (an ``@`` later in the URL only makes more of it
    hidden), and the password starts at the first ``:`` after the user name.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return f"{scheme}://", None, rest
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://{user}@", (password if colon else None), host


def url_has_secret(url: str) -> bool:
    """Whether ``url`` carries a password, in its userinfo or in a password-like query parameter."""
    if _RAW_SECRET_PARAM_RE.search(url):
        return True
    split = _split_userinfo(url)
    return split is not None and split[1] is not None


def mask_url(url: str) -> str:
    """The database URL with every password replaced by ``***`` (safe to print and log).

    Password-like query parameters (``password``, ``sslpassword``...) are masked up to the next
    ``&name=``; then the userinfo password is cut out at the last ``@`` (so raw ``#``, ``?``, ``/`` and
    ``@`` in it are hidden whole); the rest is parsed by SQLAlchemy's own ``make_url``, as the engine
    parses it, and rendered with ``hide_password=True``. Masking errs on the side of hiding more. A URL
    SQLAlchemy cannot parse is shown as ``***``.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # Query parameters first: a raw "@" in their value must not be taken for the end of a userinfo.
    split = _split_userinfo(_RAW_SECRET_PARAM_RE.sub(lambda m: m.group("key") + "***", url))
    if split is None:
        return "***"
    prefix, password, rest = split
    try:
        parsed = make_url(prefix + rest)
    except (ArgumentError, ValueError):
        return "***"
    if password is not None:
        parsed = parsed.set(password="***")  # noqa: S106 -- the mask, not a password
    query = {
        name: ("***" if _SECRET_QUERY_RE.search(name) else value) for name, value in parsed.query.items()
    }
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    if query:
        shown += "?" + urlencode(query, doseq=True, safe="*/:,")
    return shown
