"""A small TCP proxy for network faults between the relay and a broker: latency, resets, blackholes.

It runs an asyncio loop in a background thread and is steered from ordinary (synchronous) test code::

    proxy = FaultProxy(listen_port=39192, target=("127.0.0.1", 39092)).start()
    proxy.set_latency(0.2)            # every chunk is delivered 200 ms after it arrived (order kept)
    proxy.reset_connections()         # every open connection gets a TCP RST
    proxy.blackhole("responses")      # requests still reach the broker, its answers are dropped
    proxy.blackhole("both")           # nothing gets through in either direction
    proxy.heal()                      # no latency, no blackhole; connections that lost bytes are reset
    proxy.stop()

Dropped bytes corrupt a TCP stream, so when a blackhole ends every connection that lost data is reset
(what a client sees after a real network partition: a timed-out connection, then a fresh one).
A broker behind the proxy must advertise the proxy's address, or clients would go around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Blackhole = Literal["off", "both", "responses"]


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side and the upstream (broker) side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    tainted: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1:listen_port`` forwarding to ``target`` with injectable faults."""

    def __init__(self, listen_port: int, target: tuple[str, int], chunk: int = 65536) -> None:
        self.listen_port = listen_port
        self.target = target
        self._chunk = chunk
        self._latency = 0.0
        self._blackhole: Blackhole = "off"
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.connections_total = 0
        self.resets_total = 0

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> FaultProxy:
        """Start listening (returns once the port accepts connections)."""
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.listen_port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the loop thread."""
        loop = self._loop
        if loop is None:
            return
        self._call(self._close_all)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk, in both directions, by ``seconds`` (order is kept)."""
        self._latency = max(0.0, seconds)

    def blackhole(self, mode: Blackhole) -> None:
        """``both``: drop everything; ``responses``: forward requests, drop the broker's answers;
        ``off``: forward again and reset the connections that lost bytes."""
        self._blackhole = mode
        if mode == "off":
            self._call(self._reset_tainted)

    def reset_connections(self) -> int:
        """Send an RST on every open connection; return how many were reset."""
        return self._call(self._close_all)

    def heal(self) -> None:
        """No latency, no blackhole."""
        self.set_latency(0.0)
        self.blackhole("off")

    @property
    def open_connections(self) -> int:
        """Connections currently proxied."""
        return len(self._links)

    # ------------------------------------------------------------------ the loop thread
    def _call(self, fn: object) -> int:
        loop = self._loop
        if loop is None:
            return 0

        async def run() -> int:
            assert callable(fn)
            result = fn()
            return int(result) if isinstance(result, int) else 0

        return asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", self.listen_port, reuse_address=True)
            )
            self._ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError):
            _rst(writer)
            return
        self.connections_total += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer, link, upstream=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, link, upstream=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        for side in (writer, up_writer):
            side.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *, upstream: bool
    ) -> None:
        """Copy one direction, applying the faults; a queue keeps latency from throttling throughput."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(self._chunk)
                if not data:
                    break
                mode = self._blackhole
                if mode == "both" or (mode == "responses" and not upstream):
                    link.tainted = True
                    continue
                await queue.put((time.monotonic() + self._latency, data))
                if sender.done():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            # Let queued bytes go out unless the link is being torn down.
            while not queue.empty() and not sender.done():
                await asyncio.sleep(0.01)
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            for side in (link.client, link.upstream):
                side.transport.abort()

    def _close_all(self) -> int:
        links = list(self._links)
        for link in links:
            _rst(link.client)
            _rst(link.upstream)
        self.resets_total += len(links)
        return len(links)

    def _reset_tainted(self) -> int:
        links = [link for link in self._links if link.tainted]
        for link in links:
            _rst(link.client)
            _rst(link.upstream)
        self.resets_total += len(links)
        return len(links)
