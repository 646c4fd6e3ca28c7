"""The benchmark harness's pure arithmetic (``bench/``): CPU accounting, fresh event ids."""

from __future__ import annotations

import pytest
from bench.cpu import CpuSample, bottleneck, breakdown, component_seconds, series_point
from bench.events import EventFactory
from bench.writer_proc import with_fresh_id


def _sample(wall: float, busy: float, idle: float, **processes: dict[int, float]) -> CpuSample:
    return CpuSample(wall=wall, busy=busy, idle=idle, processes=processes)


def test_component_seconds_counts_each_pid_from_its_start_value() -> None:
    """A pid seen at both samples counts its difference; one born in the window counts from zero."""
    assert component_seconds({1: 10.0}, {1: 12.5, 2: 0.5}) == pytest.approx(3.0)


def test_component_seconds_with_reaped_children_subtracts_a_dead_childs_start_once() -> None:
    """A PostgreSQL backend that exits in the window moves into the postmaster's reaped total: only the
    CPU it used inside the window is counted."""
    start = {100: 1.0, 101: 4.0}  # postmaster (own + reaped), live backend with 4 s so far
    end = {100: 1.0 + 6.0}  # the backend exited with 6 s in total and was reaped
    assert component_seconds(start, end, reaped=True) == pytest.approx(2.0)
    assert component_seconds(start, end) == pytest.approx(6.0)  # the naive per-pid sum would overcount


def test_breakdown_shares_capacity_of_cores_times_wall_and_leaves_the_rest_to_other() -> None:
    """Each component's share is its CPU over cores x wall seconds; "other" is busy time no process
    explains; per-event figures divide by the event count."""
    start = _sample(0.0, 100.0, 50.0, postgresql={1: 0.0}, broker={2: 0.0}, relay={3: 0.0}, writers={})
    end = _sample(10.0, 116.0, 54.0, postgresql={1: 8.0}, broker={2: 1.0}, relay={3: 5.0}, writers={})
    result = breakdown(start, end, cores=2, events=10_000)
    parts = result["components"]
    assert result["capacity_cpu_seconds"] == 20.0
    assert result["busy_share"] == 0.8
    assert parts["postgresql"]["share_of_capacity"] == 0.4
    assert parts["postgresql"]["cores_busy"] == 0.8
    assert parts["postgresql"]["us_per_event"] == 800.0
    assert parts["other"]["cpu_seconds"] == 2.0
    assert parts["idle"]["cpu_seconds"] == 4.0
    assert parts["idle"]["us_per_event"] is None
    assert bottleneck(result) == "postgresql (0.8 of 2 cores)"


def test_series_point_gives_cores_busy_per_component_between_two_samples() -> None:
    """A plot point is CPU seconds per wall second of each component over one interval."""
    a = _sample(0.0, 0.0, 0.0, relay={3: 1.0})
    b = _sample(2.0, 3.0, 1.0, relay={3: 2.0})
    point = series_point(a, b)
    assert point["relay"] == 0.5
    assert point["busy"] == 1.5
    assert point["other"] == 1.0
    assert point["idle"] == 0.5


def test_with_fresh_id_replaces_the_event_id_in_row_value_and_header() -> None:
    """A recycled event carries its new id everywhere and nothing of the old one."""
    event = EventFactory(1).encoded()
    new_id = "01234567-89ab-7cde-8f01-23456789abcd"
    copy = with_fresh_id(event, new_id)
    assert copy.event_id == new_id
    assert new_id.encode() in copy.value
    assert event.event_id.encode() not in copy.value
    assert dict(copy.headers)["ce_id"] == new_id.encode()
    assert copy.key == event.key
