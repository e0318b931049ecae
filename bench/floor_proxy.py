#!/usr/bin/env python3
"""The floor: the least a Python HTTP/1.1 keep-alive proxy on ingressd's libraries can do per request.

    python3 bench/floor_proxy.py HTTP_PORT HTTPS_PORT UPSTREAM_PORT CERT KEY

Not a proxy anyone should run: one upstream, no routing, no header rewriting, no limits, no metrics,
no access log, no timeouts; request heads are forwarded as they came and responses as they come.
It exists so the benchmark can show how much of ingressd's CPU time per request is the platform
(uvloop's event loop and transports, httptools' parser, the ssl module, the syscalls: one read and
one write on each side) and how much is ingressd's own work on top. bench/bench.py runs it beside
ingressd and nginx as "python floor".
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections import deque

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    """One pooled keep-alive connection: a response is parsed only to find where it ends."""

    def __init__(self, pool: deque):
        self.pool = pool
        self.client: Client | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.transport.write(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        self.pool.append(self)
        client.done()

    def connection_lost(self, exc) -> None:
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.transport.close()


class Client(asyncio.Protocol):
    """One client connection: a request is parsed to find its end, then its bytes go upstream."""

    def __init__(self, loop, upstream_port: int, pool: deque):
        self.loop, self.upstream_port, self.pool = loop, upstream_port, pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.pending: list[bytes] = []
        self.complete = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        data, self.pending = b"".join(self.pending), []
        self.transport.pause_reading()  # one request at a time, as a proxy without pipelining queues
        if self.pool:
            self.send(self.pool.pop(), data)
        else:
            self.loop.create_task(self.dial(data))

    async def dial(self, data: bytes) -> None:
        _, upstream = await self.loop.create_connection(lambda: Upstream(self.pool), "127.0.0.1", self.upstream_port)
        self.send(upstream, data)

    def send(self, upstream: Upstream, data: bytes) -> None:
        upstream.client = self
        upstream.transport.write(data)

    def done(self) -> None:
        self.transport.resume_reading()


def main() -> int:
    http_port, https_port, upstream_port = (int(a) for a in sys.argv[1:4])
    cert, key = sys.argv[4:6]
    uvloop.install()
    loop = asyncio.new_event_loop()
    pool: deque = deque()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    factory = lambda: Client(loop, upstream_port, pool)  # noqa: E731
    loop.run_until_complete(loop.create_server(factory, "127.0.0.1", http_port, backlog=1024))
    loop.run_until_complete(loop.create_server(factory, "127.0.0.1", https_port, ssl=context, backlog=1024))
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
