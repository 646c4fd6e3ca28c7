"""``python -m tests.simulation [--seed N] [--seeds K] [--steps N] [--no-guard] [--no-key-lock]
[--dlq-in-loop] [--no-late-topic]``:

Run the relay simulation; exit 1 at the first broken invariant (the message says how
to replay it). ``make simulate`` runs the long mode (millions of steps over several seeds)."""

from __future__ import annotations

import argparse
import sys
import time

from tests.simulation.sim import Options, Violation, run


def main(argv: list[str] | None = None) -> int:
    """Run the seeds, print one line each."""
    parser = argparse.ArgumentParser(prog="python -m tests.simulation")
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many consecutive seeds")
    parser.add_argument("--steps", type=int, default=100_000, help="steps per seed")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--no-guard", action="store_true", help="without the topic guard (pre-issue-11)")
    parser.add_argument("--no-key-lock", action="store_true", help="writers of a key not serialised")
    parser.add_argument("--dlq-in-loop", action="store_true", help="dead-letter copies inside the cycle")
    parser.add_argument("--no-late-topic", action="store_true", help="every topic exists from the start")
    args = parser.parse_args(argv)
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        options = Options(
            seed=seed, steps=args.steps, keys=args.keys, guard=not args.no_guard,
            key_lock=not args.no_key_lock, dlq_in_loop=args.dlq_in_loop,
            late_topic=not args.no_late_topic,
        )
        started = time.monotonic()
        try:
            stats = run(options)
        except Violation as exc:
            failed += 1
            print(f"seed {seed}: VIOLATION {exc}", flush=True)
            continue
        took = time.monotonic() - started
        summary = " ".join(f"{k}={v}" for k, v in sorted(stats.counts.items()))
        print(f"seed {seed}: ok, {args.steps} steps in {took:.1f} s; {summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
