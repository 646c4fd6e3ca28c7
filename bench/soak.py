"""Soak (issue 16): one relay under a fixed sustained load for minutes; memory, backlog and table over time.

``python -m bench.soak [--minutes 10] [--rate 2000]``: two ``bench.writer_proc`` processes commit
``--rate`` events/s in total, open loop (as the sustained runs; long runs give each use of a pooled,
pre-encoded event a fresh id, so the writers' memory stays small), into a fresh database, while one relay
process (``bench.relay_proc``, ``RelayConfig`` defaults: the retention purge included) publishes. Every
``--interval`` seconds (5) the harness records:

* the relay's RSS (``VmRSS``, psutil),
* the backlog (pending rows) and the rows marked published in that interval (from ``published_at``, read
  one second behind so that marks still being committed are not missed) with their insert-to-mark
  p50/p99,
* the outbox's size: ``pg_total_relation_size``, the heap, and ``pg_indexes_size``,
* the cores each component kept busy (:mod:`bench.cpu`).

It writes ``bench/results/<date>-soak.json`` (settings, summary, the series), ``<date>-soak.csv`` (the
series, one row per sample, for plotting) and ``<date>-soak.md`` (the summary: start/end/max RSS and the
RSS slope per minute by least squares over the second half, backlog max and slope, table growth).

Retention: the relay's defaults purge published rows older than ``retention_seconds`` (7 days) every
``purge_interval_seconds`` (60 s). The purge therefore runs during a 10-minute soak but finds nothing old
enough: the table grows by design. ``--retention-seconds 120`` makes a soak exercise the purge and
shows whether the table size levels off; the summary says which it was.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import backlog
from bench.cpu import COMPONENTS, CpuMeter, series_point
from bench.relays import RelayGroup
from bench.scaling import published_in_window
from bench.stats import slope
from bench.sustained import TXN_RATE_CAP, WRITERS, end_writers, start_writers

MARK_LAG_SECONDS = 1.0
_SIZES = sa.text(
    "SELECT pg_total_relation_size('payment_events_outbox'), pg_relation_size('payment_events_outbox'),"
    " pg_indexes_size('payment_events_outbox')"
)
CSV_FIELDS = (
    "t", "relay_rss_mb", "backlog", "published", "published_total", "publish_rate", "table_total_mb",
    "table_heap_mb", "indexes_mb", "insert_to_mark_p50_ms", "insert_to_mark_p99_ms",
    *(f"cpu_{name}" for name in COMPONENTS),
)


def _second_half(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    if not points:
        return []
    middle = points[0][0] + (points[-1][0] - points[0][0]) / 2
    return [p for p in points if p[0] >= middle]


def summarize(series: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The soak's summary from its series (pure): relay RSS start/end/max and its least-squares slope per
    minute over the second half (the first half holds start-up growth); backlog max and slope per second
    (second half); table size at start and end and its growth per minute (whole run); events published, and
    the mean publish rate between the first and the last sample."""
    if not series:
        return {}
    rss = [(float(p["t"]), float(p["relay_rss_mb"])) for p in series]
    pending = [(float(p["t"]), float(p["backlog"])) for p in series]
    table = [(float(p["t"]), float(p["table_total_mb"])) for p in series]
    seconds = series[-1]["t"] - series[0]["t"]
    published = int(series[-1]["published_total"])
    sampled = published - int(series[0]["published_total"])  # over the sampled intervals (after the first)
    return {
        "samples": len(series),
        "seconds": round(seconds, 1),
        "relay_rss_mb": {
            "start": rss[0][1],
            "end": rss[-1][1],
            "max": max(v for _, v in rss),
            "slope_mb_per_minute_second_half": round(slope(_second_half(rss)) * 60, 3),
        },
        "backlog": {
            "max": int(max(v for _, v in pending)),
            "end": int(pending[-1][1]),
            "slope_per_second_second_half": round(slope(_second_half(pending)), 2),
        },
        "table_total_mb": {
            "start": table[0][1],
            "end": table[-1][1],
            "growth_mb_per_minute": round(slope(table) * 60, 2),
        },
        "indexes_mb": {"start": series[0]["indexes_mb"], "end": series[-1]["indexes_mb"]},
        "published_total": published,
        "mean_publish_rate": round(sampled / seconds, 1) if seconds > 0 else math.nan,
    }


