"""Driver errors become our StoreError tree, by a table of cases, without leaking parameters."""

from __future__ import annotations

import sqlite3

import psycopg.errors
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.outbox.dberrors import is_unique_violation, translate, translated

SECRET_PARAMS = {"payload": "4111111111111111"}


def wrap(cls: type[DBAPIError], orig: Exception) -> DBAPIError:
    """A SQLAlchemy error as SQLAlchemy raises it: statement and parameters attached."""
    return cls("INSERT INTO payment_events_outbox ...", SECRET_PARAMS, orig)


@pytest.mark.parametrize(
    ("error", "expected", "fragment"),
    [
        (wrap(ProgrammingError, psycopg.errors.UndefinedTable("relation does not exist")),
         MigrationRequiredError, "db upgrade"),
        (wrap(ProgrammingError, psycopg.errors.UndefinedColumn("column does not exist")),
         MigrationRequiredError, "db upgrade"),
        (wrap(OperationalError, sqlite3.OperationalError("no such table: payment_events_outbox")),
         MigrationRequiredError, "db upgrade"),
        (wrap(OperationalError, sqlite3.OperationalError("table x has no column named shard")),
         MigrationRequiredError, "db upgrade"),
        (wrap(OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
         StoreError, "AdminShutdown (SQLSTATE 57P01)"),
        (wrap(OperationalError, sqlite3.OperationalError("database is locked")),
         StoreError, "OperationalError"),
        (wrap(IntegrityError, psycopg.errors.UniqueViolation("duplicate key")),
         StoreError, "SQLSTATE 23505"),
    ],
)
def test_driver_errors_translate(error: SQLAlchemyError, expected: type[StoreError], fragment: str) -> None:
    """Each driver error maps to the right type with a useful message and no statement parameters."""
    translated_error = translate(error, "claim")
    assert type(translated_error) is expected
    assert fragment in str(translated_error)
    assert "4111" not in str(translated_error)
    assert "claim" in str(translated_error)


def test_lost_connection_says_it_reconnects() -> None:
    """An invalidated connection is reported as lost, with the reconnect behaviour."""
    error = wrap(OperationalError, psycopg.errors.AdminShutdown("terminating connection"))
    error.connection_invalidated = True
    assert "connection was lost" in str(translate(error, "resolve"))


def test_translated_context_chains_the_cause() -> None:
    """The translated error keeps the driver error as its cause for debugging."""
    original = wrap(OperationalError, sqlite3.OperationalError("disk I/O error"))
    with pytest.raises(StoreError) as info, translated("purge"):
        raise original
    assert info.value.__cause__ is original


@pytest.mark.parametrize(
    ("orig", "expected"),
    [
        (psycopg.errors.UniqueViolation("duplicate key"), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed: payment_events_outbox.event_id"), True),
        (sqlite3.IntegrityError("NOT NULL constraint failed: payment_events_outbox.key"), False),
        (psycopg.errors.CheckViolation("check"), False),
    ],
)
def test_unique_violations_are_recognised(orig: Exception, expected: bool) -> None:
    """A duplicate event id is recognised on both engines; other integrity errors are not."""
    assert is_unique_violation(wrap(IntegrityError, orig)) is expected
