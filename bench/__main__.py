"""``python -m bench`` (or ``make bench``): every workload of issue 6 against the real services.

Full run (the committed results, ~8-9 minutes on the 2-core machine): 200,000-event drains, 60 s
sustained runs. ``--quick``: small counts and 6 s runs, to check the harness in about two minutes.
Results go to ``bench/results/<date>.json`` and ``<date>.md`` (``<date>-quick.*`` for quick runs), and
the table is printed.

Issue 16's workloads: every drain and sustained run carries a ``cpu`` breakdown (:mod:`bench.cpu`); the
writer-scaling steps (:mod:`bench.scaling`, ``--skip scaling``) run last, while the time budget allows;
the soak (:mod:`bench.soak`) runs only when asked (``--soak-minutes``, or ``python -m bench.soak``).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import backlog, env, report
from bench.ceiling import ack_latency_baseline, raw_producer_ceiling
from bench.drain import run_drain
from bench.events import EventFactory, size_record
from bench.infra import ADMIN_URL, BOOTSTRAP, fresh_database, fresh_topic
from bench.naive import naive_relay
from bench.scaling import run_scaling
from bench.sqlite_latency import run_sqlite_latency
from bench.sustained import run_sustained
from bench.warmstart import run_warm_start
from bench.writepath import run_write_path

PARTITIONS = 6
KEYS = 10_000
TWO_STEP = "two-step-claim"
"""The claim experiment of :mod:`bench.claim_fix` (bench-side; not the shipped code)."""
SUSTAINED_BACKLOG_GROWTH_LIMIT = 100.0
"""Events/s: a run whose backlog grows faster than this is not sustained (issue 6)."""


def relay_settings() -> dict[str, Any]:
    """The relay's production settings, as the bench passes them (RelayConfig defaults, no DLQ topic:
    no event fails here, and the bench must not write to a shared ``payment.events.dlq``)."""
    return {"dlq_topic": None}


def _plan(quick: bool, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "write_path_pairs": args.write_pairs or (300 if quick else 2000),
        "drain_events": args.events or (20_000 if quick else 200_000),
        "naive_sample": 300 if quick else 2000,
        "sustained_seconds": args.duration or (6.0 if quick else 60.0),
        "search_seconds": args.search_duration or (6.0 if quick else 12.0),
        "scale_seconds": args.duration or (6.0 if quick else 30.0),
        "search_steps": 2 if quick else 3,
        "ack_baseline_seconds": 2.0 if quick else 3.0,
        "drain_timeout": 20.0,
        "experiment_drain_timeout": 30.0,
        "history_rows": 10_000 if quick else 50_000,
        "warm_start_events": 30_000 if quick else 100_000,
        "warm_start_rounds": 1 if quick else 2,
        "sqlite_seconds": 6.0 if quick else 15.0,
        "sqlite_rounds": 1 if quick else 2,
        "soft_budget_seconds": 200.0 if quick else 445.0,
        "scaling_steps": [1, 2] if quick else [1, 2, 4, 6],
        "scaling_seconds": 4.0 if quick else 12.0,
        "experiments": bool(args.experiments),
    }


def _sustained_ok(run: dict[str, Any]) -> bool:
    return bool(
        run["achieved_write_rate"] >= 0.95 * run["target_rate"]
        and run["backlog_growth_per_second"] <= SUSTAINED_BACKLOG_GROWTH_LIMIT
        and run["drained_after_writers"]
    )


def _profile_top(text: str, lines: int = 40) -> list[str]:
    body = text.splitlines()
    start = next((i for i, line in enumerate(body) if line.strip().startswith("Profile at")), 0)
    return [line.rstrip() for line in body[start + 1 : start + 1 + lines] if line.strip()]


class Budget:
    """The suite must end in under 10 minutes: optional steps are skipped once ``soft`` seconds passed."""

    def __init__(self, soft: float) -> None:
        self.started = time.monotonic()
        self.soft = soft
        self.skipped: list[str] = []

    def allows(self, what: str, latest: float | None = None) -> bool:
        """True if ``what`` may start now (before ``latest`` seconds into the run, default ``soft``);
        otherwise record it as skipped."""
        if time.monotonic() - self.started < (self.soft if latest is None else latest):
            return True
        self.skipped.append(what)
        print(f"[bench] skipped for time: {what}", flush=True)
        return False


def _drain_section(
    results: dict[str, Any],
    plan: dict[str, Any],
    events: list[Any],
    ctx: dict[str, Any],
) -> dict[str, Any]:
    """Raw ceiling, naive relay, drains with 1 and 2 relays (shipped claim, then the two-step claim
    experiment), and a profiled drain."""
    engine, url, skip, memory, budget = ctx["engine"], ctx["url"], ctx["skip"], ctx["memory"], ctx["budget"]
    relay_config = relay_settings()
    n = len(events)
    drain: dict[str, Any] = {"events": n, "load_seconds": ctx["load_seconds"]}
    with fresh_topic("ceiling", PARTITIONS) as topic:
        print("[bench] drain: raw producer ceiling", flush=True)
        drain["raw_ceiling"] = raw_producer_ceiling(BOOTSTRAP, topic, events)
    print("[bench] drain: naive relay sample", flush=True)
    with fresh_topic("naive", PARTITIONS) as topic:
        backlog.clear_pending(engine)
        backlog.release(engine, topic, plan["naive_sample"])
        drain["naive"] = naive_relay(url, BOOTSTRAP, plan["naive_sample"])
    drain["relay"] = []
    runs: list[tuple[int, str | None, dict[str, Any]]] = [
        (1, None, {}), (2, None, {}),
    ]
    if plan["experiments"]:
        runs += [(1, TWO_STEP, {}), (2, TWO_STEP, {})]
    for instances, patch, overrides in runs:
        label = f"{instances} relay(s)" + "".join(f", {x}" for x in (patch, overrides) if x)
        if instances == 2 and "scale" in skip:
            continue
        # The last experiment only if the sustained section (~270 s) still fits after it.
        latest = plan["soft_budget_seconds"] * (0.57 if instances == 2 else 1.0)
        if patch is not None and not budget.allows(f"drain, {label}", latest):
            continue
        print(f"[bench] drain: {label}", flush=True)
        run = run_drain(
            engine, url, BOOTSTRAP, instances=instances, relay_config={**relay_config, **overrides},
            partitions=PARTITIONS, patch=patch,
            timeout=plan["experiment_drain_timeout"] if patch else plan["drain_timeout"],
        )
        run["relay_overrides"] = overrides
        drain["relay"].append(run)
        memory["peak"].append(run["peak_rss_mb"])
        memory["idle"].append(run["idle_rss_mb"])
    if "profile" not in skip:
        out: Path = ctx["out"]
        out.mkdir(parents=True, exist_ok=True)
        stem = results["run"]["date"] + ("-quick" if results["run"]["mode"] == "quick" else "")
        results["profile"] = {}
        profiled: list[tuple[str | None, int, float]] = [(None, n // 10, 10.0)]
        if plan["experiments"]:
            profiled.append((TWO_STEP, n // 4, 20.0))
        for patch, limit, cap in profiled:
            name = "shipped" if patch is None else patch
            if not budget.allows(f"profiled drain ({name})"):
                continue
            print(f"[bench] drain: profiled relay, {name} claim (pyinstrument)", flush=True)
            profile_path = out / f"{stem}-profile-{name}.txt"
            run = run_drain(
                engine, url, BOOTSTRAP, instances=1, relay_config=relay_config, partitions=PARTITIONS,
                limit=limit, profile=profile_path, patch=patch, timeout=cap,
            )
            drain["relay"].append(run)
            profile_path.with_suffix(".html").unlink(missing_ok=True)
            results["profile"][name] = {
                "file": profile_path.name, "top": _profile_top(profile_path.read_text()),
                "events_per_second": run["events_per_second"],
            }
    return drain


def _sustained_section(plan: dict[str, Any], factory: EventFactory, ctx: dict[str, Any]) -> dict[str, Any]:
    """The raw ack-latency floor, then 1,000/s and 5,000/s runs and the search for the highest rate."""
    engine, url, skip, memory, budget = ctx["engine"], ctx["url"], ctx["skip"], ctx["memory"], ctx["budget"]
    relay_config = relay_settings()
    sustained: dict[str, Any] = {"runs": [], "ack_baseline": {}}
    sample = factory.batch(2000)
    with fresh_topic("ackbase", PARTITIONS) as topic:
        for base_rate in (1000, 5000):
            print(f"[bench] sustained: raw produce->ack latency at {base_rate}/s", flush=True)
            sustained["ack_baseline"][str(base_rate)] = ack_latency_baseline(
                BOOTSTRAP, topic, sample, base_rate, plan["ack_baseline_seconds"]
            )

    def one(
        rate: float, instances: int, seconds: float, search: bool = False, patch: str | None = None
    ) -> dict[str, Any]:
        print(f"[bench] sustained: {rate:,.0f}/s, {instances} relay(s), {seconds:.0f} s"
              f"{', ' + patch if patch else ''}", flush=True)
        run = run_sustained(
            engine, url, BOOTSTRAP, rate=rate, duration=seconds, instances=instances,
            relay_config=relay_config, partitions=PARTITIONS, patch=patch,
        )
        run["sustained"] = _sustained_ok(run)
        run["writers_reached_target"] = run["achieved_write_rate"] >= 0.95 * run["target_rate"]
        growth = run["backlog_growth_per_second"]
        run["relay_kept_up"] = bool(growth <= SUSTAINED_BACKLOG_GROWTH_LIMIT and run["drained_after_writers"])
        run["search"] = search
        sustained["runs"].append(run)
        memory["peak"].append(run["peak_rss_mb"])
        memory["idle"].append(run["idle_rss_mb"])
        return run

    def search(instances: int, known: dict[float, bool], patch: str | None = None) -> float | None:
        """A short search between the highest sustained and the lowest failed rate known so far:
        x1.5 above the best while everything passed, otherwise bisect (steps of ``search_seconds``)."""
        for _ in range(plan["search_steps"]):
            passed = [r for r, ok in known.items() if ok]
            failed = [r for r, ok in known.items() if not ok]
            low, high = max(passed, default=0.0), min(failed, default=math.inf)
            if math.isinf(high):
                rate = max(low * 1.5, 10_000.0) if low >= 5000 else low * 1.5
            else:
                rate = (low + high) / 2 if low else high / 2
            rate = round(rate, -2)
            if rate in known or (not math.isinf(high) and high - low <= 0.15 * high):
                break
            label = f"search step {rate:,.0f}/s, {instances} relay(s){', ' + patch if patch else ''}"
            if not budget.allows(label):
                break
            known[rate] = one(rate, instances, plan["search_seconds"], search=True, patch=patch)["sustained"]
        return max((r for r, ok in known.items() if ok), default=None)

    if plan.get("rates"):
        for rate in plan["rates"]:
            for instances in (1, 2) if "scale" not in skip else (1,):
                one(rate, instances, plan["sustained_seconds"])
        return sustained
    known: dict[float, bool] = {}
    for rate in (1000.0, 5000.0):
        known[rate] = one(rate, 1, plan["sustained_seconds"])["sustained"]
    known2: dict[float, bool] = {}
    if "scale" not in skip:
        known2[5000.0] = one(5000, 2, plan["scale_seconds"])["sustained"]
    best: dict[str, float | None] = {}
    if plan["experiments"] and budget.allows(
        f"sustained runs with {TWO_STEP}", plan["soft_budget_seconds"] * 1.12
    ):
        known3 = {5000.0: one(5000, 1, plan["scale_seconds"], patch=TWO_STEP)["sustained"]}
        best[f"1, {TWO_STEP}"] = search(1, known3, patch=TWO_STEP)
    best["1"] = search(1, known)
    if "scale" not in skip:
        if best["1"]:
            known2[best["1"]] = True  # two relays do at least what one does
        best["2"] = search(2, known2)
    sustained["max_sustained"] = best
    return sustained


def _second_pass_section(
    results: dict[str, Any], plan: dict[str, Any], factory: EventFactory, skip: set[str], budget: Budget
) -> None:
    """Workloads 2w (warm-start drain) and 3s (SQLite latency), each in its own database; run before the
    sustained section so that a slow machine skips sustained search steps rather than these."""
    if "warm" not in skip:
        n = plan["warm_start_events"]
        print(f"[bench] warm start: {n:,} events, no ANALYZE before the backlog", flush=True)
        results["warm_start"] = run_warm_start(
            factory.batch(n), BOOTSTRAP, relay_config=relay_settings(), partitions=PARTITIONS,
            rounds=plan["warm_start_rounds"], timeout=plan["experiment_drain_timeout"],
            budget_allows=lambda what: budget.allows(what, plan["soft_budget_seconds"] * 0.8),
        )
    if "sqlite" not in skip:
        results["sqlite_latency"] = run_sqlite_latency(
            BOOTSTRAP, rate=1000.0, duration=plan["sqlite_seconds"], rounds=plan["sqlite_rounds"],
            partitions=PARTITIONS,
            budget_allows=lambda what: budget.allows(what, plan["soft_budget_seconds"] * 0.9),
        )


def _soak(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The soak in its own database; its series goes to its own files, the summary into the run's."""
    from bench import soak
    from payment_events.outbox.migrate import upgrade

    print(f"[bench] soak: {args.soak_minutes:g} min at {args.soak_rate:,.0f}/s", flush=True)
    with fresh_database() as url:
        engine = sa.create_engine(url)
        try:
            upgrade(engine)
            run = soak.run_soak(
                engine, url, BOOTSTRAP, minutes=args.soak_minutes, rate=args.soak_rate,
                relay_config=relay_settings(), partitions=PARTITIONS,
            )
        finally:
            engine.dispose()
    files = soak.write(
        {"started_at": results["run"]["started_at"], "machine": results["machine"], **run},
        args.out, f"{results['run']['date']}-soak" + (f"-{args.tag}" if args.tag else ""),
    )
    return {"settings": run["settings"], "summary": run["summary"], "files": [f.name for f in files]}


