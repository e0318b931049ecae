"""The client side of the proxy: one asyncio protocol per client connection, parsing with httptools.

A connection carries a sequence of exchanges (request + response). Pipelined requests are parsed as
they arrive and queued; only the first is served, the rest wait in order, and reading pauses while
they wait so that memory stays bounded. An exchange either answers locally (redirect, default
backend, errors) or is proxied to an upstream connection (see ``upstream.py``), streaming bodies in
both directions with backpressure. An upgraded exchange turns the connection into a tunnel that no
timeout and no configuration change ever closes.

Per request the work is: the httptools callbacks, one pass over the headers, one route lookup and
one join of the upstream request head. Everything else is prepared per configuration or per
connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
from collections import deque
from time import monotonic
from random import getrandbits
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from ..routing import ACME_CHALLENGE_PREFIX, Route, normalize_path
from . import responses

if TYPE_CHECKING:
    from .server import DataPlane, Listener
    from .upstream import UpstreamConnection

log = logging.getLogger("ingressd.http")

# Client-side limits, as nginx's defaults.
HEADER_TIMEOUT = 60.0  # to receive a whole request head
BODY_TIMEOUT = 60.0  # between two reads of a request body
KEEPALIVE_TIMEOUT = 75.0  # idle between requests
SEND_TIMEOUT = 60.0  # a client not reading its response
MAX_HEAD_BYTES = 32 * 1024  # larger heads get 431
MAX_HEADERS = 200

# How a request header is treated when building the upstream request.
_FORWARD, _HOST, _DROP, _REQUEST_ID, _XFF, _CONNECTION, _UPGRADE, _EXPECT, _LENGTH, _TE, _REFERER, _AGENT = range(12)
_REQUEST_HEADERS = {
    b"referer": _REFERER, b"user-agent": _AGENT,
    b"host": _HOST, b"x-request-id": _REQUEST_ID, b"x-forwarded-for": _XFF, b"connection": _CONNECTION,
    b"upgrade": _UPGRADE, b"expect": _EXPECT, b"content-length": _LENGTH, b"transfer-encoding": _TE,
    b"keep-alive": _DROP, b"proxy-connection": _DROP, b"te": _DROP, b"trailer": _DROP, b"proxy": _DROP,
    b"x-real-ip": _DROP, b"x-forwarded-host": _DROP, b"x-forwarded-port": _DROP, b"x-forwarded-proto": _DROP,
    b"x-forwarded-scheme": _DROP, b"x-scheme": _DROP, b"x-original-forwarded-for": _DROP,
}

# Why reading from the client is paused (a bit each, reading resumes when none is left).
PAUSE_PIPELINE = 1  # a pipelined request waits for the one before it
PAUSE_UPSTREAM = 2  # the upstream's write buffer is full
PAUSE_PENDING = 4  # body bytes wait for an upstream connection

NO_BODY, LENGTH_BODY, CHUNKED_BODY = 0, 1, 2
PENDING_LIMIT = 256 * 1024

_host_cache: dict[bytes, str | None] = {}
_request_ids = itertools.count(getrandbits(63))
_request_id_prefix = b"%016x" % getrandbits(64)


def new_request_id() -> bytes:
    """32 hex digits as ingress-nginx's $req_id: a random per-process half and a counter, unique
    without a random draw per request."""
    return b"%s%016x" % (_request_id_prefix, next(_request_ids) & 0xFFFFFFFFFFFFFFFF)


def parse_host(raw: bytes) -> str | None:
    """Host header to routing key: lower-case, no port, no trailing dot. None if invalid."""
    host = _host_cache.get(raw)
    if host is None and raw not in _host_cache:
        text = raw.decode("latin-1").strip().lower()
        if text.startswith("["):  # IPv6 literal
            end = text.find("]")
            rest = text[end + 1:]
            host = text[:end + 1] if end > 0 and (not rest or (rest[0] == ":" and rest[1:].isdigit())) else None
            if host is not None:
                try:
                    ipaddress.IPv6Address(host[1:-1])
                except ValueError:
                    host = None
        else:
            name, colon, port = text.partition(":")
            host = name.rstrip(".")
            if (colon and not port.isdigit()) or not all(c.isalnum() or c in "-._*" for c in host):
                host = None
        if len(_host_cache) > 4096:
            _host_cache.clear()
        _host_cache[raw] = host
    return host


class Exchange:
    """One request and its response on a client connection.

    Every field has a class-level default and ``__init__`` sets only what each request needs
    afresh: creating an exchange is on the request path, and most fields keep their defaults.
    """

    url = b""
    method = b""
    keep_alive = True
    is_head = False
    route: Route | None = None
    local: bytes | None = None  # a complete response written by ingressd itself
    status = 0
    host = ""
    head = b""  # the request head for the upstream
    body_mode = NO_BODY
    body_limit: int | None = None
    received = 0
    pending: list[bytes] | None = None  # body bytes read before an upstream was attached
    pending_bytes = 0
    request_done = False
    response_started = False
    response_done = False
    upstream: UpstreamConnection | None = None
    chunked_out = False
    upgrade = False
    expect_continue = False
    attempts = 0
    replayable = True
    connecting = False
    aborted = False
    http10 = False
    # for metrics and the access log
    upstream_start = upstream_connected = upstream_header = 0.0
    sent = upstream_received = head_size = 0
    upstream_addr: tuple[str, int] | None = None
    upstream_status = 0
    request_id = referer = user_agent = b""

    def __init__(self, conn: ClientConnection):
        self.conn = conn
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = monotonic()

    # --- request side ---------------------------------------------------------------------

    def send_upstream(self, data: bytes) -> None:
        """Body bytes (already framed) for the upstream: written now, or kept until attached."""
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
            return
        if self.pending is None:
            self.pending = []
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.replayable = False
        if self.pending_bytes > PENDING_LIMIT:
            self.conn.pause(PAUSE_PENDING)

    def take_pending(self) -> list[bytes] | None:
        pending, self.pending, self.pending_bytes = self.pending, None, 0
        if pending is not None:
            self.conn.resume(PAUSE_PENDING)
        return pending

    # --- response side (called by the upstream connection) ------------------------------------

    # Response bytes are collected in ``conn.out`` while one upstream read is parsed, and written
    # with one call after it (``UpstreamConnection.data_received``): head and body of a small
    # response leave in a single send.

    def response_head(self, head: bytes, status: int) -> None:
        self.response_started = True
        self.status = status
        self.sent += len(head)
        self.conn.out.append(head)

    def response_body(self, data: bytes) -> None:
        self.sent += len(data)
        if self.chunked_out:
            self.conn.out += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.conn.out.append(data)

    def response_complete(self) -> None:
        conn = self.conn
        if self.chunked_out:
            conn.out.append(b"0\r\n\r\n")
        conn.flush()
        self.response_done = True
        self.upstream = None
        if not self.request_done:
            # The upstream answered before the whole body arrived: the connection cannot be reused.
            self.keep_alive = False
        self.conn.finish(self)

    def fail(self, status: int, detail: str) -> None:
        """The upstream failed; answer with an error if nothing was sent yet, else cut the client."""
        self.upstream = None
        self.connecting = False
        if self.aborted:
            return
        if self.response_started:
            self.conn.flush()
            self.conn.transport.close()
            return
        log.warning("%s %s: %d %s", self.host or "-", self.url.decode("latin-1"), status, detail)
        self.keep_alive = self.keep_alive and self.request_done
        self.answer(status, responses.error_body(status, detail))

    def answer(self, status: int, body: bytes, headers: bytes = b"") -> None:
        self.status = status
        self.response_started = self.response_done = True
        conn = self.conn
        if conn.listener.hsts:
            headers += responses.HSTS
        data = responses.response(status, body, keep_alive=self.keep_alive, headers=headers, head_only=self.is_head)
        self.sent += len(data)
        conn.transport.write(data)
        if self.request_done or not self.keep_alive:
            conn.finish(self)

    def abort(self) -> None:
        """The client went away: release whatever serves this exchange."""
        self.aborted = True
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abandon()


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "plane", "listener", "transport", "parser", "forwarded", "client_ip", "cur", "active", "queue",
        "paused", "deadline", "head_bytes", "tunnel", "closed", "error_status", "upgraded", "last",
        "tunnel_at", "tunnel_in", "tunnel_out", "eof", "out",
    )

    def __init__(self, plane: DataPlane, listener: Listener):
        self.plane = plane
        self.listener = listener
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = HttpRequestParser(self)
        self.forwarded = b""
        self.client_ip = ""
        self.cur: Exchange | None = None  # being parsed
        self.active: Exchange | None = None  # being served
        self.queue: deque[Exchange] = deque()
        self.paused = 0
        self.deadline = 0.0
        self.head_bytes = 0
        self.tunnel: UpstreamConnection | None = None
        self.closed = False
        self.error_status = 0
        self.upgraded: Exchange | None = None  # the request after which the parser gave up the stream
        self.last: Exchange | None = None  # the last request parsed
        self.tunnel_at = 0.0
        self.tunnel_in = self.tunnel_out = 0  # bytes through the tunnel from / to the client
        self.eof = False  # the client half-closed its side
        self.out: list[bytes] = []  # response bytes not yet handed to the transport

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = ip = peer[0] if peer else ""
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\n%s" % (ip.encode(), ip.encode(),
                                                                          self.listener.headers)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # notice dead peers of long-lived (websocket) connections eventually
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        plane = self.plane
        self.deadline = plane.now + HEADER_TIMEOUT
        plane.timed.add(self)
        plane.connections.add(self)

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel_in += len(data)
            tunnel.transport.write(data)
            return
        if self.closed:
            return
        upgraded = self.upgraded
        if upgraded is not None:
            if upgraded.upgrade and not upgraded.aborted:
                upgraded.send_upstream(data)  # sent after the upgrade request, before the upstream agreed
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as upgrade:
            self.on_upgrade_request(data[upgrade.args[0]:])
        except HttpParserCallbackError as error:
            if self.error_status:
                self.reject(self.error_status)
            else:
                log.error("internal error handling a request from %s", self.client_ip, exc_info=error.__context__)
                self.reject(500)
        except HttpParserError:
            self.reject(400)

    def on_upgrade_request(self, tail: bytes) -> None:
        """httptools stops parsing after a request asking to switch protocols."""
        upgraded = self.upgraded = self.last
        if upgraded is None or not upgraded.upgrade:
            # Not proxied as an upgrade (answered locally): finish what is queued, then close.
            self.pause(PAUSE_PIPELINE)
            for exchange in (self.active, *self.queue):
                if exchange is not None:
                    exchange.keep_alive = False
            if self.active is None:
                self.close()
        elif tail:
            upgraded.send_upstream(tail)

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the response, then the close.
        self.eof = True
        for exchange in (self.active, *self.queue):
            if exchange is not None:
                exchange.keep_alive = False
        return self.active is not None or bool(self.queue)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        plane = self.plane
        plane.timed.discard(self)
        plane.connections.discard(self)
        if self.tunnel is not None:
            self.tunnel.transport.close()
            plane.tunnel_closed(self, self.tunnel_at, self.tunnel_out, self.tunnel_in)
            self.tunnel = None
        if self.active is not None:
            self.active.abort()
        for exchange in self.queue:
            exchange.abort()
        self.queue.clear()

    def pause_writing(self) -> None:
        upstream = self.tunnel or (self.active.upstream if self.active is not None else None)
        if upstream is not None:
            upstream.transport.pause_reading()
        if self.tunnel is None:
            self.deadline = self.plane.now + SEND_TIMEOUT

    def resume_writing(self) -> None:
        upstream = self.tunnel or (self.active.upstream if self.active is not None else None)
        if upstream is not None:
            upstream.transport.resume_reading()
        if self.tunnel is None:
            self.deadline = 0.0 if self.active is not None else self.plane.now + KEEPALIVE_TIMEOUT

    # --- flow control and lifecycle --------------------------------------------------------------

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def on_timeout(self) -> None:
        active = self.active
        if active is not None and not active.response_started and not active.request_done:
            active.keep_alive = False
            active.answer(408, responses.error_body(408, "the request body was not received in time"))
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def reject(self, status: int) -> None:
        """A request that cannot be parsed: answer (when nothing else is in flight) and close."""
        self.cur = None
        if self.closed:
            return
        if self.active is None and not self.queue:
            self.transport.write(responses.response(status, responses.error_body(status), keep_alive=False))
            self.close()
        else:  # let the exchanges already accepted finish, then close
            self.pause(PAUSE_PIPELINE)
            for exchange in self.queue:
                exchange.keep_alive = False
            if self.active is not None:
                self.active.keep_alive = False

    def finish(self, exchange: Exchange) -> None:
        """An exchange is over: count it, then serve the next pipelined one or wait for one."""
        if exchange is not self.active:
            return
        self.plane.record(exchange)
        self.active = None
        if not exchange.keep_alive or self.closed or (self.eof and not self.queue):
            self.close()
            return
        if exchange.upgrade and exchange.status == 101:
            return
        if self.queue:
            following = self.active = self.queue.popleft()
            if not self.queue:
                self.resume(PAUSE_PIPELINE)
            if following.local is None or following.request_done or not following.keep_alive:
                self.start(following)
        else:
            self.deadline = self.plane.now + KEEPALIVE_TIMEOUT
            self.resume(PAUSE_PIPELINE)

    def start(self, exchange: Exchange) -> None:
        if exchange.local is not None:
            exchange.status = int(exchange.local[9:12])
            exchange.response_started = exchange.response_done = True
            exchange.sent = len(exchange.local)
            self.transport.write(exchange.local)
            if exchange.request_done or not exchange.keep_alive:
                self.finish(exchange)
            return
        if exchange.expect_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.plane.proxy(exchange)

    def become_tunnel(self, upstream: UpstreamConnection) -> None:
        self.tunnel = upstream
        self.tunnel_at = monotonic()
        self.plane.timed.discard(self)
        self.plane.tunnel_opened()
        self.resume(PAUSE_PIPELINE | PAUSE_PENDING | PAUSE_UPSTREAM)

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.cur = self.last = Exchange(self)
        self.head_bytes = 0
        if self.active is None:
            self.deadline = self.plane.now + HEADER_TIMEOUT

    def on_url(self, url: bytes) -> None:
        self.cur.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self.error_status = 414
            raise ValueError("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.cur.headers
        headers.append((name, value))
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES or len(headers) > MAX_HEADERS:
            self.error_status = 431
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        exchange = self.cur
        parser = self.parser
        listener = self.listener
        method = exchange.method = parser.get_method()
        exchange.keep_alive = parser.should_keep_alive()
        exchange.is_head = method == b"HEAD"
        exchange.http10 = parser.get_http_version() == "1.0"
        exchange.head_size = self.head_bytes + len(method) + 14

        raw_host = request_id = xff = upgrade = connection = None
        length = -1
        chunked = expect = False
        lines: list[bytes] = []
        for name, value in exchange.headers:
            kind = _REQUEST_HEADERS.get(name.lower(), _FORWARD)
            if kind == _FORWARD:
                lines += (name, b": ", value, b"\r\n")
            elif kind == _HOST:
                if raw_host is not None:
                    return self._bad(exchange, "duplicate Host header")
                raw_host = value
            elif kind == _LENGTH:
                length = int(value)  # httptools has validated it
            elif kind == _TE:
                chunked = chunked or value.lower().endswith(b"chunked")
            elif kind == _REQUEST_ID:
                request_id = value
            elif kind == _REFERER:
                exchange.referer = value
                lines += (name, b": ", value, b"\r\n")
            elif kind == _AGENT:
                exchange.user_agent = value
                lines += (name, b": ", value, b"\r\n")
            elif kind == _XFF:
                xff = value if xff is None else xff + b", " + value
            elif kind == _EXPECT:
                expect = value.lower() == b"100-continue"
            elif kind == _UPGRADE:
                upgrade = value
            elif kind == _CONNECTION and value.lower() not in (b"keep-alive", b"close", b"upgrade"):
                connection = value if connection is None else connection + b"," + value
        if connection is not None:
            _drop_connection_listed(lines, connection)

        url = exchange.url
        if url[:1] != b"/":
            if url[:7].lower() == b"http://" or url[:8].lower() == b"https://":  # absolute-form target
                authority, _, rest = url.split(b"//", 1)[1].partition(b"/")
                raw_host, url = authority, b"/" + rest
                exchange.url = url
            elif not (method == b"OPTIONS" and url == b"*"):
                return self._bad(exchange, "bad request target")
        if raw_host is None:
            if not exchange.http10:
                return self._bad(exchange, "missing Host header")
            raw_host = b""
        host = parse_host(raw_host) if raw_host else ""
        if host is None:
            return self._bad(exchange, "invalid Host header")
        exchange.host = host
        query = url.find(b"?")
        path = normalize_path((url if query < 0 else url[:query]).decode("utf-8", "surrogateescape"))
        if path is None:
            return self._bad(exchange, "path escapes the root")

        if request_id is None:
            request_id = new_request_id()
        exchange.request_id = request_id
        route = exchange.route = self.plane.config.table.lookup(host, path)
        options = route.options
        exchange.body_limit = limit = options.body_size_limit
        if chunked:
            exchange.body_mode = CHUNKED_BODY
        elif length > 0:
            exchange.body_mode = LENGTH_BODY
            if limit is not None and length > limit:
                exchange.keep_alive = False
                return self._local(exchange, 413, responses.error_body(
                    413, f"the body of {length} bytes exceeds the limit of {limit} bytes"))
        exchange.expect_continue = expect and exchange.body_mode != NO_BODY and not exchange.http10

        if path.startswith(ACME_CHALLENGE_PREFIX):
            answer = self.plane.challenges.get(path[len(ACME_CHALLENGE_PREFIX):])
            if answer is not None:  # HTTP-01: answered ahead of routing and of the HTTPS redirect
                exchange.local = responses.response(200, answer, keep_alive=exchange.keep_alive,
                                                    head_only=exchange.is_head)
                return self._queue_local(exchange)
        elif route.https_redirect and not listener.tls:
            port = self.plane.https_port
            target = "https://" + host + ("" if port == 443 else f":{port}") + url.decode("latin-1")
            return self._local(exchange, 308, None, location=target)
        if options.redirect is not None:
            target = options.redirect.render(listener.scheme, host, url.decode("latin-1"))
            return self._local(exchange, options.redirect.code, None, location=target)
        backend = route.backend
        if backend is None:
            return self._local(exchange, 404, responses.DEFAULT_BACKEND_BODY)
        if backend.error is not None:
            return self._local(exchange, 503, responses.error_body(503, backend.error))

        framing = b""
        if exchange.body_mode == LENGTH_BODY:
            framing = b"Content-Length: %d\r\n" % length
        elif exchange.body_mode == CHUNKED_BODY:
            framing = b"Transfer-Encoding: chunked\r\n"
        if upgrade is not None and parser.should_upgrade():
            exchange.upgrade = True
            framing += b"Upgrade: " + upgrade + b"\r\nConnection: upgrade\r\n"
        if xff is not None:
            framing += b"X-Original-Forwarded-For: " + xff + b"\r\n"
        exchange.replayable = exchange.body_mode == NO_BODY
        exchange.head = b"".join((
            method, b" ", url, b" HTTP/1.1\r\nHost: ", raw_host, b"\r\n", *lines, self.forwarded,
            b"X-Forwarded-Host: ", raw_host, b"\r\nX-Request-ID: ", request_id, b"\r\n", framing, b"\r\n",
        ))
        self.deadline = self.plane.now + BODY_TIMEOUT if exchange.body_mode != NO_BODY else 0.0
        if self.active is None:
            self.active = exchange
            self.start(exchange)
        else:
            self.queue.append(exchange)
            self.pause(PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        exchange = self.cur
        exchange.received += len(body)
        if self.deadline:
            self.deadline = self.plane.now + BODY_TIMEOUT
        limit = exchange.body_limit
        if limit is not None and exchange.received > limit:
            # A chunked body past the limit: answer 413 if nothing was answered yet, and close.
            exchange.keep_alive = False
            if exchange is self.active and not exchange.response_started:
                exchange.abort()
                exchange.answer(413, responses.error_body(413, f"the body exceeds the limit of {limit} bytes"))
            self.close()
            self.error_status = 413
            raise ValueError("body too large")
        if exchange.local is not None:
            return  # answered locally: the body is read and dropped
        if exchange.body_mode == CHUNKED_BODY:
            exchange.send_upstream(b"%x\r\n%s\r\n" % (len(body), body) if len(body) < 4096 else
                                   b"".join((b"%x\r\n" % len(body), body, b"\r\n")))
        else:
            exchange.send_upstream(body)

    def on_message_complete(self) -> None:
        exchange = self.cur
        self.cur = None
        exchange.request_done = True
        if exchange is self.active and self.deadline:
            self.deadline = 0.0
        if exchange.local is not None:
            if exchange is self.active:
                if exchange.response_done:
                    self.finish(exchange)
                else:
                    self.start(exchange)
            return
        if exchange.body_mode == CHUNKED_BODY:
            exchange.send_upstream(b"0\r\n\r\n")
        if exchange.upstream is not None:
            exchange.upstream.request_sent()
        if exchange.response_done and exchange is self.active:
            self.finish(exchange)

    # --- helpers -------------------------------------------------------------------------------

    def _local(self, exchange: Exchange, status: int, body: bytes | None, location: str | None = None) -> None:
        """Answer ``exchange`` from ingressd itself, in order after any pipelined predecessor."""
        headers = responses.HSTS if self.listener.hsts else b""
        if exchange.body_mode != NO_BODY and exchange.expect_continue:
            exchange.keep_alive = False  # do not make the client send a body we would drop
        if location is not None:
            exchange.local = responses.redirect(status, location, keep_alive=exchange.keep_alive, headers=headers,
                                                head_only=exchange.is_head)
        else:
            exchange.local = responses.response(status, body or b"", keep_alive=exchange.keep_alive,
                                                headers=headers, head_only=exchange.is_head)
        self._queue_local(exchange)

    def _queue_local(self, exchange: Exchange) -> None:
        if self.active is None:
            self.active = exchange
            if not exchange.keep_alive:
                self.start(exchange)
        else:
            self.queue.append(exchange)
            self.pause(PAUSE_PIPELINE)

    def _bad(self, exchange: Exchange, reason: str) -> None:
        exchange.keep_alive = False
        exchange.route = self.plane.config.table.default
        self._local(exchange, 400, responses.error_body(400, reason))


def _drop_connection_listed(lines: list[bytes], value: bytes) -> None:
    """Remove headers the client listed in Connection (hop-by-hop by declaration)."""
    listed = {token.strip().lower() for token in value.split(b",")} - {b"keep-alive", b"close", b"upgrade"}
    if not listed:
        return
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in listed:
            kept += lines[i:i + 4]
    lines[:] = kept
