"""The `payment-events` command line (click).

Exit codes: 0 success, 1 failure or problems found (``schemas check`` incompatibilities, a failed
``topics ensure``, a relay that stopped on an error), 2 usage or configuration errors (a bad flag, an
invalid setting), 130 interrupted. Errors are one clear line on stderr, never a traceback.

Settings come from defaults < ``--config FILE`` (or ``PAYMENT_EVENTS_CONFIG``) < ``PAYMENT_EVENTS_*``
environment variables < flags; every command that needs settings takes the flags of its option groups
(``payment-events relay --help`` lists them). Secrets have no flags. Heavy modules (SQLAlchemy,
confluent_kafka) are imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from payment_events import config as cfg
from payment_events.errors import ConfigurationError, PaymentEventsError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from payment_events.health import HealthServer, HealthState
    from payment_events.kafka_admin import TopicStatus

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

ALL_GROUPS = ("database", "kafka", "topics", "relay", "metrics", "alerts", "logging")


@dataclass
class CliState:
    """What the root group collects for the commands: the config file and root-level overrides."""

    config_file: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)


def settings_options(*groups: str) -> Callable[[F], F]:
    """Add a flag for every non-secret setting in ``groups`` (default: not given, so it overrides nothing)."""

    def decorate(func: F) -> F:
        for name in reversed(cfg.option_names()):
            group = cfg.option_group(name)
            if group not in groups or group == "logging" or cfg.is_secret(name):
                continue
            default = cfg.option_default(name)
            shown = cfg.mask_url(default) if isinstance(default, str) else default
            help_text = f"{cfg.option_help(name)} [env {cfg.env_var(name)}; default {shown!r}]"
            if isinstance(default, bool):
                opt = click.option(
                    f"{cfg.flag(name)}/--no-{name.replace('_', '-')}", name, default=None, help=help_text
                )
            else:
                opt = click.option(cfg.flag(name), name, default=None, metavar="VALUE", help=help_text)
            func = opt(func)
        return func

    return decorate


def load(ctx: click.Context, params: Mapping[str, object]) -> cfg.Settings:
    """Settings for a command: its flags over the root flags over env over file over defaults.

    Also configures logging from the result and warns about unknown ``PAYMENT_EVENTS_*`` variables.
    """
    from payment_events.logs import configure_logging, get_logger

    state = ctx.find_object(CliState) or CliState()
    overrides = dict(state.overrides)
    overrides.update({k: v for k, v in params.items() if k in cfg.Settings.model_fields and v is not None})
    settings = cfg.load_settings(config_file=state.config_file, overrides=overrides)
    configure_logging(settings.log_format, settings.log_level)
    for var in cfg.unknown_environment():
        get_logger(__name__).warning("config.unknown_environment_variable", variable=var)
    return settings


def emit_json(data: object) -> None:
    """Print ``data`` as JSON on stdout (for scripts)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="payment-events")
@click.option(
    "--config",
    "config_file",
    envvar=cfg.CONFIG_FILE_ENV,
    metavar="FILE",
    help=f"TOML settings file [env {cfg.CONFIG_FILE_ENV}].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log level [env PAYMENT_EVENTS_LOG_LEVEL; default INFO].",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"], case_sensitive=False),
    default=None,
    help="auto: console on a terminal, JSON lines otherwise [env PAYMENT_EVENTS_LOG_FORMAT].",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, log_level: str | None, log_format: str | None) -> None:
    """Turn payment outcomes into durable, versioned events on Apache Kafka (transactional outbox)."""
    overrides: dict[str, object] = {}
    if log_level is not None:
        overrides["log_level"] = log_level
    if log_format is not None:
        overrides["log_format"] = log_format
    ctx.obj = CliState(config_file=config_file, overrides=overrides)


# -- config -----------------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options(*ALL_GROUPS)
@click.pass_context
def config_show(ctx: click.Context, /, as_json: bool, **params: object) -> None:
    """Print the effective settings (secrets masked). Exits 2 if any setting is invalid."""
    settings = load(ctx, params)
    masked = settings.masked()
    if as_json:
        emit_json(masked)
        return
    width = max(len(name) for name in masked)
    for name, value in masked.items():
        click.echo(f"{name:<{width}}  {json.dumps(value, default=str)}")


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


# -- relay ----------------------------------------------------------------------------------------


@cli.command("relay")
@settings_options(*ALL_GROUPS)
@click.pass_context
def relay_command(ctx: click.Context, /, **params: object) -> None:
    """Run the relay: publish committed outbox rows to Kafka until SIGTERM/SIGINT (then exit 0).

    Serves /metrics, /healthz and /readyz on --metrics-host:--metrics-port (127.0.0.1:9464 by default).
    """
    settings = load(ctx, params)
    ctx.exit(serve_relay(settings))