def main(argv: list[str] | None = None) -> int:
    """Run the suite, write the results, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts and short runs")
    parser.add_argument("--no-services", action="store_true", help="do not call scripts/services up")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["write", "drain", "warm", "sqlite", "sustained", "profile", "scale",
                                 "scaling"],
                        help="skip a workload (scale: the 2-relay runs; scaling: the writer-scaling steps)")
    parser.add_argument("--events", type=int, default=0, help="drain backlog size")
    parser.add_argument("--write-pairs", type=int, default=0, help="write-path transactions per variant")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per sustained run")
    parser.add_argument("--search-duration", type=float, default=0.0, help="seconds per search step")
    parser.add_argument("--soak-minutes", type=float, default=0.0,
                        help="also run the soak (bench.soak) for this long, last, in its own database")
    parser.add_argument("--soak-rate", type=float, default=2000.0, help="events/s of the soak")
    parser.add_argument("--out", type=Path, default=report.RESULTS_DIR)
    parser.add_argument("--tag", default="", help="appended to the results' file names (<date>-<tag>.*)")
    parser.add_argument(
        "--experiments", action="store_true",
        help=f"also run the {TWO_STEP} experiment (bench.claim_fix; slower than the shipped claim since "
        "2026-11-28, kept as a comparison)",
    )
    parser.add_argument(
        "--rates", default="",
        help="only sustained runs at these comma-separated rates (1 and 2 relays, --duration s each); "
        "written as <date>-rates.json/.md",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    plan = _plan(args.quick, args)
    if args.rates:
        plan["rates"] = [float(r) for r in args.rates.split(",") if r.strip()]
        args.skip += ["write", "drain", "warm", "sqlite", "scaling"]
    if not args.no_services:
        env.services_up()
    from payment_events.kafka.producer import producer_config
    from payment_events.relay.settings import RelayConfig

    effective = RelayConfig(**relay_settings())
    results: dict[str, Any] = {
        "run": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full",
            "tag": args.tag,
            "plan": plan,
        },
        "machine": env.machine_record(ADMIN_URL, BOOTSTRAP),
        "settings": {
            "relay": {
                "batch_size": effective.batch_size,
                "poll_interval_seconds": effective.poll_interval_seconds,
                "listen": effective.listen,
                "shard_count": effective.shard_count,
                "lease_refresh_seconds": effective.lease_refresh_seconds,
                "dlq_topic": effective.dlq_topic,
                "overlap_marks": getattr(effective, "overlap_marks", None),
            },
            "producer": {k: v for k, v in producer_config(BOOTSTRAP).items() if k != "bootstrap.servers"},
            "topic_partitions": PARTITIONS,
            "payment_keys": KEYS,
            "outbox_async_marks": True,
        },
    }
    factory = EventFactory(KEYS)
    results["event"] = size_record(factory.encoded())
    skip = set(args.skip)
    budget = Budget(plan["soft_budget_seconds"])
    memory: dict[str, list[float]] = {"peak": [], "idle": []}
    if "write" not in skip:
        print(f"[bench] write path: {plan['write_path_pairs']} transactions per variant", flush=True)
        with fresh_database() as url:
            results["write_path"] = run_write_path(url, plan["write_path_pairs"])
    if not {"drain", "sustained", "scaling"} <= skip:
        from payment_events.outbox.migrate import upgrade

        n = plan["drain_events"] if "drain" not in skip else 20_000
        print(f"[bench] outbox: preparing {n:,} events", flush=True)
        events = factory.batch(n)
        with fresh_database() as url:
            engine = sa.create_engine(url)
            try:
                upgrade(engine)
                print("[bench] outbox: loading the backlog through OutboxPublisher", flush=True)
                load_seconds = round(backlog.load_staging(engine, events, "bench.unused"), 2)
                history = backlog.seed_history(engine, plan["history_rows"])
                results["settings"]["outbox_history_rows"] = history
                ctx = {"engine": engine, "url": url, "skip": skip, "memory": memory, "budget": budget,
                       "out": args.out, "load_seconds": load_seconds}
                if "drain" not in skip:
                    results["drain"] = _drain_section(results, plan, events, ctx)
                del events
                _second_pass_section(results, plan, factory, skip, budget)
                if "sustained" not in skip:
                    results["sustained"] = _sustained_section(plan, factory, ctx)
                latest = plan["soft_budget_seconds"] * 1.15  # ~80 s of steps: the run ends near 10 min
                if "scaling" not in skip and budget.allows("writer scaling", latest):
                    results["scaling"] = run_scaling(
                        engine, url, BOOTSTRAP, steps=plan["scaling_steps"], seconds=plan["scaling_seconds"],
                        relay_config=relay_settings(), partitions=PARTITIONS,
                    )
            finally:
                engine.dispose()
    if {"drain", "sustained", "scaling"} <= skip:
        _second_pass_section(results, plan, factory, skip, budget)
    if args.soak_minutes > 0:
        results["soak"] = _soak(results, args)
    results["run"]["skipped_for_time"] = budget.skipped
    relay_peaks, idle = memory["peak"], memory["idle"]
    if relay_peaks:
        results["memory"] = {
            "peak_rss_mb": max(relay_peaks),
            "idle_rss_mb": min((x for x in idle if x > 0), default=math.nan),
        }
    results["targets"] = report.evaluate_targets(results)
    results["run"]["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    json_path, md_path = report.write(results, args.out)
    print(md_path.read_text())
    print(f"[bench] wrote {json_path} and {md_path} in {results['run']['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
