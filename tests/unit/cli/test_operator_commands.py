"""The CLI an operator uses at 3 a.m., on an SQLite outbox: dlq list (filters, total, aligned columns with
the topic), dlq replay (dry run, confirmation for bulk), outbox status (rates, totals) and never creating a
database it was not asked to; relay --drain's progress line; the audit table's header."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from payment_events.cli import main
from payment_events.cli.base import EXIT_FAILURE, EXIT_USAGE, cli
from payment_events.cli.relay import DrainProgress
from payment_events.events import PaymentSucceeded
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox import migrate
from payment_events.outbox.publisher import OutboxPublisher
from tests.unit.relay.fakes import FakeClock, FakeProducer, FakeStore
from tests.unit.relay.test_loop import make_relay


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An SQLite outbox with 3 published-pending rows and 4 dead ones on two topics, as the env's URL."""
    for name in list(os.environ):
        if name.startswith("PAYMENT_EVENTS_"):
            monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    dead = [("pay_a", "payment.events"), ("pay_b", "payment.events"), ("pay_c", "refunds"),
            ("pay_d", "refunds")]
    with engine.begin() as conn:
        for key, topic in [*dead, ("pay_x", "payment.events"), ("pay_y", "payment.events"), ("pay_z", "x")]:
            event = PaymentSucceeded(
                payment_id=key, order_id="ord_1", amount_paid=1999, currency="EUR",
                payment_gateway="stripe", processed_at=datetime.now(UTC),
            )
            OutboxPublisher(conn, router=TopicRouter(topic)).publish(event)
        for key, reason in [("pay_a", "MSG_SIZE_TOO_LARGE: too big"), ("pay_b", "TOPIC_AUTHORIZATION_FAILED"),
                            ("pay_c", "MSG_SIZE_TOO_LARGE: too big"), ("pay_d", "retry budget exhausted")]:
            conn.execute(
                text("UPDATE payment_events_outbox SET state = 'dead', last_error = :r WHERE key = :k"),
                {"r": reason, "k": key.encode()},
            )
    engine.dispose()
    monkeypatch.setenv("PAYMENT_EVENTS_DATABASE_URL", url)
    monkeypatch.setenv("PAYMENT_EVENTS_LOG_FORMAT", "json")
    return url


def _invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _dead_count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        query = text("SELECT count(*) FROM payment_events_outbox WHERE state = 'dead'")
        count = conn.execute(query).scalar_one()
    engine.dispose()
    return int(count)


@pytest.mark.usefixtures("outbox")
def test_dlq_list_shows_the_topic_aligned_columns_and_the_total() -> None:
    """The table has a TOPIC column, every column starts where its title starts, and the last line says
    how many dead events exist, also when --limit shows fewer."""
    code, out, _ = _invoke("dlq", "list", "--limit", "3")
    assert code == 0
    lines = out.splitlines()
    header = lines[0]
    assert "TOPIC" in header
    for title in ("EVENT TYPE", "TOPIC", "KEY", "CREATED", "LAST ERROR"):
        start = header.index(title)
        for row in lines[1:4]:
            assert row[start - 2 : start] == "  ", (title, row)  # nothing runs into the column
            assert row[start] != " ", (title, row)
    assert lines[1].split()[2] == "payment.events"
    assert lines[-1] == "4 dead event(s); showing the first 3 (--limit)"


@pytest.mark.usefixtures("outbox")
def test_dlq_list_filters_by_topic_reason_key_and_time() -> None:
    """--topic, --reason (any case, a fragment), --key and --since/--until narrow the list and the total."""
    def keys(*args: str) -> list[str]:
        code, out, _ = _invoke("dlq", "list", "--json", *args)
        assert code == 0
        return [item["key"] for item in json.loads(out)]

    assert keys() == ["pay_a", "pay_b", "pay_c", "pay_d"]
    assert keys("--topic", "refunds") == ["pay_c", "pay_d"]
    assert keys("--reason", "too_large") == ["pay_a", "pay_c"]
    assert keys("--reason", "too_large", "--topic", "refunds") == ["pay_c"]
    assert keys("--key", "pay_b") == ["pay_b"]
    assert keys("--since", "2000-01-01", "--until", "2100-01-01") == ["pay_a", "pay_b", "pay_c", "pay_d"]
    assert keys("--until", "2000-01-01") == []
    code, out, _ = _invoke("dlq", "list", "--topic", "refunds")
    assert out.splitlines()[-1] == "2 dead event(s)"
    code, _, err = _invoke("dlq", "list", "--since", "yesterday")
    assert code == EXIT_USAGE
    assert "ISO 8601" in err


