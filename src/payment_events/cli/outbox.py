"""`db upgrade`, `outbox status` and the dead-letter tools `dlq list|show|replay`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from payment_events import config as cfg
from payment_events.cli.base import (
    EXIT_FAILURE,
    EXIT_USAGE,
    cli,
    emit_json,
    load,
    require_existing_database,
    settings_options,
)

# -- db -------------------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Create and upgrade the outbox schema."""


@db_group.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def db_upgrade(ctx: click.Context, /, as_json: bool, **params: object) -> None:
    """Create or upgrade the outbox table (idempotent; safe to run from several instances at once)."""
    settings = load(ctx, params)
    from payment_events.outbox import migrate

    before = migrate.current_revision(settings.database_url)
    migrate.upgrade(settings.database_url)
    after = migrate.current_revision(settings.database_url)
    result = {"database": cfg.mask_url(settings.database_url), "from": before, "to": after}
    if as_json:
        emit_json(result)
    elif before == after:
        click.echo(f"outbox schema already at revision {after} ({result['database']})")
    else:
        click.echo(f"outbox schema upgraded from {before or 'nothing'} to {after} ({result['database']})")


# -- outbox ---------------------------------------------------------------------------------------


@cli.group("outbox")
def outbox_group() -> None:
    """Inspect the outbox table."""


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def outbox_status(ctx: click.Context, /, as_json: bool, **params: object) -> None:
    """Pending, in retry, dead, oldest pending age, published in the last minute and per second."""
    settings = load(ctx, params)
    require_existing_database(settings)
    from datetime import UTC, datetime

    from payment_events.outbox.store import SqlOutboxStore

    with SqlOutboxStore.from_url(settings.database_url, shard_count=settings.relay_shard_count) as store:
        stats = store.backlog(datetime.now(UTC))
    data = {
        "pending": stats.pending,
        "in_retry": stats.in_retry,
        "dead": stats.dead,
        "oldest_pending_age_seconds": round(stats.oldest_pending_age_seconds, 3),
        "published_last_minute": stats.published_last_minute,
        "published_per_second": round(stats.published_last_minute / 60, 1),
        "unresolved_total": stats.pending + stats.dead,
    }
    if as_json:
        emit_json(data)
        return
    click.echo(f"outbox {cfg.mask_url(settings.database_url)}")
    for name, value in data.items():
        click.echo(f"{name.replace('_', ' '):<28} {value}")


# -- dlq ------------------------------------------------------------------------------------------


@cli.group("dlq")
def dlq_group() -> None:
    """Dead-lettered events: list, inspect, replay (see docs/operations.md, runbook)."""


def _interactive() -> bool:
    """Whether a person can answer a question: stdin and stderr are terminals."""
    import sys

    return sys.stdin.isatty() and sys.stderr.isatty()


def _text(data: bytes) -> str:
    """Bytes as text for display (keys and payloads are UTF-8 JSON/ids; anything else shown escaped),
    with card numbers and secrets masked (:func:`_safe`)."""
    return _safe(data.decode("utf-8", errors="backslashreplace"))


def _payload_text(payload: bytes) -> str:
    """The payload for display: JSON with ``\\uXXXX`` escapes undone (so masking sees every digit)."""
    try:
        return _safe(json.dumps(json.loads(payload), ensure_ascii=False, sort_keys=True))
    except (ValueError, RecursionError):
        return _text(payload)


def _safe(text: str) -> str:
    """``text`` with card numbers (any form the event checks refuse), URL passwords and tokens masked.

    Rows written before the checks existed, or by hand, may hold what events now refuse: nothing an
    operator prints is shown unmasked.
    """
    from payment_events.ops.logs import redact_text

    return redact_text(text)


def _store(settings: cfg.Settings) -> Any:
    from payment_events.outbox.store import SqlOutboxStore

    require_existing_database(settings)
    return SqlOutboxStore.from_url(settings.database_url, shard_count=settings.relay_shard_count)


