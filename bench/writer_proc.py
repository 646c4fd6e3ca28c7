"""One load-generating writer as its own process (``python -m bench.writer_proc``).

It commits outbox events with the real ``OutboxPublisher`` (``publish_encoded``: the multi-row insert
plus its ``pg_notify``) at a fixed rate, open loop: transaction ``k`` is due at ``start + k * interval``
whatever happened before, so a slow database shows up as lateness, not as a quietly lower rate. Events are
encoded before the clock starts (the application has its events already; encoding is ~20 us an event and
is measured by the write-path workload). Right after each ``COMMIT`` returns, the writer takes the
wall-clock time: that is the event's commit time for the commit-to-ack latency.

Start protocol: when its events are built and its connection is open, the writer prints ``ready`` and
reads the common start time (Unix seconds) from stdin, so slow start-up never counts as lateness.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Write at the given rate for the given duration; write event ids and commit times to ``--out``."""
    import sqlalchemy as sa

    from bench.events import EventFactory
    from payment_events.outbox.publisher import OutboxPublisher

    parser = argparse.ArgumentParser(prog="python -m bench.writer_proc")
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True, help="events per second for this writer")
    parser.add_argument("--per-txn", type=int, default=1, help="events per transaction")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--notify-interval", type=float, default=0.0, help="OutboxPublisher notify_interval")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    per_txn: int = args.per_txn
    txns = max(1, round(args.rate * args.duration / per_txn))
    interval = per_txn / args.rate
    factory = EventFactory(args.keys)
    events = factory.batch(txns * per_txn)
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
            for k in range(txns):
                due = start_mono + k * interval
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                elif now - due > 0.001:
                    lateness.append(now - due)
                chunk = events[k * per_txn : (k + 1) * per_txn]
                with conn.begin():
                    publisher.publish_encoded(chunk)
                committed = time.time()
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
                "events": len(event_ids),
                "transactions": txns,
                "seconds": elapsed,
                "achieved_rate": len(event_ids) / elapsed if elapsed > 0 else 0.0,
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
