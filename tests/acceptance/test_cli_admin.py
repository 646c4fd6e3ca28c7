"""`db upgrade`, `outbox status`, `topics ensure`, `schemas export/check` and `demo` as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.acceptance.support import cli_env, run_cli
from tests.conftest import KcatMessage
from tests.integration.relay_support import migrated_engine, payment_event, write


def test_db_upgrade_is_idempotent_on_postgresql_and_sqlite(tmp_path: Path, pg_url: str) -> None:
    """db upgrade creates the outbox schema once and reports it already current the second time."""
    for url in (pg_url, f"sqlite:///{tmp_path / 'outbox.db'}"):
        env = cli_env(database_url=url)
        before = run_cli("outbox", "status", env=env, cwd=tmp_path)
        assert before.returncode == 1
        assert "payment-events db upgrade" in before.stderr
        first = run_cli("db", "upgrade", "--json", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        created = json.loads(first.stdout)
        assert created["from"] is None
        assert created["to"]
        second = run_cli("db", "upgrade", env=env, cwd=tmp_path)
        assert second.returncode == 0
        assert "already at revision" in second.stdout
        status = run_cli("outbox", "status", "--json", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout) == {
            "pending": 0, "in_retry": 0, "dead": 0, "oldest_pending_age_seconds": 0.0,
            "published_last_minute": 0, "published_per_second": 0.0, "unresolved_total": 0,
        }


def test_topics_ensure_creates_then_reports_differences(tmp_path: Path, kafka_bootstrap: str) -> None:
    """topics ensure creates missing topics (seen by kcat), is quiet the second time, and exits 1 when an
    existing topic has fewer partitions than wanted."""
    name = f"accept.{uuid.uuid4().hex[:10]}"
    env = cli_env(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic=name,
        dlq_topic=f"{name}.dlq",
        topic_routing=f"RefundFailed={name}.refunds",
        topic_partitions="2",
    )
    try:
        first = run_cli("topics", "ensure", "--json", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        statuses = {t["topic"]: t for t in json.loads(first.stdout)}
        assert set(statuses) == {name, f"{name}.dlq", f"{name}.refunds"}
        assert all(t["created"] and t["partitions"] == 2 for t in statuses.values())
        kcat = shutil.which("kcat")
        assert kcat is not None
        listing = subprocess.run(
            [kcat, "-L", "-b", kafka_bootstrap, "-t", name], capture_output=True, text=True, check=True
        ).stdout
        assert "2 partitions" in listing
        again = run_cli("topics", "ensure", env=env, cwd=tmp_path)
        assert again.returncode == 0
        assert "exists" in again.stdout
        wider = run_cli("topics", "ensure", "--topic-partitions", "4", env=env, cwd=tmp_path)
        assert wider.returncode == 1
        assert "has 2 partitions, 4 wanted" in wider.stdout
        refused = run_cli(
            "topics", "ensure", "--topic", f"{name}.missing", "--no-create-topics", env=env, cwd=tmp_path
        )
        assert refused.returncode == 2
        assert "does not exist" in refused.stderr
    finally:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.delete_topics([name, f"{name}.dlq", f"{name}.refunds"]).values():
            future.result(timeout=30)


def test_schemas_export_and_check(tmp_path: Path) -> None:
    """schemas export writes one file per event version; check passes on them and fails on a tampered one."""
    out = tmp_path / "schemas"
    exported = run_cli("schemas", "export", str(out), "--json", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    paths = [Path(p) for p in json.loads(exported.stdout)]
    assert Path(out / "PaymentSucceeded" / "v1.json") in paths
    assert all(p.is_file() for p in paths)
    ok = run_cli("schemas", "check", "--dir", str(out), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    target = out / "RefundProcessed" / "v1.json"
    schema = json.loads(target.read_text())
    schema["required"].append("refundReason")
    schema["properties"]["refundReason"] = {"type": "string"}
    target.write_text(json.dumps(schema))
    broken = run_cli("schemas", "check", "--dir", str(out), "--json", cwd=tmp_path)
    assert broken.returncode == 1
    problems = json.loads(broken.stdout)["problems"]
    assert any(p["kind"] == "stale-file" and "RefundProcessed" in p["message"] for p in problems)


def test_demo_runs_the_main_job_end_to_end(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str],
    kcat_consume: Callable[..., list[KcatMessage]],
) -> None:
    """`payment-events demo` on the embedded SQLite default writes, relays and reads back every event."""
    topic, dlq = new_topic(partitions=3), new_topic(partitions=1)
    env = cli_env(kafka_bootstrap_servers=kafka_bootstrap, topic=topic, dlq_topic=dlq)
    result = run_cli("demo", "--payments", "25", env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every committed event was delivered" in result.stdout
    assert "per-key order     : OK" in result.stdout
    assert (tmp_path / "payment_events.db").is_file()  # the embedded default, created by the demo
    total = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    written = int(total.split()[1])
    assert written >= 25
    messages = kcat_consume(topic, written)  # the independent client agrees
    assert len({m.headers.get("ce_id") for m in messages}) == written


def test_relay_drain_publishes_what_is_pending_and_exits(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str],
    kcat_consume: Callable[..., list[KcatMessage]],
) -> None:
    """`relay --drain` publishes the pending rows, prints how many it resolved and exits 0."""
    topic, dlq = new_topic(partitions=2), new_topic(partitions=1)
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    engine = migrated_engine(url)
    try:
        ids = write(engine, topic, [payment_event(f"pay-{i % 2}", i) for i in range(5)])
    finally:
        engine.dispose()
    env = cli_env(database_url=url, kafka_bootstrap_servers=kafka_bootstrap, topic=topic, dlq_topic=dlq)
    result = run_cli("relay", "--drain", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"resolved": 5}
    seen = {m.headers.get("ce_id", b"").decode() for m in kcat_consume(topic, 5)}
    assert seen == set(ids)
    status = json.loads(run_cli("outbox", "status", "--json", env=env, cwd=tmp_path).stdout)
    assert (status["pending"], status["published_last_minute"]) == (0, 5)
