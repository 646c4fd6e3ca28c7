"""The results files: ``bench/results/<date>.json`` (everything) and ``<date>.md`` (the table)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.stats import ratio

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _verdict(run: dict[str, Any]) -> str:
    if run["sustained"]:
        return ""
    if run.get("relay_kept_up") and not run.get("writers_reached_target"):
        return " — NOT sustained: the writers fell short of the target; the relay kept up with their rate"
    return " — NOT sustained: the relay fell behind"


def _met(flag: bool | None) -> str:
    if flag is None:
        return "n/a"
    return "yes" if flag else "**no**"


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 with the measured value and whether it is met."""
    targets: list[dict[str, Any]] = []
    wp = results.get("write_path")
    if wp:
        targets.append(
            {"target": "write path: median txn with outbox insert <= 1.3x without",
             "measured": f"{wp['ratio_p50']}x", "met": wp["ratio_p50"] <= 1.3}
        )
    drain = results.get("drain") or {}
    relay_runs = {
        r["instances"]: r
        for r in drain.get("relay", [])
        if not r.get("patch") and not r.get("profiled") and not r.get("relay_overrides")
    }
    ceiling = (drain.get("raw_ceiling") or {}).get("events_per_second")
    one = relay_runs.get(1)
    if one:
        targets.append(
            {"target": "drain >= 30,000 events/s (1 relay)", "measured": _fmt(one["events_per_second"], 0),
             "met": one["events_per_second"] >= 30_000}
        )
        if ceiling:
            share = ratio(one["events_per_second"], ceiling)
            targets.append(
                {"target": "drain >= 50% of the raw producer ceiling (1 relay)",
                 "measured": f"{share * 100:.0f}%", "met": share >= 0.5}
            )
    sustained = results.get("sustained") or {}
    for run in sustained.get("runs", []):
        if run["instances"] != 1 or run.get("patch"):
            continue
        p99 = run["commit_to_ack_ms"]["p99"]
        if run["target_rate"] == 1000:
            targets.append(
                {"target": "commit-to-ack p99 <= 50 ms at 1,000 events/s", "measured": f"{_fmt(p99)} ms",
                 "met": run["sustained"] and p99 <= 50}
            )
        if run["target_rate"] == 5000:
            targets.append(
                {"target": "commit-to-ack p99 <= 250 ms at 5,000 events/s", "measured": f"{_fmt(p99)} ms",
                 "met": run["sustained"] and p99 <= 250}
            )
    best = sustained.get("max_sustained")
    if best is not None:
        rate = best.get("1")
        targets.append(
            {"target": "sustained >= 10,000 events/s with backlog growth <= 100/s (1 relay)",
             "measured": f"{_fmt(rate, 0)} events/s" if rate else "none sustained",
             "met": bool(rate and rate >= 10_000)}
        )
    targets += _experiment_targets(results, ceiling)
    peaks = [r.get("peak_rss_mb", 0.0) for r in drain.get("relay", [])]
    peaks += [r.get("peak_rss_mb", 0.0) for r in sustained.get("runs", [])]
    if peaks:
        targets.append(
            {"target": "relay peak RSS <= 200 MB", "measured": f"{max(peaks):.0f} MB",
             "met": max(peaks) <= 200}
        )
    return targets


def _experiment_targets(results: dict[str, Any], ceiling: float | None) -> list[dict[str, Any]]:
    """The same targets for the bench-side two-step claim experiment (what the recommended fix gives)."""
    out: list[dict[str, Any]] = []
    tag = " [two-step claim experiment, not shipped]"
    for run in (results.get("drain") or {}).get("relay", []):
        plain = not run.get("profiled") and not run.get("relay_overrides")
        if run.get("patch") and run["instances"] == 1 and plain:
            rate = run["events_per_second"]
            out.append({"target": "drain >= 30,000 events/s (1 relay)" + tag, "measured": _fmt(rate, 0),
                        "met": rate >= 30_000})
            if ceiling:
                share = ratio(rate, ceiling)
                out.append({"target": "drain >= 50% of the raw producer ceiling" + tag,
                            "measured": f"{share * 100:.0f}%", "met": share >= 0.5})
    sustained = results.get("sustained") or {}
    for run in sustained.get("runs", []):
        fixed_rate = run["target_rate"] == 5000 and not run.get("search")
        if run.get("patch") and run["instances"] == 1 and fixed_rate:
            p99 = run["commit_to_ack_ms"]["p99"]
            out.append({"target": "commit-to-ack p99 <= 250 ms at 5,000 events/s" + tag,
                        "measured": f"{_fmt(p99)} ms", "met": run["sustained"] and p99 <= 250})
    best = (sustained.get("max_sustained") or {}).get("1, two-step-claim")
    if "1, two-step-claim" in (sustained.get("max_sustained") or {}):
        out.append({"target": "sustained >= 10,000 events/s (1 relay)" + tag,
                    "measured": f"{_fmt(best, 0)} events/s" if best else "none sustained",
                    "met": bool(best and best >= 10_000)})
    return out


