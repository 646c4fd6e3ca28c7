"""Relay processes for the chaos suite: the real relay in its own process, SIGKILLed and restarted at will."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.chaos.infra import ROOT, relay_url

LOG_DIR = Path(os.environ.get("PAYMENT_EVENTS_CHAOS_LOGS", ROOT / ".services" / "chaos-logs"))


DELIVERY_ENV = "PAYMENT_EVENTS_CHAOS_DELIVERY"
"""The relays' delivery mode for a chaos run (``at-least-once`` unless set; ``--delivery`` sets it)."""


def delivery_mode() -> str:
    """The delivery mode this chaos run's relays use."""
    return os.environ.get(DELIVERY_ENV, "at-least-once")


def relay_options(dlq_topic: str, **overrides: Any) -> dict[str, Any]:
    """RelayConfig options for chaos runs: fast lease takeover and short backoff caps."""
    return {
        "delivery": delivery_mode(),
        "batch_size": 500,
        "poll_interval_seconds": 0.5,
        "lease_refresh_seconds": 1.0,
        "backoff_base_seconds": 0.1,
        "backoff_cap_seconds": 3.0,
        "backlog_interval_seconds": 5.0,
        "dlq_topic": dlq_topic,
        **overrides,
    }


_RUNNING: set[RelayProcess] = set()


def kill_leftover_relays() -> int:
    """SIGKILL every relay process this suite started and did not stop (after an error or Ctrl-C)."""
    leftovers = [r for r in _RUNNING if r.alive]
    for relay in leftovers:
        relay.kill()
    _RUNNING.clear()
    return len(leftovers)


atexit.register(kill_leftover_relays)


class RelayProcess:
    """One real relay in its own process (``tests.chaos.relay_main``); SIGKILL and restart at will."""

    def __init__(self, name: str, database_url: str, bootstrap: str, options: dict[str, Any]) -> None:
        self.name, self.options = name, options
        self.url, self.bootstrap = relay_url(database_url), bootstrap
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.unexpected_exits: list[int] = []
        self._ready_mark = 0

    _READY = '"relay.shards"'
    """The log event that shows a started relay has reached its loop (it logs its first shard lease)."""

    @property
    def ready(self) -> bool:
        """True once the current process reached its relay loop."""
        return self.alive and self._log_text().count(self._READY) > self._ready_mark

    def start(self, *, wait: bool = False, timeout: float = 60.0) -> None:
        """Start (or restart) the relay process; with ``wait``, return once it owns its shards."""
        self._check_exit()
        marker = self._READY
        seen = self._ready_mark = self._log_text().count(marker)
        # This checkout's code (src first), so a suite run from an exported snapshot tests that snapshot.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.chaos.relay_main",
                    self.url,
                    self.bootstrap,
                    json.dumps(self.options),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while wait and self._log_text().count(marker) <= seen:
            if time.monotonic() > deadline or not self.alive:
                raise RuntimeError(f"relay {self.name} did not start; see {self.log_path}")
            time.sleep(0.1)

    def log_count(self, marker: str) -> int:
        """How often ``marker`` appears in this relay's log (all its runs)."""
        return self._log_text().count(marker)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _check_exit(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self.unexpected_exits.append(self._proc.returncode)
            self._proc = None

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to finish a batch or mark anything."""
        self._check_exit()
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(30)
            self._proc = None
            self.kills += 1

    def terminate(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait for the graceful stop; SIGKILL after ``timeout``. Returns the exit code."""
        self._check_exit()
        if self._proc is None:
            return None
        self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait(30)
        self._proc = None
        return code

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the relay's log (for a failing scenario's report)."""
        return "\n".join(self._log_text().splitlines()[-lines:])
