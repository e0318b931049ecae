"""The upstream side of the proxy: pooled keep-alive connections to endpoints, parsing responses.

An ``UpstreamConnection`` serves one exchange at a time. When a response ends and both sides allow
it, the connection goes back to its endpoint's idle list, where the next request to that endpoint
finds it. Response heads are rebuilt without hop-by-hop headers; bodies stream through with
backpressure to the client.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from . import responses
from .http import PAUSE_UPSTREAM

if TYPE_CHECKING:
    from .http import Exchange
    from .server import DataPlane

log = logging.getLogger("ingressd.upstream")

IDLE_TIMEOUT = 60.0  # an idle pooled connection is closed after this long
MAX_IDLE_PER_ENDPOINT = 320  # ingress-nginx's upstream keep-alive
MAX_REQUESTS_PER_CONNECTION = 10_000
MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is an upstream error (502)

_DROP, _LENGTH, _STS, _CONNECTION, _UPGRADE, _TE = range(1, 7)
_RESPONSE_HEADERS = {
    b"connection": _CONNECTION, b"keep-alive": _DROP, b"proxy-connection": _DROP, b"te": _DROP,
    b"trailer": _DROP, b"transfer-encoding": _TE, b"upgrade": _UPGRADE, b"content-length": _LENGTH,
    b"strict-transport-security": _STS,
}


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("plane", "endpoint", "transport", "parser", "exchange", "headers", "reason", "interim",
                 "deadline", "requests", "fresh_parser", "tunnel", "closed", "read_timeout", "send_timeout",
                 "until_close", "head_bytes")

    def __init__(self, plane: DataPlane, endpoint: tuple[str, int]):
        self.plane = plane
        self.endpoint = endpoint
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.interim = False
        self.deadline = 0.0
        self.requests = 0
        self.fresh_parser = False
        self.tunnel = None
        self.closed = False
        self.read_timeout = self.send_timeout = 60.0
        self.until_close = False  # the response body ends when the upstream closes
        self.head_bytes = 0

    # --- lifecycle --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.plane.timed.add(self)

    def attach(self, exchange: Exchange) -> None:
        """Send ``exchange``'s request on this connection."""
        self.exchange = exchange
        exchange.upstream = self
        exchange.connecting = False
        exchange.upstream_connected = monotonic()
        exchange.upstream_addr = self.endpoint
        self.requests += 1
        if self.fresh_parser:
            self.parser = HttpResponseParser(self)
            self.fresh_parser = False
        options = exchange.route.options
        self.read_timeout = options.read_timeout
        self.send_timeout = options.send_timeout
        # proxy-send-timeout runs between writes while the body streams, proxy-read-timeout after.
        self.deadline = self.plane.now + (self.read_timeout if exchange.request_done else self.send_timeout)
        pending = exchange.take_pending()
        if pending:
            self.transport.writelines((exchange.head, *pending))
        else:
            self.transport.write(exchange.head)

    def write(self, data: bytes) -> None:
        self.transport.write(data)
        self.deadline = self.plane.now + self.send_timeout

    def request_sent(self) -> None:
        """The whole request is written: from now on the upstream has read-timeout to answer."""
        self.deadline = self.plane.now + self.read_timeout

    def abandon(self) -> None:
        """The exchange is gone mid-way: this connection's state is unknown, so close it."""
        self.exchange = None
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def on_timeout(self) -> None:
        exchange = self.exchange
        self.exchange = None
        self.close()
        if exchange is not None:
            limit = self.read_timeout if exchange.request_done else self.send_timeout
            exchange.fail(504, f"upstream {exchange.route.backend.name} did not answer within {limit:g}s")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.plane.timed.discard(self)
        self.plane.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
            return
        exchange = self.exchange
        if exchange is None:
            return
        if self.until_close and exchange.response_started and not exchange.response_done:
            self.message_complete(exchange)  # a body delimited by the close is now complete
            return
        self.exchange = None
        exchange.upstream = None
        if exchange.response_done:
            return
        if not exchange.response_started and self.requests > 1 and exchange.replayable:
            # A pooled connection the upstream had closed just as we reused it: try a fresh one.
            self.plane.proxy(exchange, fresh=True)
            return
        exchange.fail(502, f"upstream {exchange.route.backend.name} closed the connection"
                           + (f" ({exc})" if exc else ""))

    def eof_received(self) -> bool:
        return False

    # --- data ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.tunnel_out += len(data)
            tunnel.transport.write(data)
            return
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: the connection is not reusable
            return
        self.deadline = self.plane.now + (self.read_timeout if exchange.request_done else self.send_timeout)
        client = exchange.conn
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            tail = data[upgrade.args[0]:]
            if self.tunnel is not None and tail:
                self.tunnel.tunnel_out += len(tail)
                self.tunnel.transport.write(tail)
        except HttpParserError as error:
            log.warning("invalid response from %s:%d: %s", *self.endpoint, error)
            self.exchange = None
            self.close()
            exchange.fail(502, f"upstream {exchange.route.backend.name} sent an invalid response")
        client.flush()

    def pause_writing(self) -> None:
        client = self.tunnel or (self.exchange.conn if self.exchange is not None else None)
        if client is not None:
            client.pause(PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        client = self.tunnel or (self.exchange.conn if self.exchange is not None else None)
        if client is not None:
            client.resume(PAUSE_UPSTREAM)

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > MAX_HEAD_BYTES:
            raise ValueError("response head too large")

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        headers, self.headers = self.headers, []
        self.head_bytes = 0
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim = True
            if status != 100 and not exchange.http10:  # 100 Continue was ingressd's to send
                exchange.conn.transport.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (
                    status, self.reason, b"".join(b"%s: %s\r\n" % h for h in headers)))
            return
        conn = exchange.conn
        exchange.upstream_header = monotonic()
        exchange.upstream_status = status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, self.reason)]
        length = has_sts = chunked = False
        upgrade = None
        for name, value in headers:
            kind = _RESPONSE_HEADERS.get(name.lower())
            if kind is None:
                lines += (name, b": ", value, b"\r\n")
            elif kind == _LENGTH:
                length = True
                lines += (name, b": ", value, b"\r\n")
            elif kind == _STS:
                has_sts = True
                lines += (name, b": ", value, b"\r\n")
            elif kind == _UPGRADE:
                upgrade = value
            elif kind == _TE:
                chunked = True
        if conn.listener.hsts and not has_sts:
            lines.append(responses.HSTS)
        keep_alive = exchange.keep_alive
        if status == 101:
            if not exchange.upgrade:
                exchange.fail(502, "upstream switched protocols unasked")
                self.close()
                return
            lines += (b"Connection: upgrade\r\nUpgrade: ", upgrade or b"websocket", b"\r\n\r\n")
            exchange.response_head(b"".join(lines), status)
            conn.flush()  # before any tunnelled byte
            self.exchange = None
            self.tunnel = conn
            self.plane.timed.discard(self)
            exchange.response_done = True
            conn.become_tunnel(self)
            conn.finish(exchange)
            return
        if exchange.upgrade:  # the upstream refused the upgrade: no way back to HTTP on either side
            keep_alive = exchange.keep_alive = False
        has_body = not (exchange.is_head or status == 204 or status == 304)
        self.until_close = has_body and not length and not chunked
        if has_body and not length:
            if exchange.http10:
                keep_alive = exchange.keep_alive = False  # the end of the body is the end of the connection
            else:  # re-frame: the client gets chunks whatever framing the upstream used
                exchange.chunked_out = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
        elif exchange.http10:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        exchange.response_head(b"".join(lines), status)
        if exchange.is_head:
            # httptools cannot be told a response has no body; end it here, parse the next afresh.
            self.fresh_parser = True
            self.message_complete(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and not exchange.is_head:
            exchange.upstream_received += len(body)
            exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        exchange = self.exchange
        if exchange is not None and not exchange.is_head:
            self.message_complete(exchange)

    def message_complete(self, exchange: Exchange) -> None:
        self.exchange = None
        reusable = (exchange.request_done and not self.until_close and self.parser.should_keep_alive()
                    and self.requests < MAX_REQUESTS_PER_CONNECTION and not exchange.upgrade)
        exchange.response_complete()
        if reusable and not self.closed:
            self.deadline = self.plane.now + IDLE_TIMEOUT
            self.plane.pool.release(self)
        else:
            self.close()


class UpstreamPool:
    """Idle keep-alive connections per endpoint, and the dialing of new ones."""

    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.idle: dict[tuple[str, int], list[UpstreamConnection]] = {}

    def acquire(self, endpoint: tuple[str, int]) -> UpstreamConnection | None:
        idle = self.idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        idle = self.idle.get(conn.endpoint)
        if idle is None:
            idle = self.idle[conn.endpoint] = []
        if len(idle) >= MAX_IDLE_PER_ENDPOINT:
            conn.close()
        else:
            idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self.idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle:
                del self.idle[conn.endpoint]

    def close_idle(self) -> None:
        for idle in list(self.idle.values()):
            for conn in list(idle):
                conn.close()

    def count(self) -> int:
        return sum(len(idle) for idle in self.idle.values())
