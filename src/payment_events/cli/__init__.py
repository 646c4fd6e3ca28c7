"""The `payment-events` command line (click).

Exit codes: 0 success, 1 failure or problems found (``schemas check`` incompatibilities, a failed
``topics ensure``, a relay that stopped on an error), 2 usage or configuration errors (a bad flag, an
invalid setting), 130 interrupted. Errors are one clear line on stderr, never a traceback.

One module per family of commands: :mod:`~payment_events.cli.base` (the root group, settings plumbing,
``config show``), :mod:`~payment_events.cli.relay` (``relay``, ``demo``), :mod:`~payment_events.cli.outbox`
(``db``, ``outbox``, ``dlq``), :mod:`~payment_events.cli.kafka` (``topics``, ``audit``) and
:mod:`~payment_events.cli.schemas`. Importing this package registers them all on :data:`cli`.
"""

from __future__ import annotations

import sys

import click

from payment_events.cli import kafka, outbox, relay, schemas
from payment_events.cli.base import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliState,
    cli,
    emit_json,
    load,
    settings_options,
)
from payment_events.errors import ConfigurationError, PaymentEventsError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliState",
    "cli",
    "emit_json",
    "kafka",
    "load",
    "main",
    "outbox",
    "relay",
    "schemas",
    "settings_options",
]


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
        from payment_events.ops.logs import get_logger, redact_text

        get_logger("payment_events.cli").debug("cli.unexpected_error", exc_info=True)
        click.echo(f"error: unexpected {type(exc).__name__}: {redact_text(str(exc))[:500]}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else EXIT_OK)
