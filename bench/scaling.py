"""Writer scaling (issue 16): step the number of writer processes and show where the ceiling is.

At each step (``--steps``, default 1 2 4 6 writers) one relay process (``bench.relay_proc``, defaults)
runs while N ``bench.writer_proc`` processes commit for ``--seconds`` (default 12). Reported per step:
the achieved write rate, the relay's publish rate (rows whose ``published_at`` falls in the window), the
backlog growth (least-squares slope of a 1 Hz pending count), insert-to-mark p50/p99 from the table
(``published_at - created_at``, one SQL query; ``--ack-latency`` adds the writers' commit-to-broker-ack by
reading the topic back, as the sustained runs do, at a few seconds of CPU a step) and the CPU of every
component (:mod:`bench.cpu`: PostgreSQL, broker, relay, writers, other, idle) over the window. The
component with the most CPU and the idle share say which physical limit the step reached.

Why closed loop: each writer commits transactions of ``--per-txn`` (10) events back to back, as fast as
it can. The question is not "is rate R sustained" (the sustained runs answer that) but "what does the
machine accept, and who saturates first": with a closed loop the offered load rises with each writer
until a resource (a core, PostgreSQL's commit path, the relay) pushes back, and the step's write rate *is*
that capacity. An open loop at a fixed high rate would only show lateness once the writers fall behind,
and a rate high enough to saturate 6 writers would hide what 1 or 2 can do. Several events per
transaction keep the writers' per-commit overhead (a round trip, a WAL flush) from being all they
measure, as in the sustained runs (at most 500 transactions/s there). The relay is not throttled:
when it falls behind, its publish rate below the write rate and the backlog growth show it.

``python -m bench.scaling [--steps 1 2 4 6] [--seconds 12]`` writes ``bench/results/<date>-scaling.json``
and ``.md``; ``python -m bench`` runs it too (``--skip scaling``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import backlog
from bench.cpu import CpuMeter, bottleneck, format_line
from bench.infra import create_topic, delete_topics
from bench.relays import RelayGroup, peak_rss_mb
from bench.stats import slope, summary_ms
from bench.sustained import BacklogSampler, commit_latencies, end_writers, read_writers, start_writers

DEFAULT_STEPS = (1, 2, 4, 6)
PER_TXN = 10
SATURATED_IDLE_SHARE = 0.05
"""A step whose idle time is below this share of the capacity ran the machine out of CPU."""

_WINDOW = sa.text(
    "SELECT count(*),"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)),"
    " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at))"
    " FROM payment_events_outbox WHERE state = 'published' AND topic = :topic"
    " AND published_at >= to_timestamp(:since) AND published_at < to_timestamp(:until)"
)


def published_in_window(engine: sa.Engine, topic: str, since: float, until: float) -> dict[str, Any]:
    """Rows of ``topic`` marked published between two wall-clock times, and their insert-to-mark p50/p99
    (ms, from the table: ``published_at - created_at``)."""
    with engine.connect() as conn:
        count, p50, p99 = conn.execute(_WINDOW, {"topic": topic, "since": since, "until": until}).one()
    return {
        "published": int(count),
        "insert_to_mark_p50_ms": round(float(p50) * 1000, 1) if p50 is not None else None,
        "insert_to_mark_p99_ms": round(float(p99) * 1000, 1) if p99 is not None else None,
    }


def verdict(step: dict[str, Any]) -> str:
    """What stopped this step, in words: machine saturated or not, relay keeping up or not."""
    cpu = step["cpu"]
    idle = cpu["components"]["idle"]["share_of_capacity"]
    kept_up = step["publish_rate"] >= 0.95 * step["achieved_write_rate"]
    machine = "machine saturated" if idle is not None and idle < SATURATED_IDLE_SHARE else "CPU to spare"
    relay = "relay kept up" if kept_up else "relay fell behind"
    return f"{machine} (idle {idle * 100:.0f}%), {relay}; most CPU: {bottleneck(cpu)}"


def run_step(
    engine: sa.Engine,
    database_url: str,
    bootstrap: str,
    *,
    writers: int,
    seconds: float,
    relay_config: dict[str, Any],
    partitions: int,
    per_txn: int = PER_TXN,
    ack_latency: bool = False,
) -> dict[str, Any]:
    """One step: ``writers`` closed-loop writers and one relay for ``seconds``; numbers and CPU."""
    vacuum_seconds = backlog.clear_pending(engine)
    config = {"message.timestamp.type": "LogAppendTime"} if ack_latency else None
    topic = create_topic(f"scale{writers}w", partitions, config)
    workdir = Path(tempfile.mkdtemp(prefix="pe-bench-scaling-"))
    group = RelayGroup(database_url, bootstrap, 1, relay_config)
    procs: list[subprocess.Popen[str]] = []
    sampler = BacklogSampler(engine)
    meter = CpuMeter()
    try:
        group.start()
        group.wait_balanced(engine, relay_config.get("shard_count", 64))
        start_at = start_writers(
            procs, database_url, topic=topic, rate=0.0, per_txn=per_txn, duration=seconds, workdir=workdir,
            count=writers, record=ack_latency,
        )
        meter.relay_pids, meter.writer_pids = group.pids, [p.pid for p in procs]
        meter.start()
        sampler.t0 = start_at
        sampler.start()
        time.sleep(max(0.0, start_at + seconds - time.time()))
        meter.stop()  # the writing window, while every process still runs
        window_end = time.time()
        sampler.stopping.set()
        for proc in procs:
            proc.wait(timeout=seconds + 60)
        sampler.join(5)
        summaries = group.stop()
    finally:
        end_writers(procs)
        if not group.summaries:
            group.stop()
    results = read_writers(workdir, writers)
    written = sum(int(r["events"]) for r in results)
    writer_seconds = max(float(r["seconds"]) for r in results)
    achieved = written / writer_seconds if writer_seconds > 0 else 0.0
    window = published_in_window(engine, topic, start_at, window_end)
    step: dict[str, Any] = {
        "writers": writers,
        "seconds": seconds,
        "events_per_transaction": per_txn,
        "events_written": written,
        "transactions": sum(int(r["transactions"]) for r in results),
        "achieved_write_rate": round(achieved, 1),
        "write_rate_by_writer": [round(float(r["achieved_rate"]), 1) for r in results],
        "published_in_window": window["published"],
        "publish_rate": round(window["published"] / (window_end - start_at), 1),
        "insert_to_mark_p50_ms": window["insert_to_mark_p50_ms"],
        "insert_to_mark_p99_ms": window["insert_to_mark_p99_ms"],
        "backlog_growth_per_second": round(
            slope([(t, float(n)) for t, n in sampler.points if t >= min(2.0, seconds * 0.2)]), 1
        ),
        "backlog_at_end": sampler.points[-1][1] if sampler.points else None,
        "relay_cpu_seconds": [s.get("cpu_seconds") for s in summaries],
        "relay_mean_batch": [s.get("mean_batch") for s in summaries],
        "relay_peak_rss_mb": peak_rss_mb(summaries),
        "cpu": meter.result(events=written),
        "vacuum_before_seconds": round(vacuum_seconds, 2),
    }
    if ack_latency:
        _, to_ack, _ = commit_latencies(engine, bootstrap, topic, results)
        step["commit_to_ack_ms"] = summary_ms(to_ack)
    delete_topics([topic])
    step["verdict"] = verdict(step)
    return step


def run_scaling(
    engine: sa.Engine,
    database_url: str,
    bootstrap: str,
    *,
    steps: Sequence[int] = DEFAULT_STEPS,
    seconds: float = 12.0,
    relay_config: dict[str, Any],
    partitions: int,
    per_txn: int = PER_TXN,
    ack_latency: bool = False,
) -> dict[str, Any]:
    """Every step in order, over one outbox (its history kept; pending rows cleared between steps)."""
    out: dict[str, Any] = {"per_txn": per_txn, "seconds": seconds, "closed_loop": True, "steps": []}
    for writers in steps:
        print(f"[bench] scaling: {writers} writer(s), closed loop, {seconds:.0f} s", flush=True)
        step = run_step(
            engine, database_url, bootstrap, writers=writers, seconds=seconds, relay_config=relay_config,
            partitions=partitions, per_txn=per_txn, ack_latency=ack_latency,
        )
        print(f"[bench] scaling: {writers} writer(s): write {step['achieved_write_rate']:,.0f}/s, publish "
              f"{step['publish_rate']:,.0f}/s; {step['verdict']}", flush=True)
        out["steps"].append(step)
    return out


def markdown_lines(scaling: dict[str, Any]) -> list[str]:
    """The scaling table (one row a step) and each step's CPU line."""
    lines = [
        f"## Writer scaling (closed loop, {scaling['per_txn']} events a transaction, "
        f"{scaling['seconds']:.0f} s a step, 1 relay)",
        "",
        "| Writers | Write rate | Publish rate | Backlog growth | Insert->mark p50/p99 | PostgreSQL | Relay "
        "| Broker | Writers | Other | Idle | Verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in scaling["steps"]:
        parts = step["cpu"]["components"]
        cells = [
            f"{parts[n]['cores_busy']:.2f} cores"
            + (f", {parts[n]['us_per_event']:,.0f} us/ev" if parts[n]["us_per_event"] is not None else "")
            for n in ("postgresql", "relay", "broker", "writers", "other")
        ]
        cells.append(f"{parts['idle']['share_of_capacity'] * 100:.0f}%")
        lines.append(
            f"| {step['writers']} | {step['achieved_write_rate']:,.0f}/s | {step['publish_rate']:,.0f}/s | "
            f"{step['backlog_growth_per_second']:+,.0f}/s | {step['insert_to_mark_p50_ms']}/"
            f"{step['insert_to_mark_p99_ms']} ms | " + " | ".join(cells) + f" | {step['verdict']} |"
        )
    lines.append("")
    lines += [f"* {s['writers']} writer(s): {format_line(s['cpu'])}" for s in scaling["steps"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the steps in a fresh database; write ``<date>-scaling.json`` and ``.md``."""
    from bench import env
    from bench.events import EventFactory
    from bench.infra import ADMIN_URL, BOOTSTRAP, fresh_database
    from bench.report import RESULTS_DIR
    from payment_events.outbox.migrate import upgrade

    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="writer counts")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per step")
    parser.add_argument("--per-txn", type=int, default=PER_TXN, help="events per transaction")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--history", type=int, default=10_000, help="published rows in the outbox first")
    parser.add_argument("--ack-latency", action="store_true", help="also commit->ack (reads the topic back)")
    parser.add_argument("--no-services", action="store_true", help="do not call scripts/services up")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not args.no_services:
        env.services_up()
    started = datetime.now(UTC)
    machine = env.machine_record(ADMIN_URL, BOOTSTRAP)
    with fresh_database() as url:
        engine = sa.create_engine(url)
        try:
            upgrade(engine)
            backlog.load_staging(engine, EventFactory(2000).batch(min(args.history, 20_000)), "bench.unused")
            backlog.seed_history(engine, args.history)
            scaling = run_scaling(
                engine, url, BOOTSTRAP, steps=args.steps, seconds=args.seconds,
                relay_config={"dlq_topic": None}, partitions=args.partitions, per_txn=args.per_txn,
                ack_latency=args.ack_latency,
            )
        finally:
            engine.dispose()
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"), "machine": machine, "scaling": scaling
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{started:%Y-%m-%d}-scaling"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    m = results["machine"]
    text = "\n".join([
        f"# Writer scaling, {started:%Y-%m-%d}", "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores; load average at start "
        f"{m['load_average_at_start']}.", "", *markdown_lines(scaling), "",
    ])
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"[bench] wrote {stem}.json and {stem}.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
