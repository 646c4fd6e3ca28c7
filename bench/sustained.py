"""Workload 3 and 4 (sustained): writers commit at a fixed rate while the relay runs; measure the
commit-to-ack latency and whether the backlog grows.

* Writers: ``bench.writer_proc`` processes (2 by default), open loop, events encoded in advance.
* Relays: ``bench.relay_proc`` processes, started first and given time to balance their shards.
* Latency, two ways, both from the writer's wall-clock time right after ``COMMIT`` returned:
  - commit -> broker ack: the topic uses ``message.timestamp.type=LogAppendTime``, so every message
    carries the instant the broker appended it (ms resolution); with ``acks=all`` on this single broker the
    ack is sent right after the append. The topic is read back after the run and matched by ``ce_id``.
  - commit -> marked published: the row's ``published_at`` (the relay's clock when it resolved the batch).
* Backlog: ``count(*) WHERE state = 'pending'`` once a second; the growth is the least-squares slope over
  the run after a short warm-up. After the writers stop, the relay gets ``drain_timeout`` seconds (10) to
  empty the backlog; latencies are computed over the events published by then.
* CPU (``cpu``, :mod:`bench.cpu`): PostgreSQL (every server process), the broker, the relays, the writers
  and the rest of the machine over the writing window (``duration`` s from the common start), per event
  over the events written in that window (the achieved rate times the window).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import backlog
from bench.breakdown import cycles_from, latency_breakdown
from bench.cpu import CpuMeter
from bench.env import ROOT
from bench.infra import create_topic, delete_topics
from bench.relays import RelayGroup, peak_rss_mb
from bench.stats import slope, summary_ms

WRITERS = 2
TXN_RATE_CAP = 500.0
"""Transactions per second over all writers at most: above it, transactions carry several events
(5,000 events/s = 500 transactions of 10 events). One Python writer process commits ~900 single-event
transactions/s on this machine when alone, ~350 each when two share the cores with PostgreSQL."""


def _read_append_times(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> dict[str, float]:
    """``ce_id`` -> broker append time (Unix seconds) of every message in ``topic`` (first copy wins)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{os.getpid()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "log_level": 3,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        remaining = sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions
        )
        consumer.assign(parts)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while remaining > 0 and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is not None:
                    continue
                remaining -= 1
                ce_id: Any = None
                headers: list[tuple[str, Any]] = list(msg.headers() or [])  # type: ignore[arg-type]
                for name, value in headers:
                    if name == "ce_id":
                        ce_id = value
                        break
                if ce_id is None:
                    continue
                key = ce_id.decode() if isinstance(ce_id, bytes) else str(ce_id)
                _, ts = msg.timestamp()
                if key not in seen:
                    seen[key] = ts / 1000.0
        return seen
    finally:
        consumer.close()


def _published_at(engine: sa.Engine, topic: str) -> dict[str, float]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT event_id, extract(epoch from published_at)::float8 FROM payment_events_outbox"
                " WHERE state = 'published' AND topic = :topic"
            ),
            {"topic": topic},
        ).all()
    return {str(event_id): float(ts) for event_id, ts in rows}


_BACKENDS = sa.text(
    "SELECT pid, application_name FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def _cpu_seconds(pid: int) -> float | None:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


class BacklogSampler(threading.Thread):
    """Once a second: the pending count, and the CPU time of every PostgreSQL backend connected to the
    run's database (the relays' and the writers' sessions; not this sampler's, not other databases'
    on a shared server, not the server's background processes)."""

    def __init__(self, engine: sa.Engine, interval: float = 1.0) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        self.engine = engine
        self.interval = interval
        self.points: list[tuple[float, int]] = []
        self.stopping = threading.Event()
        self.t0 = time.time()
        self.cpu_first: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}
        self.relay_pids: set[int] = set()
        """Backends whose application_name says they are the relay's ("payment-events ...")."""

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                with self.engine.connect() as conn:
                    backends = conn.execute(_BACKENDS).all()
                pids = [int(pid) for pid, _ in backends]
                relay = (int(pid) for pid, name in backends if str(name).startswith("payment-events"))
                self.relay_pids.update(relay)
                self._sample_cpu(pids)
                self.points.append((time.time() - self.t0, backlog.pending(self.engine)))
            self.stopping.wait(self.interval)

    def _sample_cpu(self, pids: list[int]) -> None:
        for pid in pids:
            seconds = _cpu_seconds(pid)
            if seconds is None:
                continue
            # A backend seen at the first sample counts from there; one that appeared later from zero.
            self.cpu_first.setdefault(pid, seconds if not self.points else 0.0)
            self.cpu_last[pid] = seconds

    def backend_cpu_seconds(self, role: str = "all") -> float:
        """CPU seconds the run's backends used between the first and the last sample; ``role``: "all",
        "relay" (the relay's sessions) or "writers" (every other session of the run's database)."""
        return sum(
            self.cpu_last[pid] - self.cpu_first[pid]
            for pid in self.cpu_last
            if role == "all" or (pid in self.relay_pids) == (role == "relay")
        )