def serve_relay(settings: cfg.Settings) -> int:
    """Run a relay with metrics, health, alerts and signal handling until SIGTERM/SIGINT; return 0.

    Refuses to start (raises) when the outbox schema is not migrated or the topics are missing and may
    not be created. The HTTP server, probe and webhook threads are stopped on the way out.
    """
    import signal
    import threading

    from prometheus_client import disable_created_metrics

    from payment_events.alerts import AlertingObserver, WebhookNotifier
    from payment_events.health import HealthState, ProbeSink, ReachabilityProbe
    from payment_events.logs import get_logger
    from payment_events.metrics import FanOutObserver, PrometheusObserver
    from payment_events.outbox import migrate
    from payment_events.relay.runner import build_relay

    log = get_logger("payment_events.cli")
    migrate.check(settings.database_url)
    prepare_topics(settings)
    # No *_created series: they double the scrape size and nobody graphs them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    with contextlib.ExitStack() as stack:  # everything started below is stopped in reverse order
        metrics = PrometheusObserver()
        state = HealthState(settings.health_liveness_timeout)
        server = _health_server(settings, state, metrics.registry) if settings.metrics_enabled else None
        if server is not None:
            stack.callback(server.stop)
        webhook = settings.alert_webhook()
        notifier = WebhookNotifier(webhook).start() if webhook else None
        if notifier is not None:
            stack.callback(notifier.close, 10.0)
        alerts = AlertingObserver(
            oldest_pending_age=settings.alert_oldest_pending_age,
            broker_unreachable=settings.alert_broker_unreachable,
            cooldown=settings.alert_cooldown,
            sink=notifier,
        )
        observer = FanOutObserver(metrics, alerts, state)
        relay = build_relay(
            settings.database_url,
            settings.kafka_bootstrap_servers,
            settings.to_relay_config(),
            observer=observer,
        )
        if settings.database_url.startswith("sqlite"):
            observer.shards_owned(settings.relay_shard_count)  # one relay owns every shard on SQLite
        checks = _Checks(settings)
        stack.callback(checks.close)
        probe = ReachabilityProbe(
            ProbeSink(state, metrics, alerts),
            broker_check=checks.broker,
            database_check=checks.database,
            interval=_PROBE_INTERVAL_SECONDS,
        ).start()
        stack.callback(probe.stop)

        def on_signal(signum: int, frame: object) -> None:
            state.stopping()  # /readyz turns false at once; the relay finishes its cycle and exits
            relay.stop()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                stack.callback(signal.signal, sig, signal.signal(sig, on_signal))
        log.info(
            "relay.serving",
            database=cfg.mask_url(settings.database_url),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            metrics_port=server.port if server else None,
            shard_count=settings.relay_shard_count,
            settings=settings.masked(),
        )
        relay.run()
    log.info("relay.exited")
    return EXIT_OK


_PROBE_INTERVAL_SECONDS = 5.0


def _health_server(settings: cfg.Settings, state: HealthState, registry: CollectorRegistry) -> HealthServer:
    """Start the HTTP server; a port in use or a bad address is a configuration error (exit 2)."""
    from payment_events.health import HealthServer

    try:
        return HealthServer(state, registry, settings.metrics_host, settings.metrics_port).start()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror or exc}): choose another address with --metrics-host/--metrics-port "
            f"({cfg.env_var('metrics_port')}), or --no-metrics-enabled"
        ) from None


