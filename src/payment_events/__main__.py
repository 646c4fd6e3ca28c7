"""`python -m payment_events` (and the `payment-events` script) run the command-line interface.

The command line needs the relay's dependencies (``pip install 'payment-events[relay]'``); without them
it says so in one line instead of a traceback (a consumer may install the contracts alone).
"""

from __future__ import annotations

import sys

_RELAY_MODULES = ("click", "sqlalchemy", "confluent_kafka", "alembic", "prometheus_client", "psycopg")


def main() -> None:
    """Run the CLI, or exit 2 naming the extra to install."""
    import importlib.util

    missing = [name for name in _RELAY_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(
            f"payment-events: the command line needs the relay's dependencies ({', '.join(missing)} "
            "missing): pip install 'payment-events[relay]'\n"
        )
        sys.exit(2)
    from payment_events.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