def _per_event_us(sampler: BacklogSampler, rate: float, role: str = "all") -> float | None:
    """Backend CPU per event: CPU between the first and last sample over the events written meanwhile
    (the writers' achieved rate times that window)."""
    if len(sampler.points) < 2 or rate <= 0:
        return None
    window = sampler.points[-1][0] - sampler.points[0][0]
    return round(sampler.backend_cpu_seconds(role) / (rate * window) * 1e6, 1) if window > 0 else None


def start_writers(
    writers: list[subprocess.Popen[str]],
    database_url: str,
    *,
    topic: str,
    rate: float,
    per_txn: int,
    duration: float,
    workdir: Path,
    count: int = WRITERS,
    record: bool = True,
) -> float:
    """Spawn ``count`` writers sharing ``rate`` (0: each writes as fast as it can, closed loop), appended
    to ``writers``; wait until all are ready, start them together at the returned wall-clock time
    (already reached when this returns). Writer ``i`` writes its results to ``workdir/writer-<i>.json``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for i in range(count):
        writers.append(
            subprocess.Popen(
                [
                    sys.executable, "-m", "bench.writer_proc",
                    "--url", database_url, "--topic", topic,
                    "--rate", str(rate / count), "--per-txn", str(per_txn),
                    "--duration", str(duration),
                    "--out", str(workdir / f"writer-{i}.json"),
                    *([] if record else ["--no-record"]),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in writers:  # each writer builds its events and connects, then says "ready"
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a writer failed to start (said {line!r})")
    start_at = time.time() + 0.3
    for proc in writers:
        assert proc.stdin is not None
        proc.stdin.write(f"{start_at}\n")
        proc.stdin.close()
    wait = start_at - time.time()
    if wait > 0:
        time.sleep(wait)
    return start_at


def end_writers(writers: list[subprocess.Popen[str]]) -> None:
    """Kill writers still running (after an error) and close their pipes."""
    for proc in writers:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def read_writers(workdir: Path, count: int) -> list[dict[str, Any]]:
    """The writers' result files."""
    return [json.loads((workdir / f"writer-{i}.json").read_text()) for i in range(count)]


def commit_latencies(
    engine: sa.Engine,
    bootstrap: str,
    topic: str,
    results: list[dict[str, Any]],
    appended_out: dict[str, float] | None = None,
) -> tuple[dict[str, float], list[float], list[float]]:
    """(event id -> commit time, commit -> broker append seconds, commit -> marked seconds) of every event
    the writers recorded: the topic is read back (LogAppendTime) and the rows' ``published_at`` read.
    ``appended_out`` receives event id -> append time (for :mod:`bench.breakdown`)."""
    commit_time: dict[str, float] = {}
    for result in results:
        commit_time.update(zip(result["event_ids"], result["commit_times"], strict=True))
    appended = _read_append_times(bootstrap, topic, len(commit_time))
    marked = _published_at(engine, topic)
    if appended_out is not None:
        appended_out.update(appended)
    to_ack = [appended[e] - t for e, t in commit_time.items() if e in appended]
    to_mark = [marked[e] - t for e, t in commit_time.items() if e in marked]
    return commit_time, to_ack, to_mark


def warm_up(engine: sa.Engine, topic: str, events: int = 50, timeout: float = 30.0) -> None:
    """Publish a few events through the running relay(s) and wait until they are marked: the relay's
    producer then knows the new topic's partition leaders and has sized its batches for it (the first
    produce to a topic waits for its metadata, ~1 s here, which is start-up, not latency; without this
    it alone set the p99 of a 20 s run)."""
    from bench.events import EventFactory
    from payment_events.outbox.publisher import OutboxPublisher

    with engine.begin() as conn:
        OutboxPublisher(conn, router=lambda _t: topic).publish_encoded(EventFactory(events).batch(events))
    if backlog.wait_drained(engine, timeout, interval=0.1) is None:
        raise RuntimeError("the relay did not publish the warm-up events")
    time.sleep(1.0)


