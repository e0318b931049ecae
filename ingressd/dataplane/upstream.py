"""The upstream side of the proxy: pooled keep-alive connections to endpoints, parsing responses.

An ``UpstreamConnection`` serves one exchange at a time. When a response ends and both sides allow
it, the connection goes back to its endpoint's idle list, where the next request to that endpoint
finds it. Response heads are rebuilt without hop-by-hop headers; bodies stream through with
backpressure to the client.
"""

from __future__ import annotations

import asyncio
import logging
import re
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

# Response heads are forwarded as the upstream wrote them, less the hop-by-hop fields: one regex
# pass instead of a Python callback per header.
_HOP_BY_HOP = re.compile(
    rb"^(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade)[ \t]*:[^\n]*\n",
    re.IGNORECASE | re.MULTILINE)
_UPGRADE_FIELD = re.compile(rb"^upgrade[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_CHUNKED_FIELD = re.compile(rb"^transfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE | re.MULTILINE)


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("plane", "endpoint", "transport", "parser", "exchange", "interim", "deadline", "requests",
                 "fresh_parser", "tunnel", "closed", "read_timeout", "send_timeout", "until_close", "buffer",
                 "head_start", "partial", "in_head")

    def __init__(self, plane: DataPlane, endpoint: tuple[str, int]):
        self.plane = plane
        self.endpoint = endpoint
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.interim = False
        self.deadline = 0.0
        self.requests = 0
        self.fresh_parser = False
        self.tunnel = None
        self.closed = False
        self.read_timeout = self.send_timeout = 60.0
        self.until_close = False  # the response body ends when the upstream closes
        # The bytes of the response head being parsed: ``buffer`` is what the parser is fed now
        # (after ``partial``, an unfinished head from earlier reads), the head starts at ``head_start``.
        self.buffer = self.partial = b""
        self.head_start = 0
        self.in_head = False

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
        self.in_head = True
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
        if self.partial:
            self.buffer = self.partial + data
            self.partial = b""
        else:
            self.buffer = data
        self.head_start = 0
        try:
            self.parser.feed_data(data)
            if self.in_head and self.exchange is not None:  # a head split across reads
                self.partial = self.buffer[self.head_start:]
                if len(self.partial) > MAX_HEAD_BYTES:
                    raise HttpParserError("response head too large")
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

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        buffer, start = self.buffer, self.head_start
        end = buffer.find(b"\r\n\r\n", start)
        line_end = buffer.find(b"\r\n", start)
        if end < 0 or line_end < 0 or end - start > MAX_HEAD_BYTES:
            raise ValueError("response head not found or too large")
        self.head_start = end + 4
        self.in_head = False
        status_line = buffer[start + 8:line_end]  # " 200 OK": the version is ingressd's to say
        fields = buffer[line_end + 2:end + 2]  # every field line, each ending in CRLF
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim = True
            self.in_head = True  # the final response follows
            if status != 100 and not exchange.http10:  # 100 Continue was ingressd's to send
                exchange.conn.transport.write(b"HTTP/1.1%s\r\n%s\r\n" % (status_line, fields))
            return
        conn = exchange.conn
        exchange.upstream_header = monotonic()
        exchange.upstream_status = status
        lower = b"\n" + fields.lower()
        length = b"\ncontent-length:" in lower
        chunked = b"\ntransfer-encoding:" in lower and _CHUNKED_FIELD.search(fields) is not None
        lines = [b"HTTP/1.1", status_line, b"\r\n", _HOP_BY_HOP.sub(b"", fields)]
        if conn.listener.hsts and b"\nstrict-transport-security:" not in lower:
            lines.append(responses.HSTS)
        keep_alive = exchange.keep_alive
        if status == 101:
            if not exchange.upgrade:
                exchange.fail(502, "upstream switched protocols unasked")
                self.close()
                return
            upgrade = _UPGRADE_FIELD.search(fields)
            lines += (b"Connection: upgrade\r\nUpgrade: ", upgrade.group(1) if upgrade else b"websocket",
                      b"\r\n\r\n")
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
