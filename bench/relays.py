"""Start, watch and stop relay instances (``bench.relay_proc`` subprocesses) for the drain and sustained runs.

Each instance is a separate process (the GIL: two relays in one process would share one core). The
harness samples every instance's RSS with psutil while it runs and reads the summary the instance
writes when it stops (including its ``VmHWM`` high-water RSS, the exact figure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.env import ROOT

_SHARD_LOCKS = sa.text(
    "SELECT pid, count(*) FROM pg_locks"
    " WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND objid < 1073741824"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " GROUP BY pid"
)


class RelayGroup:
    """``count`` relay processes over one database; ``start()``, ``wait_balanced()``, ``stop()``."""

    def __init__(
        self,
        database_url: str,
        bootstrap: str,
        count: int,
        config: dict[str, Any],
        *,
        profile: Path | None = None,
        patch: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.bootstrap = bootstrap
        self.count = count
        self.config = config
        self.profile = profile
        self.patch = patch
        self._dir = Path(tempfile.mkdtemp(prefix="pe-bench-relay-"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._peak_rss: list[int] = [0] * count
        self.rss_timeline: list[tuple[float, list[float]]] = []
        """(seconds since start, RSS MB of each instance), one point a second."""
        self._sampling = False
        self._sampler: threading.Thread | None = None
        self.summaries: list[dict[str, Any]] = []
        self.idle_rss_mb: list[float] = []
        """Each instance's peak RSS up to the moment the shards were balanced (started, no work yet)."""

    def start(self) -> None:
        """Spawn the instances and begin sampling their RSS."""
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        for i in range(self.count):
            argv = [
                sys.executable,
                "-m",
                "bench.relay_proc",
                "--url",
                self.database_url,
                "--bootstrap",
                self.bootstrap,
                "--out",
                str(self._dir / f"relay-{i}.json"),
                "--config",
                json.dumps(self.config),
            ]
            if self.profile is not None and i == 0:
                argv += ["--profile", str(self.profile)]
            if self.patch is not None:
                argv += ["--patch", self.patch]
            self._procs.append(subprocess.Popen(argv, cwd=ROOT, env=env))
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()

    @property
    def pids(self) -> list[int]:
        """The instances' process ids (for CPU accounting, :mod:`bench.cpu`)."""
        return [proc.pid for proc in self._procs]

    def _sample(self) -> None:
        import psutil

        handles: list[Any] = []
        for proc in self._procs:
            try:
                handles.append(psutil.Process(proc.pid))
            except psutil.Error:
                handles.append(None)
        started = time.monotonic()
        next_point = started
        while self._sampling:
            current: list[float] = []
            for i, handle in enumerate(handles):
                rss = 0
                if handle is not None:
                    try:
                        rss = handle.memory_info().rss
                    except psutil.Error:
                        handles[i] = None
                self._peak_rss[i] = max(self._peak_rss[i], rss)
                current.append(round(rss / 2**20, 1))
            now = time.monotonic()
            if now >= next_point:
                self.rss_timeline.append((round(now - started, 1), current))
                next_point += 1.0
            time.sleep(0.1)

    def wait_balanced(self, engine: sa.Engine, shard_count: int = 64, timeout: float = 60.0) -> float:
        """Wait until the instances own every shard in fair shares; return how long that took."""
        started = time.monotonic()
        fair = -(-shard_count // self.count)
        while time.monotonic() - started < timeout:
            self._check_alive()
            with engine.connect() as conn:
                held = [int(n) for _, n in conn.execute(_SHARD_LOCKS).all()]
            if len(held) == self.count and sum(held) == shard_count and max(held) <= fair:
                self.idle_rss_mb = [round(r / 2**20, 1) for r in self._peak_rss]
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"relay instances did not balance their shards within {timeout} s: {held}")

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a relay instance exited early with code {proc.returncode}")

    def stop(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """SIGTERM every instance (graceful stop), wait up to ``timeout`` s (a relay finishes its current
        cycle first), then SIGKILL (safe: unmarked rows are simply claimed again), stop sampling, read
        their summaries (a killed instance has none)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._sampling = False
        if self._sampler is not None:
            self._sampler.join(5)
        self.summaries = []
        for i in range(self.count):
            path = self._dir / f"relay-{i}.json"
            summary: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
            summary["sampled_peak_rss_mb"] = round(self._peak_rss[i] / 2**20, 1)
            summary["exit_code"] = self._procs[i].returncode
            self.summaries.append(summary)
            path.unlink(missing_ok=True)
        return self.summaries

    def __enter__(self) -> RelayGroup:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._sampling:
            self.stop()


def peak_rss_mb(summaries: list[dict[str, Any]]) -> float:
    """The largest peak RSS of the instances (the larger of VmHWM and the sampled peak)."""
    values = [max(s.get("peak_rss_mb", 0.0), s.get("sampled_peak_rss_mb", 0.0)) for s in summaries]
    return max(values) if values else 0.0
