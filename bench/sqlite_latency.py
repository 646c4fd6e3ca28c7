"""Workload 3s: commit-to-ack latency on the embedded SQLite outbox at a fixed rate.

The same method as the sustained workload (:mod:`bench.sustained`): ``bench.writer_proc`` writers commit
open loop with the real ``OutboxPublisher`` into an SQLite file, a ``bench.relay_proc`` relay publishes to
a ``LogAppendTime`` topic, and commit-to-ack is the broker's append time minus the writer's wall-clock
time right after ``COMMIT``. Writers and relay are separate processes (the hardest case for a wake-up:
nothing in-process can be shared).

Variants, interleaved round by round (A B, B A, ...):

* ``polled``: the relay as ``make run`` ran it before issue 16: no wake-up on SQLite, a poll every 50 ms
  (the demo's setting; ``RelayConfig`` defaults to 1 s).
* ``shipped``: ``RelayConfig`` defaults: the relay watches ``PRAGMA data_version``
  (:class:`payment_events.relay.wakeup.SqliteChangeWaker`).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.infra import create_topic, delete_topics
from bench.relays import RelayGroup, peak_rss_mb
from bench.stats import summary_ms
from bench.sustained import (
    TXN_RATE_CAP,
    WRITERS,
    _read_append_times,
    end_writers,
    read_writers,
    start_writers,
    warm_up,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "polled": {"listen": False, "poll_interval_seconds": 0.05},
    "shipped": {},
}


def _one(bootstrap: str, variant: str, rate: float, duration: float, partitions: int) -> dict[str, Any]:
    from payment_events.outbox.migrate import upgrade

    workdir = Path(tempfile.mkdtemp(prefix="pe-bench-sqlite-"))
    url = f"sqlite:///{workdir / 'outbox.db'}"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = WAL")  # persistent: the writers use it too
    topic = create_topic(
        f"sqlite{int(rate)}{variant}", partitions, {"message.timestamp.type": "LogAppendTime"}
    )
    config = {"dlq_topic": None, **VARIANTS[variant]}
    per_txn = max(1, math.ceil(rate / TXN_RATE_CAP))
    group = RelayGroup(url, bootstrap, 1, config)
    writers: list[Any] = []
    try:
        group.start()
        warm_up(engine, topic)
        start_writers(
            writers, url, topic=topic, rate=rate, per_txn=per_txn, duration=duration, workdir=workdir
        )
        for proc in writers:
            proc.wait(timeout=duration * 3 + 60)
        time.sleep(2.0)
        summaries = group.stop()
    finally:
        end_writers(writers)
        if not group.summaries:
            group.stop()
        engine.dispose()
    results = read_writers(workdir, WRITERS)
    commit_time: dict[str, float] = {}
    for result in results:
        commit_time.update(zip(result["event_ids"], result["commit_times"], strict=True))
    appended = _read_append_times(bootstrap, topic, len(commit_time) + 50)
    delete_topics([topic])
    to_ack = [appended[e] - t for e, t in commit_time.items() if e in appended]
    writer_seconds = max(r["seconds"] for r in results)
    return {
        "variant": variant,
        "relay_overrides": VARIANTS[variant],
        "target_rate": rate,
        "duration_seconds": duration,
        "events_per_transaction": per_txn,
        "events_written": len(commit_time),
        "events_acked": len(to_ack),
        "achieved_write_rate": round(len(commit_time) / writer_seconds, 1) if writer_seconds > 0 else 0.0,
        "writer_late_transactions": sum(r["late_transactions"] for r in results),
        "commit_to_ack_ms": summary_ms(to_ack),
        "relay_cpu_seconds": [s.get("cpu_seconds") for s in summaries],
        "relay_seconds": [
            round(s["stopped_at"] - s["started_at"], 1) for s in summaries if s.get("stopped_at")
        ],
        "peak_rss_mb": peak_rss_mb(summaries),
        "mean_batch": [s.get("mean_batch") for s in summaries],
    }


def run_sqlite_latency(
    bootstrap: str, *, rate: float, duration: float, rounds: int, partitions: int, budget_allows: Any = None
) -> dict[str, Any]:
    """``rounds`` x (polled, shipped), alternating the order each round."""
    out: dict[str, Any] = {"rate": rate, "duration_seconds": duration, "runs": []}
    for i in range(rounds):
        order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            label = f"SQLite latency round {i + 1}, {variant}, {rate:,.0f}/s, {duration:.0f} s"
            if budget_allows is not None and not budget_allows(label):
                continue
            print(f"[bench] {label}", flush=True)
            run = _one(bootstrap, variant, rate, duration, partitions)
            run["round"] = i + 1
            out["runs"].append(run)
    return out
