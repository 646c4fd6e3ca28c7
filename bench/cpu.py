"""CPU accounting per component over a time window: which physical limit of the machine stops a run.

``CpuMeter`` samples, at the start and the end of a window (and optionally every ``interval`` seconds
between, for plots), the cumulative CPU time of:

* **postgresql**: every PostgreSQL server process: each postmaster (a ``postgres`` process whose parent
  is not one) and all its children (backends of every database, checkpointer, WAL writer, autovacuum
  ...). The postmaster's own times include its *reaped* children (``children_user/system``), so a backend
  that connected and exited inside the window is counted too: the end sample holds its full CPU in the
  postmaster's reaped total, the start sample held its CPU up to then as a live child.
* **broker**: every Kafka broker JVM (``java`` whose command line runs ``kafka.Kafka`` or the KRaft
  server class; ``scripts/services`` starts ``kafka.Kafka``), all its threads.
* **relay** and **writers**: the pids the caller gives (the harness's subprocesses).
* **other**: the machine's busy time (``psutil.cpu_times()``, all cores) minus the four above: this
  harness, other users' work on a shared machine, the kernel's interrupts.
* **idle**: idle + iowait of all cores.

A given pid that exits inside the window counts up to its last sample (take the end sample before
stopping the relays; with ``interval`` the loss is at most one interval). The capacity of the window is
``cores x wall seconds``; each component gets its seconds, its share of that capacity, the cores it kept
busy on average, and microseconds per event when an event count is given.

``python -m bench.cpu --seconds 5`` prints the breakdown of the machine for 5 s (nothing started).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COMPONENTS = ("postgresql", "broker", "relay", "writers", "other", "idle")
"""The breakdown's keys, in report order."""
PROCESS_COMPONENTS = ("postgresql", "broker", "relay", "writers")
_BROKER_CLASSES = ("kafka.Kafka", "kafka.server.KafkaRaftServer")
_IDLE_FIELDS = ("idle", "iowait")
_NOT_ADDED = ("guest", "guest_nice")  # already counted inside user / nice


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one instant: the machine's busy and idle time (all cores) and, per
    component, each process's user + system time (pid -> seconds)."""

    wall: float
    busy: float
    idle: float
    processes: Mapping[str, Mapping[int, float]] = field(default_factory=dict)


def component_seconds(start: Mapping[int, float], end: Mapping[int, float], *, reaped: bool = False) -> float:
    """CPU seconds of one component between two samples.

    Default: each pid's end minus its start (a pid born in the window counts from zero; one missing from
    the end sample counts nothing more). ``reaped``: the component's parent process carries its reaped
    children's times (PostgreSQL's postmaster), so a child gone by the end sample is in the parent's end
    value with its whole life: the component is then the difference of the two totals, which subtracts
    that child's start value once."""
    if reaped:
        return float(sum(end.values()) - sum(start.values()))
    return float(sum(seconds - start.get(pid, 0.0) for pid, seconds in end.items()))


def _seconds_of(name: str, start: CpuSample, end: CpuSample) -> float:
    return component_seconds(
        start.processes.get(name, {}), end.processes.get(name, {}), reaped=name == "postgresql"
    )


def breakdown(
    start: CpuSample, end: CpuSample, cores: int, events: int | None = None
) -> dict[str, Any]:
    """Pure arithmetic over two samples: seconds, share of capacity (cores x wall), cores busy on average
    and (with ``events``) microseconds per event, for each of :data:`COMPONENTS` and for the total busy
    time. ``other`` is the busy time not explained by the processes (it can be slightly negative when the
    samples are skewed: it is reported as measured)."""
    wall = end.wall - start.wall
    capacity = cores * wall
    seconds = {name: _seconds_of(name, start, end) for name in PROCESS_COMPONENTS}
    busy = end.busy - start.busy
    seconds["other"] = busy - sum(seconds[name] for name in PROCESS_COMPONENTS)
    seconds["idle"] = end.idle - start.idle
    out: dict[str, Any] = {
        "wall_seconds": round(wall, 3),
        "cores": cores,
        "capacity_cpu_seconds": round(capacity, 3),
        "busy_cpu_seconds": round(busy, 3),
        "busy_share": round(busy / capacity, 4) if capacity > 0 else None,
        "events": events,
        "components": {},
    }
    for name in COMPONENTS:
        value = seconds[name]
        out["components"][name] = {
            "cpu_seconds": round(value, 3),
            "share_of_capacity": round(value / capacity, 4) if capacity > 0 else None,
            "cores_busy": round(value / wall, 3) if wall > 0 else None,
            "us_per_event": round(value / events * 1e6, 1) if events and name != "idle" else None,
        }
    out["busy_us_per_event"] = round(busy / events * 1e6, 1) if events else None
    return out


def series_point(previous: CpuSample, current: CpuSample) -> dict[str, float]:
    """One plot point: the average cores each component kept busy between two consecutive samples."""
    wall = current.wall - previous.wall
    if wall <= 0:
        return {}
    point = {"busy": round((current.busy - previous.busy) / wall, 3)}
    explained = 0.0
    for name in PROCESS_COMPONENTS:
        value = _seconds_of(name, previous, current)
        explained += value
        point[name] = round(value / wall, 3)
    point["other"] = round((current.busy - previous.busy - explained) / wall, 3)
    point["idle"] = round((current.idle - previous.idle) / wall, 3)
    return point


def bottleneck(result: Mapping[str, Any]) -> str:
    """The component that used the most CPU in a breakdown (``idle`` excluded), with its cores busy."""
    components = result["components"]
    name = max((*PROCESS_COMPONENTS, "other"), key=lambda n: components[n]["cpu_seconds"])
    return f"{name} ({components[name]['cores_busy']} of {result['cores']} cores)"