def markdown(results: dict[str, Any]) -> str:
    """The human-readable table (and the context needed to read it)."""
    m = results["machine"]
    v = m["versions"]
    ev = results.get("event", {})
    lines = [
        f"# payment-events benchmark, {results['run']['date']} ({results['run']['mode']} run)",
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores, {m['memory_mb']:,} MB RAM, "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end', 'n/a')} "
        "(other work on the machine shows here). **PostgreSQL, the Kafka broker, the relay(s) "
        "and the load generators all share these cores**, so every figure also comes as a ratio against a "
        "baseline measured in the same run.",
        f"Versions: Python {v['python']}, confluent-kafka {v['confluent_kafka']} / librdkafka "
        f"{v['librdkafka']}, Kafka broker {v['kafka_broker']} (single KRaft node), PostgreSQL "
        f"{v['postgresql']} (synchronous_commit={m['postgresql_settings'].get('synchronous_commit')}).",
        f"Events: {ev.get('event_type')}, value {ev.get('value_bytes')} B + key {ev.get('key_bytes')} B + "
        f"{ev.get('headers')} headers {ev.get('header_bytes')} B = {ev.get('total_bytes')} B on the wire "
        "(before lz4).",
        "",
        "| Workload | Measured | Same-run baseline | Ratio |",
        "|---|---|---|---|",
    ]
    wp = results.get("write_path")
    if wp:
        a, b, c = wp["payment_alone_ms"], wp["payment_plus_outbox_ms"], wp["payment_plus_outbox_no_notify_ms"]
        lines.append(
            f"| 1. Write path p50, payment txn + outbox insert | {a and _fmt(b['p50'], 3)} ms | "
            f"payment txn alone {_fmt(a['p50'], 3)} ms | {wp['ratio_p50']}x |"
        )
        lines.append(
            f"| 1. Write path p99, payment txn + outbox insert | {_fmt(b['p99'], 3)} ms | "
            f"payment txn alone {_fmt(a['p99'], 3)} ms | {wp['ratio_p99']}x |"
        )
        lines.append(
            f"| 1. Write path p50, same without pg_notify | {_fmt(c['p50'], 3)} ms | "
            f"payment txn alone {_fmt(a['p50'], 3)} ms | {wp['ratio_p50_no_notify']}x |"
        )
        if "typical_payment_alone_ms" in wp:
            r, rb = wp["typical_payment_alone_ms"], wp["typical_payment_plus_outbox_ms"]
            lines.append(
                "| 1. Write path p50, typical payment txn (SELECT FOR UPDATE, UPDATE, INSERT attempt)"
                f" + outbox | {_fmt(rb['p50'], 3)} ms | typical txn alone {_fmt(r['p50'], 3)} ms | "
                f"{wp['typical_ratio_p50']}x |"
            )
        if "payment_plus_round_trip_ms" in wp:
            f, rf = wp["payment_plus_round_trip_ms"], wp["typical_payment_plus_round_trip_ms"]
            r = wp["typical_payment_alone_ms"]
            lines.append(
                "| 1. Write path p50, floor: payment txn + one `SELECT 1` (any extra statement's round trip)"
                f" | {_fmt(f['p50'], 3)} ms | payment txn alone {_fmt(a['p50'], 3)} ms | "
                f"{wp['floor_ratio_p50']}x |"
            )
            lines.append(
                "| 1. Write path p50, floor: typical payment txn + one `SELECT 1`"
                f" | {_fmt(rf['p50'], 3)} ms | typical txn alone {_fmt(r['p50'], 3)} ms | "
                f"{wp['typical_floor_ratio_p50']}x |"
            )
    drain = results.get("drain") or {}
    ceiling = (drain.get("raw_ceiling") or {}).get("events_per_second")
    naive = (drain.get("naive") or {}).get("events_per_second")
    if ceiling:
        lines.append(
            f"| 2a. Raw producer ceiling, {drain['events']:,} msgs from memory | "
            f"{_fmt(ceiling, 0)} events/s | (the baseline) | 1.0 |"
        )
    if naive:
        lines.append(
            f"| 2b. Naive relay (row by row), {drain['naive']['published']:,}-row sample | "
            f"{_fmt(naive, 0)} events/s | raw ceiling | {ratio(naive, ceiling or math.nan)} |"
        )
    for run in drain.get("relay", []):
        rate = run["events_per_second"]
        tag = " (profiled)" if run.get("profiled") else ""
        if run.get("patch"):
            tag += f", **{run['patch']} experiment**"
        if run.get("relay_overrides"):
            tag += f", RelayConfig{run['relay_overrides']}"
        if not run.get("finished", True):
            tag += f", NOT finished: {run['published']:,} published in the {_fmt(run['seconds'], 0)} s cap"
        lines.append(
            f"| 2. Drain {run['events']:,} events, {run['instances']} relay"
            f"{'s' if run['instances'] > 1 else ''}{tag} | "
            f"{_fmt(rate, 0)} events/s ({_fmt(run['seconds'], 2)} s) | raw ceiling; naive | "
            f"{ratio(rate, ceiling or math.nan)} of ceiling; {ratio(rate, naive or math.nan)}x naive |"
        )
    lines += _warm_start_lines(results, ceiling)
    lines += _sqlite_lines(results)
    sustained = results.get("sustained") or {}
    ack = sustained.get("ack_baseline") or {}
    for run in sustained.get("runs", []):
        lat = run["commit_to_ack_ms"]
        base = (ack.get(str(int(run["target_rate"]))) or ack.get("1000") or {}).get("produce_to_ack_ms", {})
        lines.append(
            f"| 3. Sustained {_fmt(run['target_rate'], 0)}/s target, {run['instances']} relay"
            f"{'s' if run['instances'] > 1 else ''}, {_fmt(run['duration_seconds'], 0)} s"
            f"{', **' + run['patch'] + ' experiment**' if run.get('patch') else ''}"
            f"{' (search step)' if run.get('search') else ''} | "
            f"achieved {_fmt(run['achieved_write_rate'], 0)}/s; "
            f"commit->ack p50/p99/p99.9 {_fmt(lat['p50'])}/{_fmt(lat['p99'])}/{_fmt(lat['p999'])} ms; "
            f"backlog {run['backlog_growth_per_second']:+.0f}/s (max {run['backlog_max']:,})"
            f"{pg_cpu(run)}"
            f"{_verdict(run)} | "
            f"raw produce->ack p99 {_fmt(base.get('p99'))} ms | "
            f"p99 {ratio(lat['p99'], base.get('p99', math.nan))}x; "
            f"rate {ratio(run['achieved_write_rate'], ceiling or math.nan)} of ceiling |"
        )
    best = sustained.get("max_sustained") or {}
    for instances, rate in best.items():
        lines.append(
            f"| 4. Highest sustained rate found, {instances} relay(s) | "
            f"{_fmt(rate, 0) if rate else 'none of the tried rates'} events/s | raw ceiling | "
            f"{ratio(rate or math.nan, ceiling or math.nan)} |"
        )
    mem = results.get("memory")
    if mem:
        lines.append(
            f"| 5. Relay peak RSS (all runs) | {_fmt(mem['peak_rss_mb'])} MB | "
            f"idle relay {_fmt(mem['idle_rss_mb'])} MB | {ratio(mem['peak_rss_mb'], mem['idle_rss_mb'])}x |"
        )
    lines += _issue16_lines(results)
    lines += _tail(results)
    return "\n".join(lines)


