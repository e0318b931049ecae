"""The metrics port: ``/metrics``, ``/healthz``, ``/readyz``. Never served on the public ports."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Awaitable, Callable

from httptools import HttpParserError, HttpRequestParser
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from .dataplane.responses import reason

log = logging.getLogger("ingressd.admin")

Handler = Callable[[], "tuple[int, str, bytes] | Awaitable[tuple[int, str, bytes]]"]


class AdminConnection(asyncio.Protocol):
    def __init__(self, routes: dict[str, Handler]):
        self.routes = routes
        self.parser = HttpRequestParser(self)
        self.url = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.parser = None  # it holds bound methods of this connection: a cycle, freed now (see http.py)

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError:
            self.respond(400, "text/plain", b"bad request\n", keep_alive=False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        self.url = b""
        keep_alive = self.parser.should_keep_alive()
        handler = self.routes.get(path)
        if handler is None:
            self.respond(404, "text/plain", b"not found\n", keep_alive)
            return
        try:
            result = handler()
        except Exception:
            log.exception("handler for %s failed", path)
            result = (500, "text/plain", b"internal error\n")
        if inspect.isawaitable(result):  # e.g. metrics gathered from worker processes
            self.transport.pause_reading()
            asyncio.ensure_future(self._respond_later(path, result, keep_alive))
        else:
            self.respond(*result, keep_alive=keep_alive)

    async def _respond_later(self, path: str, result, keep_alive: bool) -> None:
        try:
            status, content_type, body = await result
        except Exception:
            log.exception("handler for %s failed", path)
            status, content_type, body = 500, "text/plain", b"internal error\n"
        self.respond(status, content_type, body, keep_alive)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def respond(self, status: int, content_type: str, body: bytes, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%s\r\n"
                % (status, reason(status), content_type.encode(), len(body),
                   b"" if keep_alive else b"Connection: close\r\n"))
        self.transport.write(head + body)
        if not keep_alive:
            self.transport.close()


def metrics_handler(registry: CollectorRegistry, refresh: Callable[[], Awaitable[None]] | None = None) -> Handler:
    """``/metrics``; ``refresh`` first brings the collectors' inputs up to date (e.g. from workers)."""
    from .metrics import render

    async def handle():
        if refresh is not None:
            await refresh()
        return 200, CONTENT_TYPE_LATEST, render(registry)

    return handle


async def serve_admin(host: str | None, port: int, routes: dict[str, Handler]) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: AdminConnection(routes), host, port, reuse_address=True)