class _Probe:
    """One sample of everything the soak records, on one connection."""

    def __init__(self, engine: sa.Engine, topic: str, relay_pid: int, meter: CpuMeter) -> None:
        import psutil

        self.engine, self.topic, self.meter = engine, topic, meter
        self.relay = psutil.Process(relay_pid)
        self.published_total = 0
        self.last_wall = time.time() - MARK_LAG_SECONDS
        self.previous = meter.sample()
        self.t0 = self.previous.wall

    def sample(self) -> dict[str, Any]:
        now = time.time()
        cpu = self.meter.sample()
        until = now - MARK_LAG_SECONDS
        window = published_in_window(self.engine, self.topic, self.last_wall, until)
        interval = until - self.last_wall
        self.last_wall = until
        self.published_total += window["published"]
        with self.engine.connect() as conn:
            total, heap, indexes = conn.execute(_SIZES).one()
        point: dict[str, Any] = {
            "t": round(now - self.t0, 1),
            "relay_rss_mb": round(self.relay.memory_info().rss / 2**20, 1),
            "backlog": backlog.pending(self.engine),
            "published": window["published"],
            "published_total": self.published_total,
            "publish_rate": round(window["published"] / interval, 1) if interval > 0 else None,
            "table_total_mb": round(int(total) / 2**20, 2),
            "table_heap_mb": round(int(heap) / 2**20, 2),
            "indexes_mb": round(int(indexes) / 2**20, 2),
            "insert_to_mark_p50_ms": window["insert_to_mark_p50_ms"],
            "insert_to_mark_p99_ms": window["insert_to_mark_p99_ms"],
        }
        point.update({f"cpu_{k}": v for k, v in series_point(self.previous, cpu).items() if k != "busy"})
        self.previous = cpu
        return point


def run_soak(
    engine: sa.Engine,
    database_url: str,
    bootstrap: str,
    *,
    minutes: float,
    rate: float,
    relay_config: dict[str, Any],
    partitions: int,
    interval: float = 5.0,
) -> dict[str, Any]:
    """The soak over an upgraded (empty) outbox; returns settings, summary, whole-run CPU and the series."""
    from bench.infra import create_topic, delete_topics
    from payment_events.relay.settings import RelayConfig

    duration = minutes * 60.0
    topic = create_topic("soak", partitions)
    workdir = Path(tempfile.mkdtemp(prefix="pe-bench-soak-"))
    per_txn = max(1, math.ceil(rate / TXN_RATE_CAP))
    group = RelayGroup(database_url, bootstrap, 1, relay_config)
    writers: list[subprocess.Popen[str]] = []
    meter = CpuMeter(interval=None)
    series: list[dict[str, Any]] = []
    try:
        group.start()
        group.wait_balanced(engine, relay_config.get("shard_count", 64))
        start_at = start_writers(
            writers, database_url, topic=topic, rate=rate, per_txn=per_txn, duration=duration,
            workdir=workdir, record=False,
        )
        meter.relay_pids, meter.writer_pids = group.pids, [w.pid for w in writers]
        probe = _Probe(engine, topic, group.pids[0], meter)
        next_at = start_at + interval
        while next_at <= start_at + duration + 1e-6:
            time.sleep(max(0.0, next_at - time.time()))
            point = probe.sample()
            series.append(point)
            print(f"[bench] soak t={point['t']:.0f}s rss={point['relay_rss_mb']} MB"
                  f" backlog={point['backlog']} table={point['table_total_mb']} MB"
                  f" published={point['published_total']:,}", flush=True)
            next_at += interval
        for proc in writers:
            # Open-loop writers that fell behind would keep writing their late transactions: the window
            # is over, so they are stopped (end_writers) after a short grace instead of failing the soak.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        summaries = group.stop()
    finally:
        end_writers(writers)
        if not group.summaries:
            group.stop()
        delete_topics([topic])
    effective = RelayConfig(**relay_config)
    return {
        "settings": {
            "minutes": minutes,
            "rate": rate,
            "writers": WRITERS,
            "events_per_transaction": per_txn,
            "interval_seconds": interval,
            "partitions": partitions,
            "relay_overrides": relay_config,
            "retention_seconds": effective.retention_seconds,
            "purge_interval_seconds": effective.purge_interval_seconds,
        },
        "summary": summarize(series),
        "cpu": meter.result(events=probe.published_total) if series else None,
        "relay_summary": {k: v for k, v in (summaries[0] if summaries else {}).items()
                          if k not in ("commit_to_mark_seconds", "batch_log")},
        "series": series,
    }


