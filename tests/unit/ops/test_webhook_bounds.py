"""The alert webhook never follows a redirect and never reads an unbounded answer (issue 11, defect 10)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from payment_events.ops.alerts import WebhookNotifier


class _Hostile(BaseHTTPRequestHandler):
    gets: list[str] = []  # noqa: RUF012 - shared by the test's server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/internal/admin")
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(100_000):  # an endless answer, a megabyte at a time
                self.wfile.write(b"x" * 1_000_000)
        except OSError:
            pass

    def do_GET(self) -> None:
        type(self).gets.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def hostile() -> Iterator[str]:
    """A local server that redirects or answers forever."""
    _Hostile.gets = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_redirect_is_refused_and_never_followed(hostile: str) -> None:
    """A 302 to another path is a permanent failure; the server never sees a GET."""
    notifier = WebhookNotifier(f"{hostile}/redirect", timeout=2.0)
    assert notifier._post(b"{}") == "permanent"
    time.sleep(0.2)
    assert _Hostile.gets == []


def test_an_endless_answer_is_read_only_up_to_a_cap(hostile: str) -> None:
    """A 200 with an endless body returns at once after a capped read, instead of growing memory."""
    notifier = WebhookNotifier(f"{hostile}/big", timeout=2.0)
    started = time.monotonic()
    assert notifier._post(b"{}") == "ok"
    assert time.monotonic() - started < 5
