"""The relay simulation in its short mode (make test), and proof that its checks catch what issue 11
fixed when a fix is switched off."""

from __future__ import annotations

import pytest

from tests.simulation.sim import Options, Violation, run


def test_short_simulation_keeps_every_invariant_for_100k_steps() -> None:
    """100,000 seeded steps of writers, faults, crashes and takeovers break no invariant, and every
    committed valid event ends published and on its topic."""
    stats = run(Options(seed=11, steps=100_000))
    assert stats.counts["events_published"] > 10_000
    assert stats.counts["crashes"] > 1_000
    assert stats.counts.get("events_dead", 0) >= 1  # poison events exist, and only they die


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (Options(seed=1, steps=20_000, guard=False, late_topic=False), "valid event"),
        (Options(seed=1, steps=20_000, guard=False), "clean cycle"),
        (Options(seed=1, steps=20_000, key_lock=False), "key b'"),
        (Options(seed=1, steps=20_000, dlq_in_loop=True), "clean cycle"),
    ],
    ids=["no-guard-size", "no-guard-missing-topic", "no-key-lock", "dlq-in-loop"],
)
def test_the_simulation_finds_each_fixed_defect_when_its_fix_is_off(options: Options, expected: str) -> None:
    """Without the topic guard, the writers' key lock or the dead-letter copier's own producer, the
    simulation stops at a violation naming the broken invariant."""
    with pytest.raises(Violation, match=expected):
        run(options)


def test_a_failing_seed_replays_exactly() -> None:
    """The same options stop at the same step with the same message."""
    options = Options(seed=2, steps=5_000, key_lock=False)
    messages = []
    for _ in range(2):
        with pytest.raises(Violation) as caught:
            run(options)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
