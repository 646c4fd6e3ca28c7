"""Workload 2w (warm start): the relay runs idle on an empty, analysed outbox, then a backlog arrives.

What a fresh deployment (or an outbox that retention has emptied) sees after a broker outage: the relay
has claimed an empty table for a while (psycopg has prepared the claim, the server may cache a generic
plan), and then ``events`` rows are committed at once, with **no** ``VACUUM ANALYZE`` before the clock
starts and autovacuum off for the table (so it cannot analyse in the middle and make the run a matter
of luck). The statistics say the table is empty. Before issue 16 the claim was then planned as a bitmap
scan plus a sort of every pending row (500-800 ms per 2,000-row claim with 100,000 pending).

It runs in its own database (the main drains' published history would change the statistics) and
compares, interleaved in the same run, the shipped relay with the ``unpinned-claim`` patch (the claim as
it was before the fix, :func:`bench.claim_fix.unpin_claim`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from bench import backlog
from bench.drain import run_drain
from bench.infra import fresh_database

UNPINNED = "unpinned-claim"
WARM_SECONDS = 8.0
"""Idle time before the backlog arrives: the relay claims at least once a second (its poll interval),
so psycopg has prepared the claim (fifth execution) well before the release."""


def empty_and_analysed(engine: sa.Engine) -> float:
    """Delete every row, ``VACUUM ANALYZE`` (statistics of an empty outbox), autovacuum off."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM payment_events_outbox")
        conn.exec_driver_sql("ALTER TABLE payment_events_outbox SET (autovacuum_enabled = false)")
    backlog.vacuum_analyze(engine)
    return time.perf_counter() - started


def run_warm_start(
    events: Sequence[Any],
    bootstrap: str,
    *,
    relay_config: dict[str, Any],
    partitions: int,
    rounds: int,
    timeout: float,
    budget_allows: Any = None,
    warm_seconds: float = WARM_SECONDS,
) -> dict[str, Any]:
    """``rounds`` x (shipped, unpinned) drains of ``events`` (order alternating each round: A B, B A)."""
    from payment_events.outbox.migrate import upgrade

    out: dict[str, Any] = {"events": len(events), "warm_seconds": warm_seconds, "runs": []}
    with fresh_database("pe_bench_warm") as url:
        engine = sa.create_engine(url)
        try:
            upgrade(engine)
            out["load_seconds"] = round(backlog.load_staging(engine, events, "bench.unused"), 2)
            for i in range(rounds):
                order: list[str | None] = [None, UNPINNED] if i % 2 == 0 else [UNPINNED, None]
                for patch in order:
                    label = f"warm-start drain round {i + 1}, {patch or 'shipped'}"
                    if budget_allows is not None and not budget_allows(label):
                        continue
                    print(f"[bench] {label}", flush=True)
                    run = run_drain(
                        engine, url, bootstrap, instances=1, relay_config=relay_config,
                        partitions=partitions, patch=patch, timeout=timeout,
                        prepare=empty_and_analysed, warm_seconds=warm_seconds,
                    )
                    run["round"] = i + 1
                    out["runs"].append(run)
        finally:
            engine.dispose()
    return out
