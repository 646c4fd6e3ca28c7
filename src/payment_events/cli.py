"""The `payment-events` command line."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="payment-events")
def main() -> None:
    """Turn payment outcomes into durable, versioned events on Apache Kafka."""
