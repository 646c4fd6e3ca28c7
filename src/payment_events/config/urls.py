"""Showing a database URL without its secrets: what ``config show``, error messages and log lines print.

The URL is masked through SQLAlchemy's own parser (as the engine reads it), after the raw forms drivers
accept are cut out first: a password holding ``#``, ``?``, ``/`` or ``@`` unencoded, and password-like
query parameters (libpq's ``password``, ``sslpassword``...).
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

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
