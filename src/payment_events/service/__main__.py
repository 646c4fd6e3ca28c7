"""``python -m payment_events.service``: a minimal relay, no HTTP server (the tests run it in a process of
its own to kill it)."""

from __future__ import annotations

import logging

from payment_events.relay.settings import RelayConfig
from payment_events.service import build_relay, run_relay


def main(argv: list[str] | None = None) -> int:
    """``python -m payment_events.service``: a minimal relay (the CLI's ``payment-events relay`` is the
    user-facing one, with metrics, health and alerts). The tests run it in its own process to kill it.

    Options come from flags or the environment (``PAYMENT_EVENTS_DATABASE_URL``,
    ``PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS``). Exits 0 after SIGTERM/SIGINT once in-flight deliveries
    are marked; ``--drain`` publishes what is pending, prints ``{"resolved": N}`` and exits.
    """
    import argparse
    import json
    import os
    import sys

    parser = argparse.ArgumentParser(prog="python -m payment_events.service")
    parser.add_argument("--database-url", default=os.environ.get("PAYMENT_EVENTS_DATABASE_URL"))
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("PAYMENT_EVENTS_KAFKA_BOOTSTRAP_SERVERS")
    )
    parser.add_argument("--batch-size", type=int, default=RelayConfig.batch_size)
    parser.add_argument("--poll-interval", type=float, default=RelayConfig.poll_interval_seconds)
    parser.add_argument("--dlq-topic", default=RelayConfig.dlq_topic)
    parser.add_argument("--max-attempts", type=int, default=RelayConfig.max_attempts)
    parser.add_argument("--shard-count", type=int, default=RelayConfig.shard_count)
    parser.add_argument("--lease-refresh", type=float, default=RelayConfig.lease_refresh_seconds)
    parser.add_argument("--backoff-cap", type=float, default=RelayConfig.backoff_cap_seconds)
    parser.add_argument("--producer-config", default="{}", help="JSON object of librdkafka overrides")
    parser.add_argument("--drain", action="store_true", help="publish what is pending now, then exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.database_url or not args.bootstrap_servers:
        parser.error("--database-url and --bootstrap-servers (or their environment variables) are required")
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    config = RelayConfig(
        batch_size=args.batch_size,
        poll_interval_seconds=args.poll_interval,
        dlq_topic=args.dlq_topic or None,
        max_attempts=args.max_attempts or None,  # 0: retry transient failures forever
        shard_count=args.shard_count,
        lease_refresh_seconds=args.lease_refresh,
        backoff_cap_seconds=args.backoff_cap,
        producer_overrides=json.loads(args.producer_config),
    )
    if args.drain:
        relay = build_relay(args.database_url, args.bootstrap_servers, config)
        try:
            resolved = relay.drain()
        finally:
            relay.close()
        print(json.dumps({"resolved": resolved}))  # noqa: T201 - the command's output
        return 0
    run_relay(args.database_url, args.bootstrap_servers, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
