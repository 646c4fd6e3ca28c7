"""`topics ensure` (and the start-up topic check the relay shares) and `audit`."""

from __future__ import annotations

import click

from payment_events.cli.base import (
    EXIT_FAILURE,
    cli,
    emit_json,
    load,
    settings_options,
)

# -- topics ---------------------------------------------------------------------------------------


@cli.group("topics")
def topics_group() -> None:
    """Kafka topics: the aggregate topic, per-type routes and the dead-letter topic."""


@topics_group.command("ensure")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("kafka", "topics")
@click.pass_context
def topics_ensure(ctx: click.Context, /, as_json: bool, **params: object) -> None:
    """Create missing topics (partitions, replication factor, min.insync.replicas); report differences.

    Exits 1 when an existing topic differs from the wanted settings (existing topics are never changed).
    """
    from payment_events.service import prepare_topics

    settings = load(ctx, params)
    statuses = prepare_topics(settings)
    if as_json:
        emit_json(
            [
                {
                    "topic": t.name,
                    "created": t.created,
                    "partitions": t.partitions,
                    "problems": list(t.problems),
                }
                for t in statuses
            ]
        )
    else:
        for t in statuses:
            what = "created" if t.created else "exists"
            line = f"{t.name:<40} {what:<8} partitions={t.partitions}"
            if t.problems:
                line += "  PROBLEM: " + "; ".join(t.problems)
            click.echo(line)
    if any(t.problems for t in statuses):
        ctx.exit(EXIT_FAILURE)


# -- audit ----------------------------------------------------------------------------------------


@cli.command("audit")
@click.option("--topic", "topics", multiple=True, help="Topic to audit (repeatable; default: all in ledger).")
@click.option("--since", default=None, metavar="WHEN", help="Only rows created since (ISO 8601).")
@click.option("--until", default=None, metavar="WHEN", help="Only rows created before (ISO 8601).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(1), help="Read limit (s).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--exactly-once",
    is_flag=True,
    help="The relays run in exactly-once mode: any duplicate (read_committed) is a failure (exit 1).",
)
@settings_options("database", "kafka")
@click.pass_context
def audit_command(
    ctx: click.Context,
    /,
    *,
    topics: tuple[str, ...],
    since: str | None,
    until: str | None,
    timeout: float,
    as_json: bool,
    exactly_once: bool,
    **params: object,
) -> None:
    """Reconcile the outbox ledger with what Kafka holds: lost, duplicates, per-key order, mismatches.

    Reads the topics with an independent read_committed consumer (no group offsets). Exits 0 when
    nothing was lost and every key kept its order (with --exactly-once: and nothing was seen twice), 1
    when something was lost, reordered (or duplicated with --exactly-once), 3 when nothing was found
    wrong but a topic or partition could not be read (broker unreachable, topic missing, --timeout):
    could not verify, never "lost".
    """
    settings = load(ctx, params)
    from payment_events.audit import audit, parse_instant

    try:
        start = parse_instant(since) if since else None
        end = parse_instant(until) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    kafka = {k: v for k, v in settings.kafka_config().items() if k != "bootstrap.servers"}
    report = audit(
        settings.database_url,
        settings.kafka_bootstrap_servers,
        list(topics) or None,
        since=start,
        until=end,
        kafka_config=kafka,
        timeout=timeout,
        exactly_once=exactly_once,
    )
    click.echo(report.to_json() if as_json else report.render_text())
    ctx.exit(report.exit_code)