def run_sustained(
    engine: sa.Engine,
    database_url: str,
    bootstrap: str,
    *,
    rate: float,
    duration: float,
    instances: int,
    relay_config: dict[str, Any],
    partitions: int,
    patch: str | None = None,
    drain_timeout: float = 10.0,
    writers_count: int = WRITERS,
    txn_rate: float = TXN_RATE_CAP,
) -> dict[str, Any]:
    """One sustained run at ``rate`` events/s for ``duration`` s with ``instances`` relays; the writers
    (``writers_count`` processes) commit at most ``txn_rate`` transactions/s in total."""
    vacuum_seconds = backlog.clear_pending(engine)
    topic = create_topic(
        f"sustained{int(rate)}x{instances}", partitions, {"message.timestamp.type": "LogAppendTime"}
    )
    workdir = Path(tempfile.mkdtemp(prefix="pe-bench-writers-"))
    per_txn = max(1, math.ceil(rate / txn_rate))
    group = RelayGroup(database_url, bootstrap, instances, relay_config, patch=patch)
    writers: list[subprocess.Popen[str]] = []
    sampler = BacklogSampler(engine)
    meter = CpuMeter(relay_pids=group.pids)
    try:
        group.start()
        group.wait_balanced(engine, relay_config.get("shard_count", 64))
        warm_up(engine, topic)
        start_at = start_writers(
            writers, database_url, topic=topic, rate=rate, per_txn=per_txn, duration=duration,
            workdir=workdir, count=writers_count,
        )
        meter.relay_pids, meter.writer_pids = group.pids, [w.pid for w in writers]
        meter.start()
        sampler.t0 = start_at
        sampler.start()
        time.sleep(max(0.0, start_at + duration - time.time()))
        meter.stop()  # the writing window, taken while the writers still run
        for proc in writers:
            proc.wait(timeout=duration * 3 + 60)
        writers_done = time.time()
        sampler.stopping.set()
        sampler.join(5)
        drained = backlog.wait_drained(engine, drain_timeout, interval=0.1) is not None
        tail_seconds = time.time() - writers_done
        summaries = group.stop()
    finally:
        end_writers(writers)
        if not group.summaries:
            group.stop()
    results = read_writers(workdir, writers_count)
    appended: dict[str, float] = {}
    commit_time, to_ack, to_mark = commit_latencies(engine, bootstrap, topic, results, appended)
    written = len(commit_time)
    delete_topics([topic])
    writer_seconds = max(r["seconds"] for r in results)
    achieved = written / writer_seconds if writer_seconds > 0 else 0.0
    points = [(t, n) for t, n in sampler.points if t >= min(5.0, duration * 0.25)]
    growth = slope([(t, float(n)) for t, n in points])
    relay_latency = [x for s in summaries for x in s.get("commit_to_mark_seconds", [])]
    cycles = cycles_from(summaries)
    return {
        "target_rate": rate,
        "instances": instances,
        "patch": patch,
        "duration_seconds": duration,
        "writers": writers_count,
        "events_per_transaction": per_txn,
        "events_written": written,
        "achieved_write_rate": round(achieved, 1),
        "writer_late_transactions": sum(r["late_transactions"] for r in results),
        "writer_max_lateness_ms": round(max(r["max_lateness_seconds"] for r in results) * 1000, 1),
        "events_acked": len(to_ack),
        "events_marked": len(to_mark),
        "drained_after_writers": drained,
        "drain_tail_seconds": round(tail_seconds, 2),
        "commit_to_ack_ms": summary_ms(to_ack),
        "commit_to_marked_ms": summary_ms(to_mark),
        "relay_reported_insert_to_mark_ms": summary_ms(relay_latency),
        "backlog_growth_per_second": round(growth, 1),
        "pg_backend_cpu_seconds": round(sampler.backend_cpu_seconds(), 2),
        "pg_backend_cpu_us_per_event": _per_event_us(sampler, achieved),
        "pg_relay_backends_cpu_us_per_event": _per_event_us(sampler, achieved, "relay"),
        "pg_writer_backends_cpu_us_per_event": _per_event_us(sampler, achieved, "writers"),
        "cpu": meter.result(events=round(achieved * (meter.samples[-1].wall - meter.samples[0].wall))),
        "backlog_max": max((n for _, n in sampler.points), default=0),
        "backlog_samples": [[round(t, 1), n] for t, n in sampler.points],
        "peak_rss_mb": peak_rss_mb(summaries),
        "idle_rss_mb": max(group.idle_rss_mb, default=0.0),
        "relay_cpu_seconds": [s.get("cpu_seconds") for s in summaries],
        "mean_batch": [s.get("mean_batch") for s in summaries],
        "vacuum_before_seconds": round(vacuum_seconds, 2),
        **(
            {"breakdown": latency_breakdown(cycles, commit_time, appended), "cycles": cycles}
            if cycles
            else {}
        ),
    }
