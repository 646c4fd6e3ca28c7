"""Alembic migrations for the outbox table, run with :func:`payment_events.outbox.migrate.upgrade`.

Alembic keeps its version in ``payment_events_alembic_version`` so it never collides with the
application's own Alembic history in the same database.
"""
