"""``python -m tests.chaos [--short] [--delivery MODE] [--only NAME ...]``: run the fault-injection suite.

``--skip NAME ...`` leaves scenarios out; ``--delivery exactly-once`` runs the relays in exactly-once mode
and fails a scenario on any duplicate a read_committed reader sees.

Each scenario prints one line; the exit status is 1 if any failed. Scenario names: relay-sigkill,
broker-kill-9, leader-failover, network-faults, pg-terminate-backend, pg-restart-immediate,
visibility-gap, several-relays, poison-input, small-max-message, missing-topic, deleted-dlq,
one-key-writers (issue 11). ``pg-restart-immediate`` restarts the shared PostgreSQL
server: run the full suite only when nobody else uses the services.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from tests.chaos import scenarios, scenarios_broker, scenarios_topics
from tests.chaos.harness import ScenarioResult, timed
from tests.chaos.relays import DELIVERY_ENV
from tests.chaos.scale import FULL, SHORT, Scale

ORDER = (
    "relay-sigkill",
    "several-relays",
    "visibility-gap",
    "poison-input",
    "small-max-message",
    "missing-topic",
    "deleted-dlq",
    "one-key-writers",
    "pg-terminate-backend",
    "broker-kill-9",
    "network-faults",
    "leader-failover",
    "pg-restart-immediate",
)


def run(names: list[str], scale: Scale, emit: Callable[[str], None]) -> list[ScenarioResult]:
    """Run the named scenarios in the suite's order; ``emit`` gets each one-line result."""
    results: list[ScenarioResult] = []
    simple: dict[str, Callable[[Scale], ScenarioResult]] = {
        "relay-sigkill": scenarios.relay_sigkill,
        "several-relays": scenarios.several_relays,
        "visibility-gap": scenarios.visibility_gap,
        "poison-input": scenarios.poison,
        "small-max-message": scenarios_topics.small_max_message,
        "missing-topic": scenarios_topics.missing_topic,
        "deleted-dlq": scenarios_topics.deleted_dlq,
        "one-key-writers": scenarios_topics.one_key_writers,
        "pg-terminate-backend": scenarios.pg_terminate,
        "leader-failover": scenarios_broker.leader_failover,
        "pg-restart-immediate": scenarios.pg_restart,
    }

    def record(name: str, fn: Callable[[], ScenarioResult]) -> None:
        result = timed(fn)
        result.name = name
        results.append(result)
        emit(result.line())

    wanted = [n for n in ORDER if n in names]
    needs_broker = [n for n in wanted if n in {"broker-kill-9", "network-faults"}]
    for name in wanted:
        if name in simple:
            record(name, lambda fn=simple[name]: fn(scale))  # type: ignore[misc]
        elif name == needs_broker[0]:
            try:
                with scenarios_broker.proxied_broker() as (broker, proxy):
                    for broker_name in needs_broker:
                        if broker_name == "broker-kill-9":
                            record(broker_name, lambda: scenarios_broker.broker_kill(scale, broker))
                        else:
                            record(broker_name, lambda: scenarios_broker.network_faults(scale, proxy, broker))
            except Exception as exc:  # noqa: BLE001 - the throw-away broker failed to start
                for broker_name in needs_broker:
                    if broker_name not in {r.name for r in results}:
                        failed = ScenarioResult(broker_name, notes=[f"error: {type(exc).__name__}: {exc}"])
                        results.append(failed)
                        emit(failed.line())
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run, print one line per scenario and a summary; 1 if anything failed."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="small counts (what the pytest version runs)")
    parser.add_argument("--only", nargs="+", choices=ORDER, help="run only these scenarios")
    parser.add_argument("--skip", nargs="+", choices=ORDER, default=[], help="skip these scenarios")
    parser.add_argument(
        "--delivery",
        choices=("at-least-once", "exactly-once"),
        default=os.environ.get(DELIVERY_ENV, "at-least-once"),
        help="the relays' delivery mode (exactly-once: any read_committed duplicate fails a scenario)",
    )
    args = parser.parse_args(argv)
    os.environ[DELIVERY_ENV] = args.delivery  # relay processes and the audit read it
    names = [n for n in (args.only or ORDER) if n not in args.skip]
    scale = SHORT if args.short else FULL
    started = time.monotonic()
    print(f"chaos suite ({scale.name}, {args.delivery}): {', '.join(names)}", flush=True)
    results = run(names, scale, lambda line: print(line, flush=True))
    failed = [r.name for r in results if not r.passed]
    print(
        f"{len(results) - len(failed)}/{len(results)} scenarios passed in {time.monotonic() - started:.0f}s"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
