"""Relay CPU per event, A/B in one process: ``python -m bench.relay_cpu [--events N] [--rounds R]``.

Not part of ``python -m bench`` (it is a focused comparison for relay-side changes). Loads ``--events``
real events into a fresh database (with 20,000 published rows of history, analysed), then for each
round and variant (order alternating: A B C, C B A, ...): a fresh topic, ``build_relay`` (shipped
settings, no DLQ topic), one warm-up cycle, the backlog released in one commit, ``Relay.drain()``. It
reports the process CPU (``time.process_time``: every thread, the marks' and librdkafka's included) per
event and the wall-clock rate, and the ratio of medians against the first variant.

Variants: ``default-gc`` (CPython's ``(700, 10, 10)``), ``relay-gc``
(:data:`payment_events.service.RELAY_GC_THRESHOLD`, what ``run_relay`` uses), ``constant-headers``
(relay GC, and every row given one pre-built header tuple instead of parsing its column: the upper
bound of storing only the per-event headers, issue 16).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bench import backlog
from bench.events import EventFactory
from bench.infra import BOOTSTRAP, create_topic, delete_topics, fresh_database


def _relay_gc() -> Callable[[], None]:
    from payment_events.service import RELAY_GC_THRESHOLD

    previous = gc.get_threshold()
    gc.set_threshold(*RELAY_GC_THRESHOLD)
    return lambda: gc.set_threshold(*previous)


def _default_gc() -> Callable[[], None]:
    previous = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    return lambda: gc.set_threshold(*previous)


def _constant_headers() -> Callable[[], None]:
    from payment_events.outbox import rows

    undo_gc = _relay_gc()
    module: Any = rows
    real = module.parse_headers
    constant = (EventFactory(1).encoded().headers, None)
    module.parse_headers = lambda _text: constant

    def undo() -> None:
        module.parse_headers = real
        undo_gc()

    return undo


VARIANTS: dict[str, Callable[[], Callable[[], None]]] = {
    "default-gc": _default_gc,
    "relay-gc": _relay_gc,
    "constant-headers": _constant_headers,
}


def drain_once(engine: sa.Engine, url: str, events: int, variant: str) -> tuple[int, float, float]:
    """One drain with ``variant`` applied: (events, CPU microseconds per event, events per second)."""
    from payment_events.relay.settings import RelayConfig
    from payment_events.service import build_relay

    undo = VARIANTS[variant]()
    try:
        backlog.clear_pending(engine)
        topic = create_topic("relaycpu", 6)
        relay = build_relay(url, BOOTSTRAP, RelayConfig(dlq_topic=None))
        try:
            relay.drain(max_cycles=1)  # leases, producer connection, prepared statements
            backlog.release(engine, topic, events)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            published = relay.drain()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            relay.close()
            delete_topics([topic])
        return published, cpu / max(published, 1) * 1e6, published / wall
    finally:
        undo()


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one line per drain and the medians."""
    from payment_events.outbox.migrate import upgrade

    parser = argparse.ArgumentParser(prog="python -m bench.relay_cpu", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    print(f"load average {os.getloadavg()}", flush=True)
    with fresh_database("pe_bench_cpu") as url:
        engine = sa.create_engine(url)
        try:
            upgrade(engine)
            backlog.load_staging(engine, EventFactory(10_000).batch(args.events), "bench.unused")
            backlog.seed_history(engine, 20_000)
            for i in range(args.rounds):
                for variant in variants if i % 2 == 0 else variants[::-1]:
                    n, cpu, rate = drain_once(engine, url, args.events, variant)
                    results[variant].append((cpu, rate))
                    line = f"round {i + 1} {variant}: {n} events, {cpu:.1f} us CPU/event, {rate:,.0f}/s"
                    print(line, flush=True)
        finally:
            engine.dispose()
    base = statistics.median(c for c, _ in results[variants[0]])
    for variant in variants:
        cpu = statistics.median(c for c, _ in results[variant])
        rate = statistics.median(r for _, r in results[variant])
        print(f"{variant}: median {cpu:.1f} us CPU/event ({cpu / base:.3f}x), {rate:,.0f} events/s")
    print(f"load average {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
