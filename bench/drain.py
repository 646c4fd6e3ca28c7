"""Workload 2 and 4 (drain): time the real relay to publish and mark a backlog of pending events.

The backlog (written by the real ``OutboxPublisher``, parked by :mod:`bench.backlog`) is released in
one commit while the relay instances are already running with their shards balanced. The clock starts
just before that COMMIT and stops at the last ``published_at`` (the relay's own clock when it marked
the last batch; same machine), cross-checked by polling the pending count every 50 ms.

``cpu``: the CPU of PostgreSQL, the broker, the relay(s) and the rest of the machine from just before
the release's COMMIT (the copy itself is not counted) to the moment the backlog was seen empty
(:mod:`bench.cpu`, 1 Hz series included): which physical limit stops the drain, and how close the
relay is to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import backlog
from bench.cpu import CpuMeter
from bench.infra import create_topic, delete_topics
from bench.relays import RelayGroup, peak_rss_mb


def run_drain(
    engine: sa.Engine,
    database_url: str,
    bootstrap: str,
    *,
    instances: int,
    relay_config: dict[str, Any],
    partitions: int,
    limit: int | None = None,
    profile: Path | None = None,
    patch: str | None = None,
    timeout: float = 300.0,
    prepare: Callable[[sa.Engine], float] = backlog.clear_pending,
    warm_seconds: float = 0.0,
) -> dict[str, Any]:
    """Drain the parked backlog (or its first ``limit`` rows) with ``instances`` relays; return numbers.

    ``prepare`` readies the outbox first (default: delete what earlier runs left pending, ``VACUUM
    ANALYZE``); ``warm_seconds``: how long the relays run idle, claiming an empty outbox (and so preparing
    their claim statement), before the backlog is released. A drain that does not finish within
    ``timeout`` seconds is reported with the rate it reached."""
    vacuum_seconds = prepare(engine)
    topic = create_topic(f"drain{instances}", partitions)
    group = RelayGroup(database_url, bootstrap, instances, relay_config, profile=profile, patch=patch)
    summaries: list[dict[str, Any]] = []
    try:
        group.start()
        balance_seconds = group.wait_balanced(engine, relay_config.get("shard_count", 64))
        time.sleep(warm_seconds)
        meter = CpuMeter(relay_pids=group.pids)
        committed_at, rows = backlog.release(engine, topic, limit, before_commit=meter.start)
        seen_empty_at = backlog.wait_drained(engine, timeout)
        meter.stop()  # before the relays stop: their pids are still readable
        time.sleep(0.2)
        summaries = group.stop()
    finally:
        if group.summaries == [] and group._procs:
            group.stop()
        delete_topics([topic])
    first, last, published = backlog.published_window(engine, topic)
    cpu = meter.result(events=published)
    last_epoch = backlog.as_epoch(last)
    first_epoch = backlog.as_epoch(first)
    finished = seen_empty_at is not None and published == rows
    seconds = (last_epoch - committed_at) if finished else timeout
    steady = last_epoch - first_epoch
    return {
        "instances": instances,
        "patch": patch,
        "events": rows,
        "published": published,
        "finished": finished,
        "seconds": round(seconds, 3),
        "events_per_second": round(published / seconds, 1) if seconds > 0 else math.nan,
        "first_to_last_mark_seconds": round(steady, 3),
        "polled_seconds": round(seen_empty_at - committed_at, 3) if seen_empty_at else None,
        "shard_balance_seconds": round(balance_seconds, 2),
        "peak_rss_mb": peak_rss_mb(summaries),
        "idle_rss_mb": max(group.idle_rss_mb, default=0.0),
        "rss_timeline": group.rss_timeline,
        "relay_cpu_seconds": [s.get("cpu_seconds") for s in summaries],
        "batches": [s.get("batches") for s in summaries],
        "mean_batch": [s.get("mean_batch") for s in summaries],
        "published_by_instance": [s.get("published") for s in summaries],
        "exit_codes": [s.get("exit_code") for s in summaries],
        "profiled": profile is not None,
        "vacuum_before_seconds": round(vacuum_seconds, 2),
        "cpu": cpu,
    }
