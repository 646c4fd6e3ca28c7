"""Where commit-to-ack latency goes: a per-cycle trace of the relay, joined with each event's commit time
and its broker append time (issue 16: "find where today's 12 ms median goes").

The relay process (``bench.relay_proc`` with ``PE_BENCH_TRACE=1`` in its environment) wraps its own
waker, store and producer (:func:`install_cycle_trace`, through ``run_relay``'s ``on_ready``) and
records, for every cycle, the wall-clock instants of: the wake-up that started it (if a notification
did), the claim's start and end, the end of handing the batch to librdkafka, the end of waiting for
its acks, and the end of its marks; plus the claimed event ids. Nothing is patched in the product's
code: the wrappers sit on the relay's instance attributes, in the benchmark's process only.

:func:`latency_breakdown` then splits every event's commit-to-append latency into consecutive parts:

* ``wait_for_cycle``: commit -> the start of the claim that took it (the NOTIFY's trip to the relay, or
  the previous cycle still running);
* of which ``notify_to_wake`` for events whose cycle a notification started: commit -> the waker's return;
* ``claim``: the claim's database round trips and building the records;
* ``hand_to_client``: ``produce()`` of the batch;
* ``to_broker_append``: end of ``produce()`` -> the broker's LogAppendTime (librdkafka's linger, the
  request, the broker's append; the append time has millisecond resolution);
* ``append_to_ack``: the append -> every ack of the batch served (the ack's trip back and the wait for
  the batch's slowest partition);
* ``mark``: the acks -> the batch's marks committed.

The parts are medians and p99s of each part separately (so they do not add up to the end-to-end p99).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.stats import summary_ms

TRACE_ENV = "PE_BENCH_TRACE"


class _CycleTrace:
    """The relay's cycles as lists of instants (wall clock, seconds)."""

    def __init__(self) -> None:
        self.cycles: list[dict[str, Any]] = []
        self._woke_at: float | None = None
        self._current: dict[str, Any] | None = None
        self._depth = 0
        self.slow_steps: list[list[Any]] = []

    def woke(self) -> None:
        self._woke_at = time.time()

    def claim_started(self) -> None:
        self._depth += 1
        if self._depth > 1:  # FencedOutboxStore.claim calls its (also wrapped) claim_excluding
            return
        self._current = {"wake": self._woke_at, "claim_start": time.time()}
        self._woke_at = None

    def claimed(self, ids: list[str]) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        cycle = self._current
        if cycle is None:
            return
        cycle["claim_end"] = time.time()
        if ids:
            cycle["ids"] = ids
            self.cycles.append(cycle)
        else:
            self._current = None

    def handed(self) -> None:
        if self._current is not None:
            self._current["handed"] = time.time()

    def acked(self) -> dict[str, Any] | None:
        cycle = self._current
        if cycle is not None:
            cycle["acked"] = time.time()
        self._current = None
        return cycle

    def slow(self, what: str, started: float, at_least: float) -> None:
        """Record ``what`` (started at ``started``) if it took ``at_least`` seconds or more."""
        took = time.time() - started
        if took >= at_least:
            self.slow_steps.append([what, round(started, 4), round(took, 4)])

    def dump(self) -> list[dict[str, Any]]:
        return [c for c in self.cycles if "acked" in c] + [{"slow": self.slow_steps}]