def test_dlq_replay_dry_run_and_bulk_confirmation(outbox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run counts without changing anything; --all without a terminal needs --yes (exit 2); on a
    terminal a 'no' changes nothing and a 'yes' replays; single ids never ask."""
    code, out, _ = _invoke("dlq", "replay", "--all", "--dry-run")
    assert (code, out.strip()) == (0, "4 dead event(s) would move back to pending (dry run: nothing changed)")
    code, out, _ = _invoke("dlq", "replay", "--event-type", "PaymentSucceeded", "--dry-run", "--json")
    assert json.loads(out) == {"would_replay": 4, "dry_run": True}
    assert _dead_count(outbox) == 4

    code, _, err = _invoke("dlq", "replay", "--all")
    assert code == EXIT_USAGE
    assert "needs --yes" in err
    assert _dead_count(outbox) == 4

    monkeypatch.setattr("payment_events.cli.outbox._interactive", lambda: True)
    code, _, err = _invoke("dlq", "replay", "--all", stdin="n\n")
    assert code != 0
    assert "Replay 4 dead event(s) (all)?" in err
    assert _dead_count(outbox) == 4

    code, out, _ = _invoke("dlq", "replay", "1")
    assert (code, _dead_count(outbox)) == (0, 3)
    code, out, _ = _invoke("dlq", "replay", "--all", stdin="y\n")
    assert code == 0
    assert "3 dead event(s) moved back to pending" in out
    assert _dead_count(outbox) == 0


def test_dlq_replay_all_with_yes_needs_no_terminal(outbox: str) -> None:
    """--all --yes replays without asking (for scripts)."""
    code, out, _ = _invoke("dlq", "replay", "--all", "--yes", "--json")
    assert code == 0
    assert json.loads(out) == {"replayed": 4}
    assert _dead_count(outbox) == 0


@pytest.mark.usefixtures("outbox")
def test_outbox_status_names_the_database_and_gives_totals_and_rates() -> None:
    """outbox status names the (masked) database and adds a per-second rate and the unresolved total."""
    _, out, _ = _invoke("outbox", "status", "--json")
    data = json.loads(out)
    assert data["pending"] == 3
    assert data["dead"] == 4
    assert data["unresolved_total"] == 7
    assert data["published_per_second"] == 0
    _code, out, _ = _invoke("outbox", "status")
    assert out.startswith("outbox sqlite:///")


@pytest.mark.parametrize(
    "command", [["outbox", "status"], ["dlq", "list"], ["dlq", "replay", "--all", "--yes"]]
)
def test_commands_never_create_an_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Without a configured database the default SQLite file is not created: exit 1 with one line naming
    the database URL and what to do."""
    for name in list(os.environ):
        if name.startswith("PAYMENT_EVENTS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "no outbox database at sqlite:///payment_events.db" in err
    assert "PAYMENT_EVENTS_DATABASE_URL" in err
    assert list(tmp_path.iterdir()) == []


def test_drain_progress_line_on_a_terminal() -> None:
    """The progress line is redrawn in place with the total and rate, and ends with a newline."""
    stream = io.StringIO()
    progress = DrainProgress(stream, interval=0.0)
    progress(2000)
    progress(4000)
    progress.done()
    text_out = stream.getvalue()
    assert text_out.count("\r") == 3
    assert "draining: 4,000 rows resolved" in text_out
    assert text_out.endswith("\n")


def test_relay_drain_reports_progress_after_every_cycle() -> None:
    """Relay.drain(progress=...) gets the running total after each cycle, ending at the drained total."""
    clock = FakeClock()
    store = FakeStore(clock)
    for n in range(20):
        store.add(bytes([n]))
    relay, _ = make_relay(store, FakeProducer(), clock)
    seen: list[int] = []
    assert relay.drain(progress=seen.append) == 20
    assert seen == sorted(seen)
    assert len(seen) >= 3
    assert seen[-1] == 20


def test_audit_table_header_keeps_its_titles_apart() -> None:
    """The audit table's titles are separated (no 'duplicatesorder violations')."""
    from tests.unit.audit.test_reconcile import msg, reconcile, row

    header = reconcile([row(1, offset=0)], [msg("ev-1", 0)]).render_text().splitlines()[2]
    assert "duplicates  order violations  ledger mismatches" in header
