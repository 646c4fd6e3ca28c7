"""build_relay wiring that needs no server: the one-relay rule of an SQLite outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from payment_events.errors import ConfigurationError
from payment_events.outbox.migrate import upgrade
from payment_events.relay import RelayConfig
from payment_events.service import build_relay

NOWHERE = "127.0.0.1:1"  # no broker needed: nothing is produced


def test_a_second_relay_on_the_same_sqlite_outbox_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    """SQLite has no shard leases, so one relay holds a lock on the outbox file and a second is refused
    with a clear message; once the first is closed another may start."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    upgrade(url)
    first = build_relay(url, NOWHERE, RelayConfig())
    try:
        with pytest.raises(ConfigurationError, match="another relay is already running"):
            build_relay(url, NOWHERE, RelayConfig())
    finally:
        first.close()
    second = build_relay(url, NOWHERE, RelayConfig())
    second.close()


def test_weak_producer_settings_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """A relay whose librdkafka timeout would end its wait early is refused, and releases its lock."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    upgrade(url)
    with pytest.raises(ConfigurationError, match=r"message\.timeout\.ms"):
        build_relay(url, NOWHERE, RelayConfig(producer_overrides={"message.timeout.ms": 1000}))
    build_relay(url, NOWHERE, RelayConfig()).close()


def test_an_sqlite_relay_wakes_on_commits_unless_listening_is_off(tmp_path: Path) -> None:
    """On an SQLite file the relay watches the file's change counter; with listen=False it only polls."""
    from payment_events.relay.wakeup import SleepWaker, SqliteChangeWaker

    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    upgrade(url)
    relay = build_relay(url, NOWHERE, RelayConfig())
    try:
        assert isinstance(relay._waker, SqliteChangeWaker)
    finally:
        relay.close()
    relay = build_relay(url, NOWHERE, RelayConfig(listen=False))
    try:
        assert isinstance(relay._waker, SleepWaker)
    finally:
        relay.close()


def test_relay_gc_sets_the_relay_thresholds_inside_and_restores_the_previous_ones() -> None:
    """The relay's garbage-collector thresholds apply only inside relay_gc(); None leaves them alone."""
    import gc

    from payment_events.service import RELAY_GC_THRESHOLD, relay_gc

    before = gc.get_threshold()
    with relay_gc():
        assert gc.get_threshold() == RELAY_GC_THRESHOLD
    assert gc.get_threshold() == before
    with relay_gc(None):
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before
