"""The benchmark harness's pure arithmetic (``bench/``): CPU accounting, fresh event ids, the soak summary."""

from __future__ import annotations

import pytest
from bench.cpu import CpuSample, bottleneck, breakdown, component_seconds, series_point
from bench.events import EventFactory
from bench.soak import purge_note, summarize
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


def _point(t: float, rss: float, pending: int, total: int, table: float) -> dict[str, float]:
    return {"t": t, "relay_rss_mb": rss, "backlog": pending, "published_total": total,
            "table_total_mb": table, "indexes_mb": table / 10}


def test_soak_summary_takes_the_rss_slope_over_the_second_half_only() -> None:
    """Start-up growth in the first half does not count: a relay flat after warming up has slope 0,
    and the publish rate is taken between the first and the last sample."""
    series = [_point(0, 50, 0, 0, 1.0), _point(60, 90, 10, 1000, 2.0), _point(120, 100, 5, 2000, 3.0),
              _point(180, 100, 5, 3000, 4.0), _point(240, 100, 5, 4000, 5.0)]
    summary = summarize(series)
    assert summary["relay_rss_mb"] == {"start": 50, "end": 100, "max": 100,
                                      "slope_mb_per_minute_second_half": 0.0}
    assert summary["backlog"]["max"] == 10
    assert summary["backlog"]["slope_per_second_second_half"] == 0.0
    assert summary["table_total_mb"]["growth_mb_per_minute"] == 1.0
    assert summary["mean_publish_rate"] == pytest.approx(4000 / 240, abs=0.1)


def test_soak_summary_reports_a_leak_as_a_positive_rss_slope() -> None:
    """RSS rising 2 MB a minute through the second half shows as +2 MB/min."""
    series = [_point(60.0 * i, 80 + 2 * i, 0, 0, 1.0) for i in range(11)]
    assert summarize(series)["relay_rss_mb"]["slope_mb_per_minute_second_half"] == pytest.approx(2.0)


def test_purge_note_says_whether_the_purge_could_delete_anything() -> None:
    """With the default 7-day retention a 10-minute soak purges nothing; a short retention exercises it."""
    base = {"minutes": 10.0, "purge_interval_seconds": 60.0}
    assert "no row became old enough" in purge_note({**base, "retention_seconds": 7 * 24 * 3600.0})
    assert "exercised" in purge_note({**base, "retention_seconds": 120.0})
    assert "off" in purge_note({**base, "retention_seconds": 0.0})