def purge_note(settings: dict[str, Any]) -> str:
    """Whether the retention purge could delete anything during the soak, in words."""
    retention, every = settings["retention_seconds"], settings["purge_interval_seconds"]
    if retention <= 0:
        return "Retention purge: off (retention_seconds = 0)."
    if retention >= settings["minutes"] * 60:
        return (f"Retention purge: on (every {every:.0f} s, retention {retention:,.0f} s), but no row became "
                "old enough to be deleted during the soak: the table grows by design.")
    return f"Retention purge: on and exercised (every {every:.0f} s, retention {retention:,.0f} s)."


def markdown(results: dict[str, Any]) -> str:
    """The soak's summary table."""
    s, st = results["summary"], results["settings"]
    rss, bl, table = s["relay_rss_mb"], s["backlog"], s["table_total_mb"]
    lines = [
        f"# Soak, {results['started_at'][:10]}: {st['minutes']:g} min at {st['rate']:,.0f} events/s, 1 relay",
        "",
        f"Machine: {results['machine']['cpu_model']}, {results['machine']['logical_cores']} logical cores; "
        f"load average at start {results['machine']['load_average_at_start']}. "
        f"{purge_note(st)} Samples every {st['interval_seconds']:g} s; the series is in the .json and .csv.",
        "",
        "| Measure | Start | End | Max | Slope |",
        "|---|---|---|---|---|",
        f"| Relay RSS (MB) | {rss['start']} | {rss['end']} | {rss['max']} | "
        f"{rss['slope_mb_per_minute_second_half']:+} MB/min (second half) |",
        f"| Backlog (pending rows) | {results['series'][0]['backlog']} | {bl['end']} | {bl['max']} | "
        f"{bl['slope_per_second_second_half']:+}/s (second half) |",
        f"| Outbox table + indexes (MB) | {table['start']} | {table['end']} | | "
        f"{table['growth_mb_per_minute']:+} MB/min |",
        f"| Indexes (MB) | {s['indexes_mb']['start']} | {s['indexes_mb']['end']} | | |",
        "",
        f"Published {s['published_total']:,} events; {s['mean_publish_rate']:,.0f}/s between the first and "
        f"the last sample ({s['seconds']:.0f} s).",
    ]
    if results.get("cpu"):
        from bench.cpu import format_line

        lines += ["", f"CPU over the soak: {format_line(results['cpu'])}."]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], directory: Path, stem: str) -> list[Path]:
    """``<stem>.json``, ``<stem>.csv`` and ``<stem>.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.{ext}" for ext in ("json", "csv", "md")]
    paths[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    with paths[1].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results["series"])
    paths[2].write_text(markdown(results))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Run the soak in a fresh database and write its files."""
    from bench import env
    from bench.infra import ADMIN_URL, BOOTSTRAP, fresh_database
    from bench.report import RESULTS_DIR
    from payment_events.outbox.migrate import upgrade

    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second, both writers together")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--retention-seconds", type=float, default=None,
                        help="RelayConfig.retention_seconds (default: the relay's own default)")
    parser.add_argument("--no-services", action="store_true", help="do not call scripts/services up")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--tag", default="", help="appended to the file names (<date>-soak-<tag>.*)")
    args = parser.parse_args(argv)
    if not args.no_services:
        env.services_up()
    relay_config: dict[str, Any] = {"dlq_topic": None}
    if args.retention_seconds is not None:
        relay_config["retention_seconds"] = args.retention_seconds
    started = datetime.now(UTC)
    machine = env.machine_record(ADMIN_URL, BOOTSTRAP)
    with fresh_database() as url:
        engine = sa.create_engine(url)
        try:
            upgrade(engine)
            soak = run_soak(
                engine, url, BOOTSTRAP, minutes=args.minutes, rate=args.rate, relay_config=relay_config,
                partitions=args.partitions, interval=args.interval,
            )
        finally:
            engine.dispose()
    results = {"started_at": started.isoformat(timespec="seconds"), "machine": machine, **soak}
    stem = f"{started:%Y-%m-%d}-soak" + (f"-{args.tag}" if args.tag else "")
    paths = write(results, args.out, stem)
    print(paths[2].read_text())
    print("[bench] wrote " + ", ".join(str(p) for p in paths), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