def _issue16_lines(results: dict[str, Any]) -> list[str]:
    """CPU per component of each drain and sustained run, the writer-scaling table, the soak's summary."""
    from bench.cpu import bottleneck, format_line
    from bench.scaling import markdown_lines

    runs = [(f"drain {r['events']:,} events, {r['instances']} relay(s)"
             + (" (profiled)" if r.get("profiled") else "")
             + (f", {r['patch']}" if r.get("patch") else ""), r)
            for r in (results.get("drain") or {}).get("relay", [])]
    runs += [(f"sustained {_fmt(r['target_rate'], 0)}/s, {r['instances']} relay(s)"
              + (f", {r['patch']}" if r.get("patch") else ""), r)
             for r in (results.get("sustained") or {}).get("runs", [])]
    lines: list[str] = []
    measured = [(label, run["cpu"]) for label, run in runs if run.get("cpu")]
    if measured:
        lines += ["", "## CPU per component (bench.cpu: cores busy, share of all cores, per event)",
                  ""]
        lines += [f"* {label}: {format_line(cpu)}; most CPU: {bottleneck(cpu)}" for label, cpu in measured]
    if results.get("scaling"):
        lines += ["", *markdown_lines(results["scaling"])]
    soak = results.get("soak")
    if soak:
        summary = soak["summary"]
        rss = summary["relay_rss_mb"]
        settings = soak["settings"]
        lines += ["", f"## Soak ({settings['minutes']:g} min at {settings['rate']:,.0f}/s)", "",
                  f"Relay RSS {rss['start']} -> {rss['end']} MB (max {rss['max']}; "
                  f"{rss['slope_mb_per_minute_second_half']:+} MB/min over the second half); backlog max "
                  f"{summary['backlog']['max']:,}; table {summary['table_total_mb']['start']} -> "
                  f"{summary['table_total_mb']['end']} MB. Series and summary: {', '.join(soak['files'])}."]
    return lines