def install_cycle_trace(relay: Any) -> _CycleTrace:
    """Wrap ``relay``'s waker, store and producer (instance attributes) to record its cycles."""
    from payment_events.kafka.producer import KafkaBatchProducer

    trace = _CycleTrace()
    waker = relay._waker
    wait = waker.wait

    def traced_wait(timeout: float) -> bool:
        started = time.time()
        woke = bool(wait(timeout))
        if woke:
            trace.woke()
        trace.slow("wait woke" if woke else "wait timed out", started, 0.02)
        return woke

    waker.wait = traced_wait
    for name in ("_housekeeping", "_settle_marks", "_refresh_leases"):
        method = getattr(relay, name)

        def timed(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            started = time.time()
            try:
                return _method(*args, **kwargs)
            finally:
                trace.slow(_name, started, 0.005)

        setattr(relay, name, timed)

    store = relay._store
    for name in ("claim", "claim_excluding"):
        original = getattr(store, name, None)
        if original is None:
            continue

        def traced_claim(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            trace.claim_started()
            records = _original(*args, **kwargs)
            trace.claimed([r.event_id for r in records])
            return records

        setattr(store, name, traced_claim)

    resolve = store.resolve
    pending_marks: list[dict[str, Any]] = []  # acked cycles, in order, whose marks come next

    def traced_resolve(published: Any, retries: Any, dead: Any) -> Any:
        cycle = pending_marks.pop(0) if pending_marks else None
        result = resolve(published, retries, dead)
        if cycle is not None:
            cycle["marked"] = time.time()
        return result

    store.resolve = traced_resolve

    # The end of produce(): wrap the client's enqueue (class-level, in this benchmark process only; the
    # dead-letter copier's producer carries no traffic here).
    send = KafkaBatchProducer._send

    def traced_send(self: Any, messages: Any) -> Any:
        batch = send(self, messages)
        trace.handed()
        return batch

    KafkaBatchProducer._send = traced_send  # type: ignore[method-assign]

    producer = relay._producer
    produce_batch = producer.produce_batch

    def traced_produce(messages: Any, timeout: float) -> Any:
        outcomes = produce_batch(messages, timeout)
        cycle = trace.acked()
        if cycle is not None:
            pending_marks.append(cycle)
        return outcomes

    producer.produce_batch = traced_produce
    return trace


def restore_poll_wait() -> None:
    """The relay's producer as before issue 16's second pass: it waited for a batch's reports with
    ``poll()``, so every batch sat out ``linger.ms`` before its first request (``--patch poll-wait``)."""
    import time as _time

    from payment_events.kafka import producer as module

    def _wait(self: Any, batch: Any, timeout: float) -> list[Any]:
        deadline = _time.monotonic() + timeout
        poll = self._producer.poll
        while batch.pending[0] > 0:
            left = deadline - _time.monotonic()
            if left <= 0:
                break
            poll(min(left, 0.05))
        if batch.pending[0] > 0:
            self._purge_outstanding()
            self._collect(batch)
            self.rebuild()
        else:
            self._collect(batch)
        return list(batch.outcomes)

    module.KafkaBatchProducer._wait = _wait  # type: ignore[method-assign]


def trace_requested() -> bool:
    """Whether this relay process should trace its cycles (``PE_BENCH_TRACE=1``)."""
    return os.environ.get(TRACE_ENV) == "1"


def latency_breakdown(
    cycles: Iterable[dict[str, Any]], commit_time: dict[str, float], appended: dict[str, float]
) -> dict[str, Any]:
    """Each part of commit-to-append (and on to the marks) for every traced event; see the module
    docstring for the parts."""
    parts: dict[str, list[float]] = {
        "wait_for_cycle": [],
        "notify_to_wake": [],
        "claim": [],
        "hand_to_client": [],
        "to_broker_append": [],
        "append_to_ack": [],
        "mark": [],
        "commit_to_append": [],
    }
    woken = 0
    events = 0
    for cycle in cycles:
        if "slow" in cycle:
            continue
        claim_start, claim_end = cycle["claim_start"], cycle["claim_end"]
        handed, acked = cycle.get("handed", claim_end), cycle["acked"]
        for event_id in cycle["ids"]:
            committed = commit_time.get(event_id)
            append = appended.get(event_id)
            if committed is None or append is None:
                continue
            events += 1
            parts["wait_for_cycle"].append(claim_start - committed)
            if cycle.get("wake") is not None and cycle["wake"] >= committed - 0.005:
                # The writer reads its clock after COMMIT returns; the notification can wake the relay
                # a little before that: such wakes count as immediate (0).
                woken += 1
                parts["notify_to_wake"].append(max(0.0, cycle["wake"] - committed))
            parts["claim"].append(claim_end - claim_start)
            parts["hand_to_client"].append(handed - claim_end)
            parts["to_broker_append"].append(append - handed)
            parts["append_to_ack"].append(acked - append)
            if "marked" in cycle:
                parts["mark"].append(cycle["marked"] - acked)
            parts["commit_to_append"].append(append - committed)
    return {
        "events": events,
        "events_in_notified_cycles": woken,
        "parts_ms": {name: summary_ms(values) for name, values in parts.items()},
    }


def cycles_from(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every traced cycle of every relay summary (empty when the relays did not trace)."""
    out: list[dict[str, Any]] = []
    for summary in summaries:
        out.extend(summary.get("cycles", []))
    return out


def format_breakdown(breakdown: dict[str, Any]) -> str:
    """The breakdown as a small text table."""
    lines = [f"events traced: {breakdown['events']} ({breakdown['events_in_notified_cycles']} in cycles a "
             "notification started)", f"{'part':<20} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"]
    for name, stats in breakdown["parts_ms"].items():
        if not stats or not stats.get("count"):
            continue
        lines.append(f"{name:<20} {stats['p50']:>8} {stats.get('p90', '-'):>8} {stats['p99']:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.breakdown --rate 1000 --seconds 20``: one traced sustained run, its breakdown."""
    import argparse

    import sqlalchemy as sa

    from bench.cpu import format_line
    from bench.infra import BOOTSTRAP, fresh_database
    from bench.sustained import run_sustained
    from payment_events.outbox.migrate import upgrade

    parser = argparse.ArgumentParser(prog="python -m bench.breakdown")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--patch", default=None, help="a bench.relay_proc --patch to compare (interleaved)")
    parser.add_argument("--config", default="{}", help="RelayConfig overrides as JSON")
    parser.add_argument("--writers", type=int, default=2, help="writer processes")
    parser.add_argument("--txn-rate", type=float, default=500.0, help="transactions/s of all writers at most")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ[TRACE_ENV] = "1"  # inherited by the relay processes
    results = []
    with fresh_database("pe_bench_breakdown") as url:
        engine = sa.create_engine(url)
        try:
            upgrade(engine)
            for round_no in range(args.rounds):
                variants = [None, args.patch] if args.patch else [None]
                for patch in variants if round_no % 2 == 0 else variants[::-1]:
                    run = run_sustained(
                        engine, url, BOOTSTRAP, rate=args.rate, duration=args.seconds, instances=1,
                        relay_config={"dlq_topic": None, **json.loads(args.config)}, partitions=6,
                        patch=patch, writers_count=args.writers, txn_rate=args.txn_rate,
                    )
                    run.pop("backlog_samples", None)
                    cycles = run.pop("cycles", [])
                    ack = run["commit_to_ack_ms"]
                    print(f"round {round_no + 1}, {patch or 'shipped'}: target {args.rate:.0f}/s, achieved "
                          f"{run['achieved_write_rate']}/s; ack p50/p99 {ack['p50']}/{ack['p99']} ms; "
                          f"pg cpu/event {run['pg_backend_cpu_us_per_event']} us (relay's sessions "
                          f"{run['pg_relay_backends_cpu_us_per_event']}); relay cpu "
                          f"{run['relay_cpu_seconds']} s; mean batch {run['mean_batch']}", flush=True)
                    if run.get("cpu"):
                        print("cpu: " + format_line(run["cpu"]), flush=True)
                    if run.get("breakdown"):
                        print(format_breakdown(run["breakdown"]), flush=True)
                    load = os.getloadavg()
                    run = {"round": round_no + 1, "patch": patch, "load": load, **run, "cycles": cycles}
                    results.append(run)
        finally:
            engine.dispose()
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