@dlq_group.command("list")
@click.option("--event-type", default=None, help="Only dead events of this type.")
@click.option("--topic", default=None, help="Only dead events of this topic.")
@click.option("--reason", default=None, help="Only dead events whose last error contains this (any case).")
@click.option("--key", default=None, help="Only dead events of this partition key (payment id, user id).")
@click.option("--since", default=None, metavar="WHEN", help="Only events committed since (ISO 8601).")
@click.option("--until", default=None, metavar="WHEN", help="Only events committed before (ISO 8601).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="At most.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of rows).")
@settings_options("database")
@click.pass_context
def dlq_list(
    ctx: click.Context,
    /,
    limit: int,
    as_json: bool,
    **params: object,
) -> None:
    """Dead events, oldest first: id, type, topic, key, attempts, created, reason (no payloads), and how
    many match in total."""
    filters = _dead_filter(params)
    settings = load(ctx, params)
    with _store(settings) as store:
        total = store.count_dead(filters)
        rows = store.list_dead(limit, filters=filters)
    items = [
        {
            "id": r.id,
            "event_id": _safe(r.event_id),
            "event_type": _safe(r.event_type),
            "topic": _safe(r.topic),
            "key": _text(r.key),
            "attempts": r.attempts,
            "last_error": None if r.last_error is None else _safe(r.last_error),
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
    if as_json:
        emit_json(items)  # a list, as before; the total is in the text output
        return
    if not items:
        click.echo("no dead events match" if filters != type(filters)() else "no dead events")
        return
    columns: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
        ("ID", lambda i: str(i["id"]), ">"),
        ("EVENT TYPE", lambda i: str(i["event_type"]), "<"),
        ("TOPIC", lambda i: str(i["topic"]), "<"),
        ("KEY", lambda i: str(i["key"])[:36], "<"),
        ("ATTEMPTS", lambda i: str(i["attempts"]), ">"),
        ("CREATED", lambda i: str(i["created_at"])[:19].replace("T", " "), "<"),
    ]
    widths = [max(len(title), *(len(cell(i)) for i in items)) for title, cell, _ in columns]
    header = "  ".join(f"{title:{align}{w}}" for (title, _, align), w in zip(columns, widths, strict=True))
    click.echo(f"{header}  LAST ERROR")
    for i in items:
        cells = "  ".join(
            f"{cell(i):{align}{w}}" for (_, cell, align), w in zip(columns, widths, strict=True)
        )
        click.echo(f"{cells}  {(i['last_error'] or '')[:80]}")
    more = f"; showing the first {len(items)} (--limit)" if total > len(items) else ""
    click.echo(f"{total} dead event(s){more}")


def _dead_filter(params: dict[str, object]) -> Any:
    """The dead-row filter from ``dlq list``'s options (removed from ``params``); bad times exit 2."""
    from payment_events.audit import parse_instant
    from payment_events.outbox.ports import DeadFilter

    names = ("event_type", "topic", "reason", "key", "since", "until")
    values = {name: params.pop(name, None) for name in names}
    try:
        since = parse_instant(str(values["since"])) if values["since"] else None
        until = parse_instant(str(values["until"])) if values["until"] else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    text = {k: (str(v) if v is not None else None) for k, v in values.items()}
    return DeadFilter(
        event_type=text["event_type"], topic=text["topic"], reason=text["reason"], key=text["key"],
        since=since, until=until,
    )


@dlq_group.command("show")
@click.argument("row_id", metavar="ID", type=int)
@click.option("--payload", "with_payload", is_flag=True, help="Also print the payload (event JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def dlq_show(ctx: click.Context, /, row_id: int, with_payload: bool, as_json: bool, **params: object) -> None:
    """One outbox row by its id (any state): why it died, attempts, headers; --payload adds the event."""
    settings = load(ctx, params)
    with _store(settings) as store:
        row = store.get(row_id)
    if row is None:
        click.echo(f"error: no outbox row with id {row_id}", err=True)
        ctx.exit(EXIT_FAILURE)
    data: dict[str, object] = {
        "id": row.id,
        "event_id": _safe(row.event_id),
        "event_type": _safe(row.event_type),
        "schema_version": row.schema_version,
        "topic": _safe(row.topic),
        "key": _text(row.key),
        "state": row.state,
        "attempts": row.attempts,
        "last_error": None if row.last_error is None else _safe(row.last_error),
        "shard": row.shard,
        "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "published_at": row.published_at.isoformat() if row.published_at else None,
        "kafka_partition": row.kafka_partition,
        "kafka_offset": row.kafka_offset,
        "headers": {_safe(k): _text(v) for k, v in row.headers},
        "payload_bytes": len(row.payload),
    }
    if with_payload:
        data["payload"] = _payload_text(row.payload)
    if as_json:
        emit_json(data)
        return
    for name, value in data.items():
        shown = json.dumps(value) if isinstance(value, dict) else value
        click.echo(f"{name:<16} {shown}")


@dlq_group.command("replay")
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--event-type", default=None, help="Replay every dead event of this type.")
@click.option("--all", "all_dead", is_flag=True, help="Replay every dead event.")
@click.option("--dry-run", is_flag=True, help="Only say how many dead events would be replayed.")
@click.option(
    "--yes", "-y", "assume_yes", is_flag=True, help="Do not ask before a bulk replay (--all, --event-type)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def dlq_replay(
    ctx: click.Context,
    /,
    *,
    ids: tuple[int, ...],
    event_type: str | None,
    all_dead: bool,
    dry_run: bool,
    assume_yes: bool,
    as_json: bool,
    **params: object,
) -> None:
    """Move dead events back to pending so the relay publishes them again (give IDs, --event-type or --all).

    Rows keep their id, so dead events of one key replayed together keep their order and go out before
    that key's later pending events. Fix the cause first (see `dlq show ID`). A bulk replay (--all,
    --event-type) asks for confirmation on a terminal and needs --yes otherwise; --dry-run only counts.
    """
    chosen = sum([bool(ids), event_type is not None, all_dead])
    if chosen != 1:
        raise click.UsageError("give exactly one of: ID..., --event-type TYPE, --all")
    settings = load(ctx, params)
    from payment_events.outbox.ports import DeadFilter

    with _store(settings) as store:
        matching = store.count_dead(DeadFilter(event_type=event_type), ids=list(ids) if ids else None)
        if dry_run:
            if as_json:
                emit_json({"would_replay": matching, "dry_run": True})
            else:
                click.echo(f"{matching} dead event(s) would move back to pending (dry run: nothing changed)")
            return
        bulk = not ids
        if bulk and matching and not assume_yes:
            if not _interactive():
                click.echo(
                    f"error: replaying {matching} dead event(s) needs --yes when not on a terminal "
                    "(or --dry-run to count them)",
                    err=True,
                )
                ctx.exit(EXIT_USAGE)
            which = f"of type {event_type}" if event_type else "(all)"
            click.confirm(f"Replay {matching} dead event(s) {which}?", abort=True, err=True)
        moved = store.replay(list(ids) if ids else None, event_type=event_type, all_dead=all_dead)
    if as_json:
        emit_json({"replayed": moved})
    else:
        click.echo(f"{moved} dead event(s) moved back to pending")
    if ids and moved < len(set(ids)):
        click.echo(f"warning: {len(set(ids)) - moved} of the given id(s) were not dead rows", err=True)
        ctx.exit(EXIT_FAILURE)
