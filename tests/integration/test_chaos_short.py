"""The short fault-injection suite: the chaos scenarios with small counts, inside the normal test run.

Each test runs the same scenario code as ``python -m tests.chaos`` (real relay processes, real faults,
verdict from the audit of the real topic plus kcat) and asserts its verdict; the one-line figures are in
the assertion message. No wall-clock figure is asserted here (the full suite checks recovery times).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.chaos import scenarios
from tests.chaos.harness import ScenarioResult, kill_leftover_relays
from tests.chaos.infra import free_port
from tests.chaos.proxy import FaultProxy
from tests.chaos.relays import DELIVERY_ENV
from tests.chaos.scale import SHORT

servers = pytest.mark.usefixtures("_pg_admin_url", "kafka_bootstrap")
pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _no_leftover_relays() -> Iterator[None]:
    """A scenario that raised must not leave relay processes behind."""
    yield
    kill_leftover_relays()


def check(result: ScenarioResult) -> None:
    """Print the scenario's line and fail with it unless the scenario passed."""
    print(result.line())
    assert result.passed, result.line()


@servers
def test_relay_sigkill_during_a_stream_loses_nothing() -> None:
    """SIGKILLing and restarting the relay every few seconds loses no event and keeps per-key order."""
    result = scenarios.relay_sigkill(SHORT)
    check(result)
    assert result.committed == SHORT.relay_kill_events
    assert result.delivered == result.committed


@servers
def test_pg_terminate_backend_on_relay_sessions_loses_nothing() -> None:
    """Killing the relay's PostgreSQL sessions mid-stream: the relay reconnects and nothing is lost."""
    check(scenarios.pg_terminate(SHORT))


@servers
def test_visibility_gap_held_transaction_is_published_after_commit() -> None:
    """Concurrent writers with commit delays and one long-held transaction: no event is skipped."""
    result = scenarios.visibility_gap(SHORT)
    check(result)
    assert result.delivered == result.committed


@servers
def test_poison_and_malformed_rows_are_dead_lettered_without_holding_others() -> None:
    """An event above the broker's size limit and rows written by hand with invalid headers JSON, an
    illegal topic name or an empty payload go dead with a reason, the relay keeps running, and every other
    event, including the same keys' later ones, is delivered."""
    check(scenarios.poison(SHORT))


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A local TCP echo server (one thread per connection)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets connections on purpose
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def test_fault_proxy_injects_latency_resets_and_blackholes() -> None:
    """The suite's TCP proxy forwards bytes, delays them, resets connections and blackholes answers."""
    server, thread = _echo_server()
    proxy = FaultProxy(free_port(), server.getsockname()).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"ping"
            proxy.set_latency(0.2)
            started = time.monotonic()
            client.sendall(b"slow")
            assert client.recv(16) == b"slow"
            assert time.monotonic() - started >= 0.4  # 0.2 s each way, never less
            proxy.set_latency(0.0)
            assert proxy.reset_connections() == 1
            with pytest.raises(ConnectionResetError):
                client.recv(16)
        with socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=1) as client:
            proxy.blackhole("responses")
            client.sendall(b"lost")
            with pytest.raises(TimeoutError):
                client.recv(16)
            proxy.heal()
        with socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=5) as client:
            client.sendall(b"healed")
            assert client.recv(16) == b"healed"
    finally:
        proxy.stop()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        server.close()
        thread.join(5)


@servers
def test_exactly_once_relay_sigkill_shows_no_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    """In exactly-once mode, SIGKILLing the relay every few seconds loses nothing and a read_committed
    reader sees no event twice (the audit fails on any duplicate)."""
    monkeypatch.setenv(DELIVERY_ENV, "exactly-once")
    result = scenarios.relay_sigkill(SHORT)
    check(result)
    assert result.duplicates == 0
    assert result.delivered == result.committed == SHORT.relay_kill_events

