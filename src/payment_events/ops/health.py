"""Liveness, readiness and metrics over HTTP, served from a background thread (127.0.0.1 by default).

* ``GET /metrics`` -- Prometheus text format from the relay's own registry.
* ``GET /healthz`` -- alive: the relay loop reported something (any observer call, or
  :meth:`HealthState.tick`) within the liveness timeout. 200 or 503, JSON body.
* ``GET /readyz`` -- ready: the database answers, the broker is reachable and this instance owns at least
  one shard. 200 or 503, JSON body naming each check.

:class:`HealthState` is itself a :class:`~payment_events.relay.observer.RelayObserver`, so the relay feeds it
the same reports it sends to metrics. :class:`ReachabilityProbe` checks the broker and database on its own
schedule too, so readiness reflects an outage even while the relay is idle.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from payment_events.ops.logs import get_logger

_log = get_logger(__name__)


class HealthState:
    """What /healthz and /readyz answer from; thread-safe; fed through the RelayObserver methods."""

    def __init__(self, liveness_timeout: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._liveness_timeout = liveness_timeout
        self._started = clock()
        self._last_tick: float | None = None
        self._broker: bool | None = None
        self._database: bool | None = None
        self._shards: int | None = None
        self._stopping = False
        self._missing_topics: set[str] = set()
        self._waiting_for: str | None = None

    def tick(self) -> None:
        """The relay loop is alive (called on every loop iteration, or implied by any report)."""
        with self._lock:
            self._last_tick = self._clock()

    def stopping(self) -> None:
        """Graceful shutdown began: readiness turns false so load balancers and probes stop routing.

        Called from a signal handler, so it takes no lock: the handler runs on the main thread between
        two bytecodes, possibly while that thread holds the lock (a deadlock), and one attribute
        assignment is atomic anyway."""
        self._stopping = True

    @property
    def is_stopping(self) -> bool:
        """True once :meth:`stopping` was called."""
        return self._stopping

    def topic_missing(self, topic: str, missing: bool) -> None:
        """A topic the relay produces to does not exist (``missing``) or exists again: readiness names it."""
        with self._lock:
            if missing:
                self._missing_topics.add(topic)
            else:
                self._missing_topics.discard(topic)

    def waiting_for(self, reason: str | None) -> None:
        """The relay has not begun yet and says why (e.g. the broker is unreachable); ``None``: begun."""
        with self._lock:
            self._waiting_for = reason

    def set_broker(self, reachable: bool) -> None:
        """Record broker reachability from an outside probe (not a sign of the loop being alive)."""
        with self._lock:
            self._broker = reachable

    def set_database(self, reachable: bool) -> None:
        """Record database reachability from an outside probe (not a sign of the loop being alive)."""
        with self._lock:
            self._database = reachable

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(alive, details). Before the first tick the start time counts, giving a startup grace."""
        with self._lock:
            now = self._clock()
            last = self._last_tick if self._last_tick is not None else self._started
            age = max(0.0, now - last)
            alive = age <= self._liveness_timeout
            return alive, {
                "status": "ok" if alive else "stalled",
                "seconds_since_last_tick": round(age, 3),
                "liveness_timeout_seconds": self._liveness_timeout,
            }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details): database and broker reachable, at least one shard owned, not stopping."""
        with self._lock:
            checks = {
                "database": self._database is True,
                "broker": self._broker is True,
                "shards": (self._shards or 0) >= 1,
                "running": not self._stopping,
                "topics": not self._missing_topics,
                "started": self._waiting_for is None,
            }
            ready = all(checks.values())
            details: dict[str, Any] = {
                "status": "ready" if ready else "not_ready",
                "checks": checks,
                "shards_owned": self._shards or 0,
            }
            if self._missing_topics:
                details["missing_topics"] = sorted(self._missing_topics)
            if self._waiting_for is not None:
                details["waiting_for"] = self._waiting_for
            return ready, details

    # -- RelayObserver ----------------------------------------------------------------------------

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        """An acknowledgement proves the broker is reachable."""
        with self._lock:
            self._last_tick = self._clock()
            if commit_to_ack_seconds:
                self._broker = True

    def retried(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Only a tick: a retry alone says nothing certain about reachability."""
        self.tick()

    def dead_lettered(self, event_type: str, topic: str, reason: str, count: int) -> None:
        """Only a tick."""
        self.tick()

    def batch(self, size: int) -> None:
        """A batch was claimed, so the database answered."""
        with self._lock:
            self._last_tick = self._clock()
            self._database = True

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        """Backlog figures came from the database, so it answered."""
        with self._lock:
            self._last_tick = self._clock()
            self._database = True

    def dead_rows(self, count: int) -> None:
        """Dead-row counts came from the database, so it answered."""
        with self._lock:
            self._last_tick = self._clock()
            self._database = True

    def shards_owned(self, count: int) -> None:
        """Record owned shards."""
        with self._lock:
            self._last_tick = self._clock()
            self._shards = count

    def broker_reachable(self, reachable: bool) -> None:
        """Record broker reachability."""
        with self._lock:
            self._last_tick = self._clock()
            self._broker = reachable

    def database_reachable(self, reachable: bool) -> None:
        """Record database reachability."""
        with self._lock:
            self._last_tick = self._clock()
            self._database = reachable


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server with a cap on concurrent connections: a connection past the cap is
    closed at once (no thread, no descriptor kept), and a failed ``accept`` (EMFILE: no descriptor
    left) pauses briefly instead of spinning."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], cap: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(cap)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError:
            time.sleep(0.05)  # out of descriptors: the next accept may work once some are freed
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HealthServer:
    """Serves /metrics, /healthz and /readyz on ``host:port`` from a daemon thread.

    ``port=0`` binds any free port; read the bound one from :attr:`port`. Bounded: at most
    ``max_connections`` at a time (more are closed at once), and a connection that sends nothing for
    ``read_timeout`` seconds is closed, so idle clients cannot use up the relay's threads or descriptors.
    """

    def __init__(
        self,
        state: HealthState,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        max_connections: int = 32,
        read_timeout: float = 5.0,
    ) -> None:
        self.state = state
        self.registry = registry
        handler = _make_handler(state, registry, read_timeout)
        self._server = _BoundedServer((host, port), handler, max_connections)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="payment-events-http", daemon=True
        )

    @property
    def host(self) -> str:
        """The bound address."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Start serving; returns self."""
        self._thread.start()
        _log.info("health.listening", host=self.host, port=self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_handler(
    state: HealthState, registry: CollectorRegistry, read_timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "payment-events"
        sys_version = ""
        timeout = read_timeout  # socket timeout: an idle or slow client is disconnected

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, body = state.liveness()
                self._json(200 if ok else 503, body)
            elif path == "/readyz":
                ok, body = state.readiness()
                self._json(200 if ok else 503, body)
            else:
                self._json(404, {"status": "not_found", "paths": ["/metrics", "/healthz", "/readyz"]})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("health.request", path=self.path)

    return Handler
