"""The health/metrics server is bounded (issue 11, defect 6): idle connections time out, and connections
past the cap are closed at once instead of each holding a thread and a descriptor."""

from __future__ import annotations

import socket
import threading
import time

from prometheus_client import CollectorRegistry

from payment_events.ops.health import HealthServer, HealthState
from tests.acceptance.support import http_get


def test_an_idle_connection_is_closed_after_the_read_timeout() -> None:
    """A client that connects and sends nothing is disconnected by the server."""
    with (
        HealthServer(HealthState(), CollectorRegistry(), port=0, read_timeout=0.5) as server,
        socket.create_connection(("127.0.0.1", server.port)) as idle,
    ):
        idle.settimeout(5.0)
        assert idle.recv(1) == b""  # closed by the server, not by our timeout


def test_idle_connections_past_the_cap_take_no_thread_and_healthz_still_answers() -> None:
    """200 idle connections use at most ``max_connections`` handler threads, and /healthz answers once
    the idle ones time out."""
    before = threading.active_count()
    registry = CollectorRegistry()
    with HealthServer(HealthState(), registry, port=0, max_connections=8, read_timeout=1.0) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        try:
            time.sleep(0.3)
            assert threading.active_count() - before <= 8 + 1  # + the server's own thread
            deadline = time.monotonic() + 10
            status = 0
            while time.monotonic() < deadline:
                try:
                    status = http_get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)[0]
                    break
                except OSError:
                    time.sleep(0.2)
            assert status == 200
        finally:
            for s in idle:
                s.close()