def _process_seconds(times: Any, with_children: bool) -> float:
    value = float(times.user + times.system)
    if with_children:
        value += float(times.children_user + times.children_system)
    return value


def _is_broker(cmdline: Sequence[str]) -> bool:
    return any(arg in _BROKER_CLASSES for arg in cmdline)


class _Finder:
    """Which pids are PostgreSQL and broker processes (the broker's pid is remembered by create time)."""

    def __init__(self) -> None:
        self._java: dict[int, tuple[float, bool]] = {}

    def scan(self) -> dict[str, dict[int, float]]:
        import psutil

        postgres: dict[int, float] = {}
        broker: dict[int, float] = {}
        procs = {p.pid: p for p in psutil.process_iter(["name", "ppid", "create_time"])}
        for pid, proc in procs.items():
            info = proc.info
            name = info.get("name")
            try:
                if name == "postgres":
                    parent = procs.get(info.get("ppid") or 0)
                    postmaster = parent is None or parent.info.get("name") != "postgres"
                    postgres[pid] = _process_seconds(proc.cpu_times(), with_children=postmaster)
                elif name == "java":
                    created = float(info.get("create_time") or 0.0)
                    known = self._java.get(pid)
                    if known is None or known[0] != created:
                        known = (created, _is_broker(proc.cmdline()))
                        self._java[pid] = known
                    if known[1]:
                        broker[pid] = _process_seconds(proc.cpu_times(), with_children=False)
            except psutil.Error:
                continue  # exited (or unreadable) since the scan: its CPU shows in the next sample
        return {"postgresql": postgres, "broker": broker}


def _machine_times() -> tuple[float, float]:
    import psutil

    times = psutil.cpu_times()._asdict()
    idle = sum(float(times.get(name, 0.0)) for name in _IDLE_FIELDS)
    total = sum(float(v) for k, v in times.items() if k not in _NOT_ADDED)
    return total - idle, idle


class CpuMeter:
    """Samples the components at ``start()`` and ``stop()`` (and every ``interval`` s between, in a
    daemon thread, when ``interval`` is set); ``stop()`` returns :func:`breakdown` plus the plot series.

    ``relay_pids`` and ``writer_pids`` may be extended before ``start()`` (lists are read at each sample).
    """

    def __init__(
        self,
        *,
        relay_pids: Iterable[int] = (),
        writer_pids: Iterable[int] = (),
        interval: float | None = 1.0,
        cores: int | None = None,
    ) -> None:
        import psutil

        self.relay_pids = list(relay_pids)
        self.writer_pids = list(writer_pids)
        self.interval = interval
        self.cores = int(cores or psutil.cpu_count(logical=True) or 1)
        self._finder = _Finder()
        self._last_seen: dict[int, float] = {}
        self._lock = threading.Lock()
        self.samples: list[CpuSample] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _given(self, pids: Sequence[int]) -> dict[int, float]:
        import psutil

        out: dict[int, float] = {}
        for pid in pids:
            try:
                out[pid] = _process_seconds(psutil.Process(pid).cpu_times(), with_children=False)
                self._last_seen[pid] = out[pid]
            except psutil.Error:
                if pid in self._last_seen:  # exited: count it up to its last sample
                    out[pid] = self._last_seen[pid]
        return out

    def sample(self) -> CpuSample:
        """Take one sample now (and keep it)."""
        with self._lock:
            wall = time.time()
            processes = self._finder.scan()
            processes["relay"] = self._given(self.relay_pids)
            processes["writers"] = self._given(self.writer_pids)
            busy, idle = _machine_times()
            point = CpuSample(wall=wall, busy=busy, idle=idle, processes=processes)
            self.samples.append(point)
            return point

    def start(self) -> CpuMeter:
        """First sample; then the periodic ones, if any."""
        self.sample()
        if self.interval:
            self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stopping.wait(self.interval):
            self.sample()

    def stop(self, events: int | None = None) -> dict[str, Any]:
        """Last sample; the breakdown over the whole window and the per-interval series (cores busy)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()
        return self.result(events)

    def result(self, events: int | None = None) -> dict[str, Any]:
        """The breakdown between the first and the last sample taken so far, with the series."""
        first, last = self.samples[0], self.samples[-1]
        out = breakdown(first, last, self.cores, events)
        out["series"] = [
            {"t": round(b.wall - first.wall, 1), **series_point(a, b)}
            for a, b in zip(self.samples, self.samples[1:], strict=False)
        ]
        return out


def format_line(result: Mapping[str, Any]) -> str:
    """``postgresql 0.82 cores (41%, 120 us/event); broker ...``: one line for a log or a table cell."""
    parts = []
    for name in COMPONENTS:
        item = result["components"][name]
        text = f"{name} {item['cores_busy']:.2f} cores ({item['share_of_capacity'] * 100:.0f}%"
        if item["us_per_event"] is not None:
            text += f", {item['us_per_event']:,.0f} us/event"
        parts.append(text + ")")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Measure the machine for a few seconds and print the breakdown (a check of the accounting)."""
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--relay-pid", type=int, action="append", default=[])
    parser.add_argument("--writer-pid", type=int, action="append", default=[])
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = parser.parse_args(argv)
    meter = CpuMeter(relay_pids=args.relay_pid, writer_pids=args.writer_pid).start()
    time.sleep(args.seconds)
    result = meter.stop()
    print(json.dumps(result, indent=1) if args.json else format_line(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
