"""The fault-injection suite: real PostgreSQL, real Kafka, real relay processes, real faults.

``python -m tests.chaos`` (``make chaos``) runs every scenario at full size; each prints one line
(scenario, events committed, delivered, lost, duplicates, order violations, time to recover) and the
command exits non-zero if any scenario failed. ``tests/integration/test_chaos_short.py`` runs a few of
the same scenarios with small counts inside the normal pytest run.

Every verdict comes from :func:`payment_events.audit.audit` against the real topic, cross-checked with
the independent ``kcat`` client, never from the relay's own counters. Each scenario uses a fresh database
and fresh topics.
"""
