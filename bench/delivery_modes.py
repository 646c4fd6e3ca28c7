"""``python -m bench.delivery_modes``: the cost of exactly-once, measured against at-least-once in ONE run.

For each round, both modes run back to back on the same database and broker, alternating which goes
first: a drain of a parked backlog (one relay) and sustained writes at each rate (one relay), with
commit-to-ack (the broker's LogAppendTime of the record) and commit-to-mark (the row marked published;
in exactly-once mode the record becomes visible to read_committed readers between those two).
The machine is shared: compare the modes within a run (ratios), not across runs. Results go to
``bench/results/<date>-delivery-modes.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import backlog, env, report
from bench.drain import run_drain
from bench.events import EventFactory
from bench.infra import ADMIN_URL, BOOTSTRAP, fresh_database
from bench.sustained import run_sustained

MODES = ("at-least-once", "exactly-once")
PARTITIONS = 6
KEYS = 10_000


def _config(mode: str) -> dict[str, Any]:
    return {"dlq_topic": None, "delivery": mode}


def _ms(run: dict[str, Any], field: str, stat: str) -> float | None:
    value = (run.get(field) or {}).get(stat)
    return None if value is None else float(value)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, write JSON and a Markdown table, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.delivery_modes", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="drain backlog size")
    parser.add_argument("--rates", default="1000,5000", help="sustained rates (events/s)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per sustained run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each runs both modes)")
    parser.add_argument("--out", type=Path, default=report.RESULTS_DIR)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    started = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    factory = EventFactory(KEYS)
    runs: list[dict[str, Any]] = []
    with fresh_database("pe_bench_modes") as url:
        engine = sa.create_engine(url)
        try:
            from payment_events.outbox.migrate import upgrade

            upgrade(engine)
            backlog.load_staging(engine, factory.batch(args.events), "bench.unused")
            for round_no in range(args.rounds):
                order = MODES if round_no % 2 == 0 else MODES[::-1]
                for mode in order:
                    print(f"[modes] round {round_no + 1}: drain {args.events:,} ({mode})", flush=True)
                    drain = run_drain(
                        engine,
                        url,
                        BOOTSTRAP,
                        instances=1,
                        relay_config=_config(mode),
                        partitions=PARTITIONS,
                        timeout=300.0,
                    )
                    runs.append({"round": round_no + 1, "mode": mode, "kind": "drain", **_slim(drain)})
                for rate in rates:
                    for mode in order:
                        print(f"[modes] round {round_no + 1}: sustained {rate:.0f}/s ({mode})", flush=True)
                        run = run_sustained(
                            engine,
                            url,
                            BOOTSTRAP,
                            rate=rate,
                            duration=args.duration,
                            instances=1,
                            relay_config=_config(mode),
                            partitions=PARTITIONS,
                            drain_timeout=30.0,
                        )
                        runs.append({"round": round_no + 1, "mode": mode, "kind": "sustained", **_slim(run)})
        finally:
            engine.dispose()
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": env.machine_record(ADMIN_URL, BOOTSTRAP),
        "load_average_at_start": load_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "plan": {"events": args.events, "rates": rates, "duration": args.duration, "rounds": args.rounds},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{results['date']}-delivery-modes"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = render(results)
    stem.with_suffix(".md").write_text(table)
    print(table)
    return 0


def _slim(run: dict[str, Any]) -> dict[str, Any]:
    drop = {"rss_timeline", "backlog_samples"}
    return {k: v for k, v in run.items() if k not in drop}


def render(results: dict[str, Any]) -> str:
    """The Markdown table: per round and mode, drain rate and latency percentiles, then ratios."""
    lines = [
        f"# Delivery modes, {results['date']} ({results['seconds']:.0f} s; load average "
        f"{results['load_average_at_start']} -> {results['load_average_at_end']}, shared 2-core machine)",
        "",
        "| round | mode | drain events/s | rate | achieved/s | ack p50 ms | ack p99 ms | mark p50 ms"
        " | mark p99 ms | drained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        if run["kind"] == "drain":
            lines.append(
                f"| {run['round']} | {run['mode']} | {run['events_per_second']} | drain | | | | | | "
                f"{run['finished']} |"
            )
        else:
            lines.append(
                f"| {run['round']} | {run['mode']} | | {run['target_rate']:.0f} | "
                f"{run['achieved_write_rate']} | {_ms(run, 'commit_to_ack_ms', 'p50')} | "
                f"{_ms(run, 'commit_to_ack_ms', 'p99')} | "
                f"{_ms(run, 'commit_to_marked_ms', 'p50')} | {_ms(run, 'commit_to_marked_ms', 'p99')} | "
                f"{run['drained_after_writers']} |"
            )
    lines += ["", "Ratios (exactly-once / at-least-once, same round):", ""]
    by = {(r["round"], r["mode"], r["kind"], r.get("target_rate")): r for r in results["runs"]}
    for (round_no, mode, kind, rate), run in sorted(by.items(), key=lambda kv: str(kv[0])):
        if mode != "exactly-once":
            continue
        base = by.get((round_no, "at-least-once", kind, rate))
        if base is None:
            continue
        if kind == "drain":
            ratio = (
                run["events_per_second"] / base["events_per_second"] if base["events_per_second"] else None
            )
            lines.append(
                f"- round {round_no} drain throughput: {ratio:.2f}" if ratio else f"- round {round_no}"
            )
        else:
            eo, alo = _ms(run, "commit_to_marked_ms", "p99"), _ms(base, "commit_to_marked_ms", "p99")
            if eo and alo:
                lines.append(
                    f"- round {round_no} at {rate:.0f}/s: commit-to-mark p99 {eo:.0f} ms vs {alo:.0f} ms"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
