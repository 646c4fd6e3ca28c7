"""One relay instance as its own process (``python -m bench.relay_proc``), as production runs it.

It runs the real relay (``payment_events.service.run_relay``: SQL store, advisory-lock shard
leases, LISTEN wake-ups, the idempotent ``acks=all`` producer) with the given ``RelayConfig`` values,
until SIGTERM. A small observer records what the relay reports (batch sizes and its own
commit-to-mark latencies, computed from the row's ``created_at``). On exit it writes a JSON summary
(``--out``): peak RSS (``VmHWM``), CPU time, batches, latencies. With ``--profile`` the whole run
is recorded by pyinstrument and written as text (and HTML next to it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SAMPLE_SIZE = 100_000
"""At most this many latencies and batch records are kept (a uniform sample past that), so a long soak
measures the relay's memory, not a list of every event's latency growing in the same process (it grew
~4 MB a minute at 2,000 events/s before the cap)."""


BATCH_LOG_SIZE = 10_000
"""Batch records kept (each a (time, size) pair, ~110 bytes): full within a minute at low rates."""


class _Reservoir:
    """A uniform sample of at most ``size`` items from a stream (Algorithm R; fixed memory)."""

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        self.size = size
        self.seen = 0
        self.items: list[Any] = []
        self._rand = random.Random(7)

    def extend(self, values: Sequence[Any]) -> None:
        for value in values:
            self.seen += 1
            if len(self.items) < self.size:
                self.items.append(value)
            else:
                slot = self._rand.randrange(self.seen)
                if slot < self.size:
                    self.items[slot] = value


class BenchObserver:
    """Keeps what the relay reports, cheaply: batch sizes and commit-to-mark latencies (uniform samples
    of at most :data:`SAMPLE_SIZE` each, and exact counts)."""

    def __init__(self) -> None:
        self.batches = 0
        self.batched_rows = 0
        self.batch_log = _Reservoir(BATCH_LOG_SIZE)
        self.latencies = _Reservoir()
        self.retried_count = 0
        self.dead_count = 0
        self.shard_count = 0

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """Events were acknowledged and marked published."""
        self.latencies.extend(commit_to_ack_seconds)

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Events were scheduled for a retry."""
        self.retried_count += count

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Events were dead-lettered."""
        self.dead_count += count

    def batch(self, size: int) -> None:
        """A batch was claimed and produced."""
        self.batches += 1
        self.batched_rows += size
        self.batch_log.extend([(time.time(), size)])

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Backlog report (ignored: the harness measures the backlog itself)."""

    def dead_rows(self, count: int) -> None:
        """Ignored."""

    def shards_owned(self, count: int) -> None:
        """Shards owned by this instance."""
        self.shard_count = count

    def broker_reachable(self, reachable: bool) -> None:
        """Ignored."""

    def database_reachable(self, reachable: bool) -> None:
        """Ignored."""


def _peak_rss_mb() -> float:
    """This process's high-water RSS (``VmHWM``). Not ``getrusage``: Linux carries ``ru_maxrss`` over
    ``execve``, so a child started from a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    """Run one relay until SIGTERM; write the summary."""
    from payment_events.relay.settings import RelayConfig
    from payment_events.service import run_relay

    parser = argparse.ArgumentParser(prog="python -m bench.relay_proc")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config", default="{}", help="RelayConfig overrides as JSON")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument(
        "--patch",
        choices=["two-step-claim", "unpinned-claim", "sort-only-pin", "default-gc", "poll-wait"],
        default=None,
        help="an experiment or the code before a fix: see bench.claim_fix",
    )
    args = parser.parse_args(argv)
    store_factory = None
    if args.patch == "two-step-claim":
        from bench.claim_fix import two_step_store

        store_factory = two_step_store
    elif args.patch == "unpinned-claim":
        from bench.claim_fix import unpin_claim

        unpin_claim()
    elif args.patch == "poll-wait":
        from bench.breakdown import restore_poll_wait

        restore_poll_wait()
    elif args.patch == "sort-only-pin":
        from bench.claim_fix import sort_only_pin

        sort_only_pin()

    explain_to = os.environ.get("PE_BENCH_EXPLAIN")
    if explain_to:
        from bench.claim_fix import explain_claims

        explain_claims(f"{explain_to}.{args.patch or 'shipped'}.{os.getpid()}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    overrides: dict[str, Any] = json.loads(args.config)
    config = RelayConfig(**overrides)
    observer = BenchObserver()
    profiler: Any = None
    if args.profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
    from bench.breakdown import install_cycle_trace, trace_requested

    traces: list[Any] = []
    on_ready = (lambda relay: traces.append(install_cycle_trace(relay))) if trace_requested() else None
    started = time.time()
    cpu0 = time.process_time()
    if profiler is not None:
        profiler.start()
    try:
        from payment_events.service import RELAY_GC_THRESHOLD

        gc_threshold = None if args.patch == "default-gc" else RELAY_GC_THRESHOLD
        run_relay(
            args.url, args.bootstrap, config, observer=observer, store_factory=store_factory,
            gc_threshold=gc_threshold, on_ready=on_ready,
        )
    finally:
        if profiler is not None:
            profiler.stop()
            args.profile.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
            args.profile.with_suffix(".html").write_text(profiler.output_html())
        summary = {
            "started_at": started,
            "stopped_at": time.time(),
            "cpu_seconds": round(time.process_time() - cpu0, 3),
            "peak_rss_mb": _peak_rss_mb(),
            "batches": observer.batches,
            "mean_batch": round(observer.batched_rows / observer.batches, 1) if observer.batches else 0,
            "published": observer.latencies.seen,
            "retried": observer.retried_count,
            "dead": observer.dead_count,
            "shards": observer.shard_count,
            "commit_to_mark_seconds": observer.latencies.items,
            "batch_log": sorted(observer.batch_log.items),
        }
        if traces:
            summary["cycles"] = traces[0].dump()
        args.out.write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
