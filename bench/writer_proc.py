"""One load-generating writer as its own process (``python -m bench.writer_proc``).

It commits outbox events with the real ``OutboxPublisher`` (``publish_encoded``: the multi-row insert
plus its ``pg_notify``) at a fixed rate, open loop: transaction ``k`` is due at ``start + k * interval``
whatever happened before, so a slow database shows up as lateness, not as a quietly lower rate. Events are
encoded before the clock starts (the application has its events already; encoding is ~20 us an event and
is measured by the write-path workload). Right after each ``COMMIT`` returns, the writer takes the
wall-clock time: that is the event's commit time for the commit-to-ack latency.

Closed loop (``--rate 0``): commit transactions of ``--per-txn`` events back to back, as fast as the
writer can, for ``--duration`` seconds (the ceiling search of :mod:`bench.scaling`: offered load is then
whatever the machine accepts, so the run measures the capacity, not a schedule).

Long or closed-loop runs do not encode every event in advance (a 10-minute soak at 2,000/s would hold
1.2 million encoded events): the writer encodes a pool of distinct events once and gives each use a
fresh UUIDv7 event id (in the row, in the JSON value and in the ``ce_id`` header; ~2 us an event, where
encoding costs ~20 us). ``--no-record`` skips the per-event commit times (the soak reads latency from
the table instead).

Start protocol: when its events are built and its connection is open, the writer prints ``ready`` and
reads the common start time (Unix seconds) from stdin, so slow start-up never counts as lateness.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from payment_events.events.codec import EncodedEvent

PREBUILT_LIMIT = 50_000
"""Open-loop runs with at most this many events encode them all in advance; longer ones use a pool."""
POOL = 4_000


def with_fresh_id(event: EncodedEvent, new_id: str) -> EncodedEvent:
    """``event`` with ``new_id`` as its event id everywhere it appears (row, value, ``ce_id`` header)."""
    old, new = event.event_id.encode(), new_id.encode()
    return dataclasses.replace(
        event,
        event_id=new_id,
        value=event.value.replace(old, new, 1),
        headers=tuple((name, new if name == "ce_id" else value) for name, value in event.headers),
    )


def _source(events: Sequence[EncodedEvent], fresh: bool) -> Callable[[int, int], list[EncodedEvent]]:
    """``take(k, n)``: the ``n`` events of transaction ``k`` (prebuilt, or pool members with fresh ids)."""
    if not fresh:
        return lambda k, n: list(events[k * n : (k + 1) * n])
    from payment_events.events.ids import uuid7

    size = len(events)
    return lambda k, n: [with_fresh_id(events[(k * n + i) % size], str(uuid7())) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    """Write at the given rate for the given duration; write event ids and commit times to ``--out``."""
    import sqlalchemy as sa

    from bench.events import EventFactory
    from payment_events.outbox.publisher import OutboxPublisher

    parser = argparse.ArgumentParser(prog="python -m bench.writer_proc")
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument(
        "--rate", type=float, required=True, help="events per second for this writer (0: closed loop)"
    )
    parser.add_argument("--per-txn", type=int, default=1, help="events per transaction")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--notify-interval", type=float, default=0.0, help="OutboxPublisher notify_interval")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-record", action="store_true", help="do not keep per-event commit times")
    args = parser.parse_args(argv)

    per_txn: int = args.per_txn
    closed_loop = args.rate <= 0
    txns = 0 if closed_loop else max(1, round(args.rate * args.duration / per_txn))
    interval = 0.0 if closed_loop else per_txn / args.rate
    pooled = closed_loop or txns * per_txn > PREBUILT_LIMIT
    factory = EventFactory(args.keys)
    events = factory.batch(max(POOL, per_txn) if pooled else txns * per_txn)
    take = _source(events, pooled)
    record = not args.no_record
    committed_events = 0
    engine = sa.create_engine(args.url, pool_size=1, max_overflow=0)
    if engine.dialect.name == "sqlite":
        from payment_events.outbox.sqlite import configure_sqlite

        configure_sqlite(engine)  # WAL, synchronous=NORMAL, busy timeout: as the demo's writers
    event_ids: list[str] = []
    commit_times: list[float] = []
    lateness: list[float] = []
    topic = args.topic
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            conn.commit()
            publisher = OutboxPublisher(conn, router=lambda _t: topic, notify_interval=args.notify_interval)
            # Ready: tell the harness, then wait for the common start time (wall clock) on stdin.
            print("ready", flush=True)
            start_at = float(sys.stdin.readline())
            start_mono = time.monotonic() + max(0.0, start_at - time.time())
            while time.monotonic() < start_mono:
                time.sleep(min(0.05, start_mono - time.monotonic()))
            stop_mono = start_mono + args.duration
            k = 0
            while (k < txns) if not closed_loop else (time.monotonic() < stop_mono):
                if not closed_loop:  # open loop: transaction k is due at start + k * interval
                    due = start_mono + k * interval
                    now = time.monotonic()
                    if now < due:
                        time.sleep(due - now)
                    elif now - due > 0.001:
                        lateness.append(now - due)
                chunk = take(k, per_txn)
                with conn.begin():
                    publisher.publish_encoded(chunk)
                committed = time.time()
                committed_events += len(chunk)
                k += 1
                if record:
                    for event in chunk:
                        event_ids.append(event.event_id)
                        commit_times.append(committed)
            finished_mono = time.monotonic()
    finally:
        engine.dispose()
    elapsed = finished_mono - start_mono
    args.out.write_text(
        json.dumps(
            {
                "events": committed_events,
                "transactions": k,
                "closed_loop": closed_loop,
                "seconds": elapsed,
                "achieved_rate": committed_events / elapsed if elapsed > 0 else 0.0,
                "late_transactions": len(lateness),
                "max_lateness_seconds": max(lateness) if lateness else 0.0,
                "event_ids": event_ids,
                "commit_times": commit_times,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
