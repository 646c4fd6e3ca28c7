"""`relay` (the service: relay loop, metrics/health server, probes, alerts, signals) and `demo`."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

import click

from payment_events import config as cfg
from payment_events.cli.base import (
    ALL_GROUPS,
    EXIT_FAILURE,
    EXIT_OK,
    CliState,
    cli,
    emit_json,
    load,
    require_existing_database,
    settings_options,
)

if TYPE_CHECKING:

    pass

# -- relay ----------------------------------------------------------------------------------------


@cli.command("relay")
@click.option(
    "--drain",
    is_flag=True,
    help="Publish what is pending now, print {\"resolved\": N} and exit (no HTTP server; for jobs).",
)
@settings_options(*ALL_GROUPS)
@click.pass_context
def relay_command(ctx: click.Context, /, drain: bool, **params: object) -> None:
    """Run the relay: publish committed outbox rows to Kafka until SIGTERM/SIGINT (then exit 0).

    Serves /metrics, /healthz and /readyz on --metrics-host:--metrics-port (127.0.0.1:9464 by default).
    """
    from payment_events import service

    settings = load(ctx, params)
    if drain:
        import sys

        require_existing_database(settings)
        progress = DrainProgress(sys.stderr) if sys.stderr.isatty() else None
        try:
            resolved = service.drain(settings, progress=progress)
        finally:
            if progress is not None:
                progress.done()
        emit_json({"resolved": resolved})
        ctx.exit(EXIT_OK)
    require_existing_database(settings)
    from payment_events.service.serving import serve

    ctx.exit(serve(settings))


class DrainProgress:
    """``relay --drain``'s progress line on a terminal: rows resolved and the rate, redrawn at most twice
    a second on stderr (stdout keeps only the final JSON)."""

    def __init__(self, stream: TextIO, interval: float = 0.5) -> None:
        import time

        self._stream = stream
        self._interval = interval
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._total = 0
        self._drawn = False

    def __call__(self, total: int) -> None:
        """Record the running total; redraw when the last line is older than the interval."""
        import time

        self._total = total
        now = time.monotonic()
        if now - self._drawn_at >= self._interval:
            self._drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        self._stream.write(f"\rdraining: {self._total:,} rows resolved, {self._total / elapsed:,.0f}/s, "
                           f"{elapsed:.0f} s ")
        self._stream.flush()
        self._drawn = True

    def done(self) -> None:
        """Draw the final figures and end the line."""
        import time

        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()




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
