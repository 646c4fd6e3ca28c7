"""The SQLite change waker: wakes on another connection's commit, times out otherwise."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from payment_events.relay.wakeup import SqliteChangeWaker


def _database(tmp_path: Path) -> str:
    path = str(tmp_path / "outbox.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x INTEGER)")
    return path


def _commit_row(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO t VALUES (1)")


def test_wait_returns_true_soon_after_another_connection_commits(tmp_path: Path) -> None:
    """A commit from another connection ends a long wait early, and reports True."""
    path = _database(tmp_path)
    waker = SqliteChangeWaker(path)
    try:
        timer = threading.Timer(0.2, _commit_row, args=(path,))
        timer.start()
        started = time.monotonic()
        assert waker.wait(30.0) is True
        assert time.monotonic() - started < 20.0  # far below the 30 s timeout: it was the commit
        timer.join()
    finally:
        waker.close()


def test_wait_times_out_without_a_commit_and_each_commit_wakes_once(tmp_path: Path) -> None:
    """With nothing committed the wait returns False; a commit made before the wait wakes it once."""
    path = _database(tmp_path)
    waker = SqliteChangeWaker(path, idle_interval=0.005)
    try:
        assert waker.wait(0.05) is False
        _commit_row(path)
        assert waker.wait(5.0) is True
        assert waker.wait(0.05) is False
    finally:
        waker.close()


def test_an_unopenable_file_only_sleeps(tmp_path: Path) -> None:
    """A path that cannot be opened leaves a waker that sleeps out its timeout and never reports."""
    waker = SqliteChangeWaker(str(tmp_path / "missing-dir" / "outbox.db"))
    try:
        assert waker.wait(0.01) is False
    finally:
        waker.close()
