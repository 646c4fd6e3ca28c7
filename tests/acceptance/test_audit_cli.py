"""`payment-events audit` as a user runs it: reconcile the outbox with the topic, JSON out, exit status."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from payment_events.outbox.table import outbox_table
from tests.acceptance.support import cli_env, run_cli
from tests.integration.audit.test_audit import Sent, ledger_row, produce


def _prepare(
    pg_url: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> tuple[dict[str, str], list[str]]:
    """Migrate the database with the CLI, publish three events to ``topic`` and record them as published."""
    env = cli_env(database_url=pg_url, kafka_bootstrap_servers=kafka_bootstrap, topic=topic)
    upgrade = run_cli("db", "upgrade", env=env, cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    ids = [str(uuid.uuid4()) for _ in range(3)]
    sent = produce(kafka_bootstrap, topic, [(i, "PaymentSucceeded", "pay_1") for i in ids])
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                outbox_table.insert(),
                [
                    ledger_row(n + 1, s.event_id, topic, "pay_1", "published", sent=s)
                    for n, s in enumerate(sent)
                ],
            )
    finally:
        engine.dispose()
    return env, ids


def test_audit_clean_outbox_exits_zero_with_json(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Every published row is on the configured topic: `audit --json` says ok and exits 0."""
    topic = new_topic(partitions=2)
    env, _ = _prepare(pg_url, kafka_bootstrap, topic, tmp_path)

    proc = run_cli("audit", "--json", env=env, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    assert doc["overall"]["committed"] == 3
    assert doc["overall"]["delivered"] == 3
    assert doc["overall"]["lost"] == 0


def test_audit_lost_event_exits_one_and_names_it(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """A published row missing from the topic makes `audit` exit 1; the text report names the event id."""
    topic = new_topic(partitions=2)
    env, _ = _prepare(pg_url, kafka_bootstrap, topic, tmp_path)
    lost_id = str(uuid.uuid4())
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                outbox_table.insert(),
                ledger_row(10, lost_id, topic, "pay_2", "published", sent=Sent(lost_id, 0, 500)),
            )
    finally:
        engine.dispose()

    text = run_cli("audit", "--topic", topic, env=env, cwd=tmp_path)
    as_json = run_cli("audit", "--topic", topic, "--json", env=env, cwd=tmp_path)

    assert text.returncode == 1, text.stderr
    assert lost_id in text.stdout
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["overall"]["lost"] == 1
    assert [e["event_id"] for e in doc["lost"]] == [lost_id]


def test_audit_time_range_excludes_older_rows(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """`--since` limits the audit to rows created since then: an old lost row does not fail it."""
    topic = new_topic(partitions=2)
    env, _ = _prepare(pg_url, kafka_bootstrap, topic, tmp_path)
    old_id = str(uuid.uuid4())
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                outbox_table.insert(),
                ledger_row(
                    10,
                    old_id,
                    topic,
                    "pay_old",
                    "published",
                    sent=Sent(old_id, 0, 500),
                    created_at=datetime.now(UTC) - timedelta(days=3),
                ),
            )
    finally:
        engine.dispose()
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    proc = run_cli("audit", "--since", since, "--json", env=env, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["overall"]["committed"] == 3
    assert doc["overall"]["lost"] == 0