def pg_cpu(run: dict[str, Any]) -> str:
    """``; PostgreSQL backends N us/event`` when the run measured it."""
    value = run.get("pg_backend_cpu_us_per_event")
    return f"; PostgreSQL backends {_fmt(value, 0)} us CPU/event" if value is not None else ""


def _warm_start_lines(results: dict[str, Any], ceiling: float | None) -> list[str]:
    """Workload 2w: each warm-start drain, as a ratio to the median of the unpinned (pre-fix) claim's."""
    warm = results.get("warm_start") or {}
    runs = warm.get("runs", [])
    before = [r["events_per_second"] for r in runs if r.get("patch")]
    base = sorted(before)[len(before) // 2] if before else math.nan
    lines = []
    for run in runs:
        rate = run["events_per_second"]
        what = "claim as before issue 16 (unpinned)" if run.get("patch") else "shipped claim"
        cap = _fmt(run["seconds"], 0)
        unfinished = "" if run.get("finished", True) else f", NOT finished in the {cap} s cap"
        lines.append(
            f"| 2w. Warm-start drain {run['events']:,} events, empty analysed outbox, no ANALYZE, round "
            f"{run.get('round')}, {what}{unfinished} | "
            f"{_fmt(rate, 0)} events/s ({_fmt(run['seconds'], 2)} s) | "
            f"unpinned claim (median); raw ceiling | {ratio(rate, base)}x; "
            f"{ratio(rate, ceiling or math.nan)} of ceiling |"
        )
    return lines


def _sqlite_lines(results: dict[str, Any]) -> list[str]:
    """Workload 3s: SQLite commit-to-ack, as a ratio to the median of the polled relay's runs."""
    runs = (results.get("sqlite_latency") or {}).get("runs", [])
    polled = sorted(r["commit_to_ack_ms"]["p99"] for r in runs if r["variant"] == "polled")
    base = polled[len(polled) // 2] if polled else math.nan
    lines = []
    for run in runs:
        lat = run["commit_to_ack_ms"]
        what = "polled every 50 ms (before)" if run["variant"] == "polled" else "shipped (data_version watch)"
        lines.append(
            f"| 3s. SQLite outbox, {_fmt(run['target_rate'], 0)}/s target, "
            f"{_fmt(run['duration_seconds'], 0)} s,"
            f" round {run.get('round')}, {what} | achieved {_fmt(run['achieved_write_rate'], 0)}/s; "
            f"commit->ack p50/p99/p99.9 {_fmt(lat['p50'])}/{_fmt(lat['p99'])}/{_fmt(lat['p999'])} ms; "
            f"relay CPU {run['relay_cpu_seconds']} s | polled p99 (median) {_fmt(base)} ms | "
            f"p99 {ratio(lat['p99'], base)}x |"
        )
    return lines


def _tail(results: dict[str, Any]) -> list[str]:
    """Targets, profile, skipped steps, run and settings: the part under the table."""
    lines: list[str] = []
    lines += ["", "## Targets (issue 6)", "", "| Target | Measured | Met |", "|---|---|---|"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['measured']} | {_met(t['met'])} |")
    for name, profile in (results.get("profile") or {}).items():
        lines += [
            "",
            f"## Where a draining relay spends its time: {name} claim (pyinstrument, one instance, "
            f"{_fmt(profile.get('events_per_second'), 0)} events/s while profiled)",
            "",
            "```",
            *profile["top"],
            "```",
        ]
    skipped = results["run"].get("skipped_for_time") or []
    if skipped:
        lines += ["", "Skipped to stay within the 10-minute budget: " + "; ".join(skipped) + "."]
    lines += [
        "",
        f"Run: {results['run']['mode']}, {results['run'].get('seconds', 0):.0f} s, started "
        f"{results['run']['started_at']}.",
        "",
        f"Settings: `{json.dumps(results.get('settings', {}), sort_keys=True)}`",
        "",
    ]
    return lines


def write(results: dict[str, Any], directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``<date>.json`` and ``<date>.md`` (``<date>-quick`` for quick runs); return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = results["run"]["date"] + ("-quick" if results["run"]["mode"] == "quick" else "")
    if results["run"]["plan"].get("rates"):
        stem += "-rates"
    if results["run"].get("tag"):
        stem += "-" + results["run"]["tag"]
    json_path = directory / f"{stem}.json"
    md_path = directory / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
