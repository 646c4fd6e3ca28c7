"""``audit`` with the broker unreachable (issue 11, defect 9): every published row is "could not
verify" (its own exit code), never "lost"; the timeout is honoured; the client's noise is summarised."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

from payment_events.audit import audit
from payment_events.audit.report import EXIT_UNVERIFIED
from payment_events.outbox.table import outbox_table
from tests.brokers import free_port
from tests.integration.relay_support import migrated_engine, payment_event, write


def test_audit_against_an_unreachable_broker_reports_unverified_not_lost(tmp_path: Path) -> None:
    """Three published rows, no broker: lost=0, unverified=3, exit code EXIT_UNVERIFIED, within about
    the 5 s timeout, and librdkafka's lines counted instead of printed."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    engine = migrated_engine(url)
    write(engine, "audit.events", [payment_event(f"pay-{i}", i) for i in range(3)])
    with engine.begin() as conn:
        conn.execute(sa.update(outbox_table).values(state="published", kafka_partition=0, kafka_offset=0))
    engine.dispose()
    started = time.monotonic()
    report = audit(url, f"127.0.0.1:{free_port()}", timeout=5.0)
    took = time.monotonic() - started
    assert report.overall.lost == 0
    assert report.overall.unverified == 3
    assert report.exit_code == EXIT_UNVERIFIED
    assert "COULD NOT VERIFY" in report.render_text()
    assert took < 15, f"the audit took {took:.1f} s with --timeout 5"
