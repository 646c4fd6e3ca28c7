"""Micro-benchmarks of the hot path's statements, on an idle database, for any source tree.

``python -m bench.micro [--src <tree>/src]`` measures, with the code of ``--src`` (default: this
checkout), on a fresh database:

* ``claim-empty``: fenced claims of all 64 shards on an empty outbox (what a relay does when woken
  with nothing to take), and unfenced ones;
* ``cycle``: 1,000 relay cycles of 5 rows each (a writer commits 5 events, the store claims them fenced
  and marks them published), the claim's and the marks' wall time;
* ``publish``: 1,000 writer transactions of 2 and of 10 events through ``OutboxPublisher``.

For each: wall time per call, the relay's (or writer's) own CPU (``time.process_time``) and the CPU of
the database's other backends (psutil, by database name, the writer's backend excluded for the store
figures). Run it once per tree, one after the other, on a quiet machine:
``python -m bench.micro --src /path/to/old/src; python -m bench.micro``.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def _backend_cpu(database: str, exclude: set[int]) -> float:
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] != "postgres" or proc.pid in exclude:
                continue
            if database in " ".join(proc.info["cmdline"] or []):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _measure(
    label: str, calls: int, action: Callable[[], object], database: str, exclude: set[int]
) -> dict[str, Any]:
    action()
    server0, wall0, client0 = _backend_cpu(database, exclude), time.perf_counter(), time.process_time()
    for _ in range(calls):
        action()
    server1, wall1, client1 = _backend_cpu(database, exclude), time.perf_counter(), time.process_time()
    result = {
        "label": label,
        "wall_us": round(1e6 * (wall1 - wall0) / calls),
        "client_cpu_us": round(1e6 * (client1 - client0) / calls),
        "server_cpu_us": round(1e6 * (server1 - server0) / calls),
    }
    print(f"{label}: {result['wall_us']} us wall, {result['client_cpu_us']} us client CPU, "
          f"{result['server_cpu_us']} us server CPU per call", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the micro-benchmarks with the code of ``--src``."""
    parser = argparse.ArgumentParser(prog="python -m bench.micro")
    parser.add_argument("--src", default=None, help="a source tree (its src/ folder) to measure instead")
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.src:
        sys.path.insert(0, args.src)
    import sqlalchemy as sa

    import payment_events
    from bench.events import EventFactory
    from bench.infra import ADMIN_URL
    from payment_events.outbox import migrate
    from payment_events.outbox.ports import Fence, Published
    from payment_events.outbox.publisher import OutboxPublisher
    from payment_events.outbox.store import SqlOutboxStore

    print(f"code: {payment_events.__file__}", flush=True)
    name = f"pe_micro_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    store = writer = None
    try:
        migrate.upgrade(url)
        store = SqlOutboxStore.from_url(url)
        writer = sa.create_engine(url, pool_size=1)
        with writer.connect() as conn:
            writer_pid = {int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())}
        factory = EventFactory(2000)
        taken = store.take_shards(4242, "bench-micro", range(64))
        fence = Fence(4242, "bench-micro", dict(taken.generations))
        calls = args.calls
        _measure("claim-empty fenced (64 shards)", calls,
                 lambda: store.claim_fenced(fence, 2000, datetime.now(UTC)), name, writer_pid)
        _measure("claim-empty unfenced", calls, lambda: store.claim(None, 2000, datetime.now(UTC)), name,
                 writer_pid)

        batches = iter([factory.batch(5) for _ in range(calls + 1)])
        timing = {"claim": 0.0, "marks": 0.0}

        def cycle() -> None:
            with writer.begin() as conn:
                OutboxPublisher(conn, notify=False).publish_encoded(next(batches))
            started = time.perf_counter()
            records = store.claim_fenced(fence, 2000, datetime.now(UTC))
            claimed = time.perf_counter()
            store.resolve_fenced(fence, [Published(r.id, 0, i) for i, r in enumerate(records)], [], [])
            timing["claim"] += claimed - started
            timing["marks"] += time.perf_counter() - claimed

        _measure("cycle of 5 rows (write + fenced claim + marks)", calls, cycle, name, writer_pid)
        print(f"  of which claim {1e6 * timing['claim'] / (calls + 1):.0f} us, marks "
              f"{1e6 * timing['marks'] / (calls + 1):.0f} us wall per cycle", flush=True)

        for per_txn in (2, 10):
            events = iter([factory.batch(per_txn) for _ in range(calls + 1)])
            with writer.connect() as conn:
                publisher = OutboxPublisher(conn)

                def publish(conn: Any = conn, publisher: Any = publisher, events: Any = events) -> None:
                    with conn.begin():
                        publisher.publish_encoded(next(events))

                _measure(f"publish, {per_txn} events a transaction", calls, publish, name, set())
    finally:
        if store is not None:
            store.close()
        if writer is not None:
            writer.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