class _Checks:
    """The probe's two checks: broker metadata and ``SELECT 1``, each on its own small client."""

    def __init__(self, settings: cfg.Settings) -> None:
        import sqlalchemy as sa
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient({**settings.kafka_config(), "socket.timeout.ms": 3000})
        self._engine = sa.create_engine(settings.database_url, pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            from payment_events.outbox.sql import configure_sqlite

            configure_sqlite(self._engine)  # a busy timeout, so the relay's writes do not read as an outage

    def broker(self) -> bool:
        """True when a broker answers a metadata request within 3 s."""
        self._admin.list_topics(timeout=3)
        return True

    def database(self) -> bool:
        """True when the database answers ``SELECT 1``."""
        import sqlalchemy as sa

        with self._engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True

    def close(self) -> None:
        """Release the database pool."""
        self._engine.dispose()


def prepare_topics(settings: cfg.Settings) -> list[TopicStatus]:
    """Create the configured topics if allowed; otherwise refuse (ConfigurationError) when one is missing."""
    from payment_events.kafka_admin import ensure_topics

    router = settings.topic_router()
    return ensure_topics(
        settings.kafka_config(),
        sorted({*router.topics, settings.dlq_topic}),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
        create=settings.create_topics,
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


# -- outbox ---------------------------------------------------------------------------------------


@cli.group("outbox")
def outbox_group() -> None:
    """Inspect the outbox table."""


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def outbox_status(ctx: click.Context, /, as_json: bool, **params: object) -> None:
    """Pending, in retry, dead, oldest pending age and published in the last minute."""
    settings = load(ctx, params)
    from datetime import UTC, datetime

    from payment_events.outbox.sql import SqlOutboxStore

    with SqlOutboxStore.from_url(settings.database_url, shard_count=settings.relay_shard_count) as store:
        stats = store.backlog(datetime.now(UTC))
    data = {
        "pending": stats.pending,
        "in_retry": stats.in_retry,
        "dead": stats.dead,
        "oldest_pending_age_seconds": round(stats.oldest_pending_age_seconds, 3),
        "published_last_minute": stats.published_last_minute,
    }
    if as_json:
        emit_json(data)
        return
    for name, value in data.items():
        click.echo(f"{name.replace('_', ' '):<28} {value}")


# -- dlq ------------------------------------------------------------------------------------------


@cli.group("dlq")
def dlq_group() -> None:
    """Dead-lettered events: list, inspect, replay (see docs/operations.md, runbook)."""


def _text(data: bytes) -> str:
    """Bytes as text for display (keys and payloads are UTF-8 JSON/ids; anything else shown escaped)."""
    return data.decode("utf-8", errors="backslashreplace")


def _store(settings: cfg.Settings) -> Any:
    from payment_events.outbox.sql import SqlOutboxStore

    return SqlOutboxStore.from_url(settings.database_url, shard_count=settings.relay_shard_count)


@dlq_group.command("list")
@click.option("--event-type", default=None, help="Only dead events of this type.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="At most.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def dlq_list(
    ctx: click.Context, /, event_type: str | None, limit: int, as_json: bool, **params: object
) -> None:
    """Dead events, oldest first: id, event id, type, key, attempts, reason (no payloads)."""
    settings = load(ctx, params)
    with _store(settings) as store:
        rows = store.list_dead(limit, event_type=event_type)
    items = [
        {
            "id": r.id,
            "event_id": r.event_id,
            "event_type": r.event_type,
            "key": _text(r.key),
            "attempts": r.attempts,
            "last_error": r.last_error,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("no dead events")
        return
    click.echo(f"{'ID':>8}  {'EVENT TYPE':<22} {'ATTEMPTS':>8}  {'CREATED':<25} {'KEY':<24} LAST ERROR")
    for i in items:
        error = (i["last_error"] or "")[:60]
        click.echo(
            f"{i['id']:>8}  {i['event_type']:<22} {i['attempts']:>8}  {i['created_at']:<25} "
            f"{str(i['key'])[:24]:<24} {error}"
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
        "event_id": row.event_id,
        "event_type": row.event_type,
        "schema_version": row.schema_version,
        "topic": row.topic,
        "key": _text(row.key),
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "shard": row.shard,
        "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "published_at": row.published_at.isoformat() if row.published_at else None,
        "kafka_partition": row.kafka_partition,
        "kafka_offset": row.kafka_offset,
        "headers": {k: _text(v) for k, v in row.headers},
        "payload_bytes": len(row.payload),
    }
    if with_payload:
        data["payload"] = _text(row.payload)
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options("database")
@click.pass_context
def dlq_replay(
    ctx: click.Context, /, ids: tuple[int, ...], event_type: str | None, all_dead: bool, as_json: bool,
    **params: object,
) -> None:
    """Move dead events back to pending so the relay publishes them again (give IDs, --event-type or --all).

    Rows keep their id, so dead events of one key replayed together keep their order and go out before
    that key's later pending events. Fix the cause first (see `dlq show ID`).
    """
    chosen = sum([bool(ids), event_type is not None, all_dead])
    if chosen != 1:
        raise click.UsageError("give exactly one of: ID..., --event-type TYPE, --all")
    settings = load(ctx, params)
    with _store(settings) as store:
        moved = store.replay(list(ids) if ids else None, event_type=event_type, all_dead=all_dead)
    if as_json:
        emit_json({"replayed": moved})
    else:
        click.echo(f"{moved} dead event(s) moved back to pending")
    if ids and moved < len(set(ids)):
        click.echo(f"warning: {len(set(ids)) - moved} of the given id(s) were not dead rows", err=True)
        ctx.exit(EXIT_FAILURE)


# -- audit ----------------------------------------------------------------------------------------


@cli.command("audit")
@click.option("--topic", "topics", multiple=True, help="Topic to audit (repeatable; default: all in ledger).")
@click.option("--since", default=None, metavar="WHEN", help="Only rows created since (ISO 8601).")
@click.option("--until", default=None, metavar="WHEN", help="Only rows created before (ISO 8601).")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(1), help="Read limit (s).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
    **params: object,
) -> None:
    """Reconcile the outbox ledger with what Kafka holds: lost, duplicates, per-key order, mismatches.

    Reads the topics with an independent consumer (no group offsets). Exits 0 when nothing was lost and
    every key kept its order, 1 otherwise.
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
    )
    click.echo(report.to_json() if as_json else report.render_text())
    ctx.exit(report.exit_code)


# -- schemas --------------------------------------------------------------------------------------


@cli.group("schemas")
def schemas_group() -> None:
    """JSON Schema files of every event version, and the compatibility check."""


@schemas_group.command("export")
@click.argument("directory", default="schemas", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def schemas_export(directory: str, as_json: bool) -> None:
    """Write <DIRECTORY>/<EventType>/v<N>.json for every registered event version (default: schemas)."""
    from payment_events.schemas import export_schemas

    written = [str(p) for p in export_schemas(directory)]
    if as_json:
        emit_json(written)
    else:
        for path in written:
            click.echo(path)
        click.echo(f"{len(written)} schema file(s) written to {directory}", err=True)


@schemas_group.command("check")
@click.option(
    "--dir",
    "directory",
    default="schemas",
    type=click.Path(file_okay=False),
    show_default=True,
    help="Committed schema files to compare with the models.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.pass_context
def schemas_check(ctx: click.Context, /, directory: str, as_json: bool) -> None:
    """Fail (exit 1) on a breaking change between versions, or committed files out of date with the models.

    Checks every consecutive pair of versions (removed or retyped fields, new required fields, narrowed
    enums, ...), that each committed file matches its model, and how a changed file would break consumers.
    """
    from pathlib import Path

    from payment_events.schemas import (
        check_all,
        check_compatibility,
        generate_schemas,
        load_schemas,
        stale_schema_files,
    )

    def problem(schema: str, path: str, kind: str, message: str) -> dict[str, str]:
        return {"schema": schema, "path": path, "kind": kind, "message": message}

    problems = [problem(i.schema, i.path, i.kind, i.message) for i in check_all()]
    if Path(directory).is_dir():
        problems += [problem("", "", "stale-file", m) for m in stale_schema_files(directory)]
        committed = load_schemas(directory)
        for key, schema in sorted(generate_schemas().items()):
            if key in committed and committed[key] != schema:
                problems += [
                    problem(i.schema, i.path, f"changed-published-{i.kind}", i.message)
                    for i in check_compatibility(committed[key], schema)
                ]
    else:
        message = f"{directory} is not a directory: run `payment-events schemas export` and commit the files"
        problems.append(problem("", "", "missing-dir", message))
    if as_json:
        emit_json({"ok": not problems, "problems": problems})
    elif problems:
        for found in problems:
            prefix = f"{found['schema']}: " if found["schema"] else ""
            click.echo(f"{found['kind']}: {prefix}{found['message']}")
    else:
        click.echo("schemas are compatible and up to date")
    if problems:
        ctx.exit(EXIT_FAILURE)


# -- demo -----------------------------------------------------------------------------------------


@cli.command("demo")
@click.option(
    "--payments", default=200, show_default=True, type=click.IntRange(1, 1_000_000), help="Payments to run."
)
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the outcome mix.")
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds to wait for the last events after writing.",
)
@settings_options("database", "kafka", "topics", "relay")
@click.pass_context
def demo_command(ctx: click.Context, /, payments: int, seed: int, timeout: float, **params: object) -> None:
    """The main job in one command: a payment service -> outbox -> relay -> Kafka -> consumer, tallied.

    Uses the embedded SQLite outbox and the local broker (`scripts/services up`) by default. Exits 0 when
    every committed event was read back from Kafka in per-key order, 1 otherwise.
    """
    import os

    state = ctx.find_object(CliState)
    quiet = state is not None and "log_level" not in state.overrides
    if state is not None and quiet and not os.environ.get(cfg.env_var("log_level")):
        state.overrides["log_level"] = "WARNING"  # the demo's own output is the progress and the table
    settings = load(ctx, params)
    from payment_events.demo import run_demo

    report = run_demo(settings, payments=payments, seed=seed, timeout=timeout)
    ctx.exit(EXIT_OK if report.ok else EXIT_FAILURE)


# -- entry point ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with the conventional code; errors are one line on stderr, no traceback."""
    try:
        code = cli.main(args=argv, prog_name="payment-events", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except PaymentEventsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 -- one clear line instead of a traceback (DEBUG logs it)
        from payment_events.logs import get_logger, redact_text

        get_logger("payment_events.cli").debug("cli.unexpected_error", exc_info=True)
        click.echo(f"error: unexpected {type(exc).__name__}: {redact_text(str(exc))[:500]}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
