"""Translate SQLAlchemy/driver errors into payment-events' own errors, without leaking row contents.

SQLAlchemy's messages include the statement's parameters (payloads, keys), so the text of the driver
error is never copied: only its class name and SQLSTATE, plus what the operator should do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from payment_events.errors import MigrationRequiredError, StoreError

# SQLSTATE 42P01 undefined_table, 42703 undefined_column (PostgreSQL): the schema is missing or older.
_MISSING_SCHEMA_SQLSTATES = frozenset({"42P01", "42703"})
_MISSING_SCHEMA_SQLITE = ("no such table", "no such column", "has no column named")
_UNIQUE_VIOLATION = "23505"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error (PostgreSQL), or ``None``."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) else None


def is_missing_schema(exc: BaseException) -> bool:
    """True if the error says the outbox table or one of its columns does not exist."""
    if sqlstate(exc) in _MISSING_SCHEMA_SQLSTATES:
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if type(orig).__module__.startswith("sqlite3"):
        text = str(orig).lower()
        return any(marker in text for marker in _MISSING_SCHEMA_SQLITE)
    return False


def is_unique_violation(exc: BaseException) -> bool:
    """True if the error is a unique-constraint violation (a second row with the same ``event_id``)."""
    if sqlstate(exc) == _UNIQUE_VIOLATION:
        return True
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return type(orig).__name__ == "IntegrityError" and "UNIQUE constraint failed" in str(orig)


def translate(exc: SQLAlchemyError, operation: str) -> StoreError:
    """The :class:`StoreError` (or :class:`MigrationRequiredError`) for ``exc`` during ``operation``."""
    if is_missing_schema(exc):
        return MigrationRequiredError(
            f"outbox {operation} failed: the outbox table is missing or outdated; "
            "run `payment-events db upgrade`"
        )
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = sqlstate(exc)
    detail = type(orig).__name__ + (f" (SQLSTATE {state})" if state else "")
    hint = "check that the database is reachable"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        hint = "the database connection was lost; it is re-established on the next call"
    return StoreError(f"outbox {operation} failed: {detail}; {hint}")


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run a block, raising SQLAlchemy errors as our :class:`StoreError` tree."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise translate(exc, operation) from exc


_SECRET_RE = re.compile(r"(?i)(password\s*=\s*)\S+|(://[^:/@\s]+:)[^@\s]+(@)")


def driver_message(exc: BaseException) -> str:
    """The database driver's own words for ``exc`` (host, SQLSTATE, "password authentication failed",
    "too many clients"), one line, without any secret: what an operator needs to act on."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    text = _SECRET_RE.sub(
        lambda m: f"{m.group(1)}***" if m.group(1) else f"{m.group(2)}***{m.group(3)}", text
    )
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    name = type(orig).__name__
    head = f"{name} (SQLSTATE {sqlstate})" if sqlstate else name
    return f"{head}: {text[:400]}" if text else head
