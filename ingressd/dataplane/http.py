"""The HTTP/1.1 client side of the proxy: one asyncio protocol per client connection, parsing with httptools.

A connection carries a sequence of exchanges (``exchange.Exchange``: request + response).
Pipelined requests are parsed as they arrive and queued; only the first is served, the rest wait
in order, and reading pauses while they wait so that memory stays bounded. An exchange either
answers locally (``policy.answer_for``: redirects, the default backend, errors) or is proxied by
the upstream pool, streaming bodies in both directions with backpressure. An upgraded exchange
turns the connection into a tunnel that no timeout and no configuration change ever closes.

Per request the work is: the httptools callbacks, one pass over the headers
(``forward.read_headers``), one route lookup, the policy check and one join of the upstream
request head. Everything else is prepared per configuration or per connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from . import responses
from .exchange import (CHUNKED_BODY, NO_BODY, PAUSE_PENDING, PAUSE_PIPELINE, PAUSE_UPSTREAM, PENDING_LIMIT,
                       RESPONSE_CHUNKED, UNFRAMED_BODY,
                       RESPONSE_UNTIL_CLOSE, Exchange, UpstreamSide)
from . import proxyproto
from ..options import extauth
from .framing import TargetError, normalize_target, split_absolute_form
from .forward import new_request_id, parse_host, read_headers, upstream_head
from .policy import DEFER, answer_for, backend_answer
from .trust import for_request, is_trusted
from ..routing import ACME_CHALLENGE_PREFIX

if TYPE_CHECKING:
    from ..config import ClientTrust, Config
    from .stats import Recorder
    from .timers import Timers
    from .upstream import UpstreamPool

log = logging.getLogger("ingressd.http")

# Client-side limits: nginx's defaults; the ConfigMap's keys are in ``config.client`` (ClientLimits),
# which a connection takes when it opens and again with each request's configuration.
SEND_TIMEOUT = 60.0  # a client not reading its response
HEADER_TIMEOUT = 60.0  # a PROXY protocol header or TLS handshake (server.py), before any configuration applies
MAX_HEADERS = 200

_WAITING_FOR_UPSTREAM = PAUSE_UPSTREAM | PAUSE_PENDING
_OPTIONS_ALLOW = b"Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n"

# Response heads are forwarded as the upstream wrote them, less the hop-by-hop fields: one regex
# pass instead of a Python callback per header.
_HOP_BY_HOP = re.compile(
    rb"^(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade)[ \t]*:[^\n]*\n",
    re.IGNORECASE | re.MULTILINE)
# The same names, searched in the lower-cased copy of the fields (``b"\n" + fields.lower()``): a
# match spans from the newline before a hop-by-hop line to the newline that ends it.
_HOP_BY_HOP_LOWERED = re.compile(
    rb"\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade)[ \t]*:[^\n]*")


def without_hop_by_hop(fields: bytes, lowered: bytes) -> bytes:
    """``fields`` without its hop-by-hop lines (``_HOP_BY_HOP``); ``lowered`` is
    ``b"\n" + fields.lower()``. The usual response has one ``Connection:`` line at most: one search,
    cut out by slicing (``lowered[i]`` is ``fields[i - 1]``); more than one takes ``sub``."""
    found = _HOP_BY_HOP_LOWERED.search(lowered)
    if found is None:
        return fields
    start, end = found.span()
    if _HOP_BY_HOP_LOWERED.search(lowered, end) is not None:
        return _HOP_BY_HOP.sub(b"", fields)
    return fields[:start] + fields[end:]


_UPGRADE_FIELD = re.compile(rb"^upgrade[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def _header(headers: list[tuple[bytes, bytes]], lower_name: bytes) -> bytes | None:
    """One request header (Origin, Authorization), looked up only for routes that use it."""
    size = len(lower_name)
    for name, value in headers:
        if len(name) == size and name.lower() == lower_name:
            return value
    return None


class Listener:
    """One listening port: its scheme and the X-Forwarded-* lines that depend only on it."""

    __slots__ = ("scheme", "port", "tls", "hsts", "headers", "proxy_protocol")

    def __init__(self, scheme: str, port: int, hsts: bool = True, proxy_protocol: bool = False):
        self.scheme = scheme
        self.port = port
        self.tls = scheme == "https"
        self.hsts = self.tls and hsts
        self.proxy_protocol = proxy_protocol  # connections start with a PROXY protocol header
        self.headers = (b"X-Forwarded-Port: %d\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Scheme: %s\r\nX-Scheme: %s\r\n"
                        % (port, scheme.encode(), scheme.encode(), scheme.encode()))


class ClientContext:
    """What client connections need from the data plane, and nothing more.

    ``config`` and ``challenges`` are replaced (never mutated) when the control plane sends new
    ones; a request reads ``config`` once, when its head is complete.
    """

    __slots__ = ("config", "challenges", "https_port", "timers", "pool", "recorder", "connections", "draining")

    def __init__(self, config: Config, timers: Timers, pool: UpstreamPool, recorder: Recorder,
                 https_port: int = 443):
        self.config = config
        self.challenges: dict[str, bytes] = {}  # ACME HTTP-01 token -> key authorization
        self.https_port = https_port
        self.timers = timers
        self.pool = pool
        self.recorder = recorder
        self.connections: set[ClientConnection] = set()
        # Set on SIGTERM (worker-shutdown-timeout, DataPlane.drain): no more keep-alive; the event
        # is set when the last connection closed.
        self.draining: asyncio.Event | None = None


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "ctx", "timers", "listener", "hsts", "transport", "parser", "forwarded", "client_ip", "cur", "active",
        "queue", "paused", "deadline", "head_bytes", "tunnel", "closed", "error_status", "upgraded", "last",
        "tunnel_at", "tunnel_in", "tunnel_out", "eof", "out", "final", "early", "peer_ip", "trust",
        "proxy_header", "proxied_ip", "unparsed", "proxied", "limits", "served", "held", "held_ip",
    )

    def __init__(self, ctx: ClientContext, listener: Listener):
        self.ctx = ctx
        self.timers = ctx.timers
        self.listener = listener
        self.hsts = ctx.config.hsts if listener.hsts else b""  # per request, from its configuration
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
        self.tunnel: UpstreamSide | None = None
        self.closed = False
        self.error_status = 0
        self.upgraded: Exchange | None = None  # the request after which the parser gave up the stream
        self.last: Exchange | None = None  # the last request parsed
        self.tunnel_at = 0.0
        self.tunnel_in = self.tunnel_out = 0  # bytes through the tunnel from / to the client
        self.eof = False  # the client half-closed its side
        self.out: list[bytes] = []  # response bytes not yet handed to the transport
        self.final = False  # no request after the last one is parsed
        self.early: list[bytes] | None = None  # bytes after an upgrade request, held until the 101
        self.peer_ip = ""  # the TCP peer (client_ip is the client's address as trusted, see trust.py)
        self.trust: ClientTrust | None = None  # set when the peer is a proxy whose headers are believed
        self.proxy_header: bytes | None = None  # the PROXY protocol header, while it is awaited
        self.proxied_ip: str | None = None  # the client address from the PROXY protocol header
        self.proxied: proxyproto.ProxyHeader | None = None  # a PROXY header read before TLS (HTTPS port)
        self.unparsed = 0  # bytes fed to httptools since its last callback (an unfinished line)
        self.held = None  # the limit-connections zone counting this connection (while a request is in progress)

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.limits = self.ctx.config.client
        self.served = 0
        peer = transport.get_extra_info("peername")
        self.peer_ip = self.client_ip = ip = peer[0] if peer else ""
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\n%s" % (ip.encode(), ip.encode(),
                                                                          self.listener.headers)
        if self.listener.proxy_protocol:
            if self.proxied is not None:  # read before the TLS handshake (server.py)
                self.use_proxy_header(self.proxied)
            else:
                self.proxy_header = b""
        trust = self.ctx.config.trust
        if trust.realip and is_trusted(trust, ip):
            self.trust = trust
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # notice dead peers of long-lived (websocket) connections eventually
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        self.deadline = self.timers.now + self.limits.header_timeout
        self.timers.add(self)
        self.ctx.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.proxy_header is not None:
            data = self.read_proxy_header(data)
            if not data:
                return
        tunnel = self.tunnel
        if tunnel is not None:
            self.tunnel_in += len(data)
            tunnel.write(data)
            return
        if self.closed or self.final:
            return
        upgraded = self.upgraded
        if upgraded is not None:
            if upgraded.upgrade and not upgraded.aborted:
                self.hold_early(data)
            return
        # httptools keeps an unfinished line in memory whatever its length: count the bytes fed
        # since the last line it finished (each callback resets the count), not only finished lines.
        self.unparsed += len(data)
        try:
            self.parser.feed_data(data)
            if self.unparsed > 2 * self.limits.max_head_bytes and not self.final:  # unfinished lines: 431
                self.reject(431)
        except HttpParserUpgrade as upgrade:
            self.on_upgrade_request(data[upgrade.args[0]:])
        except HttpParserCallbackError as error:
            if self.final:
                self.pause(PAUSE_PIPELINE)  # nothing more is read; the last exchange closes the connection
            elif self.error_status:
                self.reject(self.error_status)
            else:
                log.error("internal error handling a request from %s", self.client_ip, exc_info=error.__context__)
                self.reject(500)
        except HttpParserError:
            self.reject(400)

    def read_proxy_header(self, data: bytes) -> bytes:
        """The PROXY protocol header first (``use-proxy-protocol``): its client address counts
        when the peer is a trusted proxy; a connection without a valid header is closed."""
        buffer = self.proxy_header + data
        try:
            header = proxyproto.parse(buffer)
        except proxyproto.ProxyProtocolError as error:
            log.info("closing connection from %s: %s", self.peer_ip, error)
            self.proxy_header = None
            self.close()
            return b""
        if header is None:
            self.proxy_header = buffer
            return b""
        self.proxy_header = None
        self.use_proxy_header(header)
        return buffer[header.length:]

    def use_proxy_header(self, header: proxyproto.ProxyHeader) -> None:
        """The client address of a PROXY protocol header, believed from a trusted peer only."""
        if header.source is not None and is_trusted(self.ctx.config.trust, self.peer_ip):
            ip = self.client_ip = self.proxied_ip = header.source
            self.forwarded = b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\n%s" % (ip.encode(), ip.encode(),
                                                                              self.listener.headers)

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
            self.hold_early(tail)

    def hold_early(self, data: bytes) -> None:
        """Bytes after an upgrade request go upstream only once it has switched protocols: were it
        to refuse, they would be requests it parses itself, smuggled past routing."""
        early = self.early
        if early is None:
            early = self.early = []
        early.append(data)
        if sum(map(len, early)) > PENDING_LIMIT:
            self.pause(PAUSE_PENDING)

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the response, then the close.
        self.eof = True
        for exchange in (self.active, *self.queue):
            if exchange is not None:
                exchange.keep_alive = False
        return self.active is not None or bool(self.queue)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.held is not None:
            self.release_slot()
        self.timers.discard(self)
        self.ctx.connections.discard(self)
        draining = self.ctx.draining
        if draining is not None and not self.ctx.connections:
            draining.set()
        if self.tunnel is not None:
            self.tunnel.close()
            self.ctx.recorder.tunnel_closed(self.client_ip, self.tunnel_at, self.tunnel_out, self.tunnel_in,
                                            self.upgraded)
            self.tunnel = None
        if self.active is not None:
            self.active.abort()
        for exchange in self.queue:
            exchange.abort()
        self.queue.clear()
        # Reference cycles, broken so that reference counting frees the connection now: the parser
        # holds bound methods of this connection, its exchanges point back at it (an aborted one is
        # never finished). Left to the cyclic collector, closed connections (~6 KB each) piled up
        # until a rare full collection, or for good once DataPlane.apply's gc.freeze() had moved
        # them to the permanent generation.
        self.parser = None
        self.cur = self.last = self.active = self.upgraded = None

    def pause_writing(self) -> None:
        upstream = self.tunnel or (self.active.upstream if self.active is not None else None)
        if upstream is not None:
            upstream.pause_reading()
        if self.tunnel is None:
            self.deadline = self.timers.now + SEND_TIMEOUT

    def resume_writing(self) -> None:
        upstream = self.tunnel or (self.active.upstream if self.active is not None else None)
        if upstream is not None:
            upstream.resume_reading()
        if self.tunnel is None:
            self.deadline = 0.0 if self.active is not None else self.timers.now + self.limits.keepalive_timeout

    # --- the response, for exchange.ClientSide ----------------------------------------------------

    # Response bytes are collected in ``out`` while one upstream read is parsed, and written with
    # one call after it (``UpstreamConnection.data_received`` calls ``flush``): head and body of a
    # small response leave in a single send.

    def send_interim(self, exchange: Exchange, status: int, status_line: bytes, fields: bytes) -> None:
        if status != 100 and not exchange.http10:  # 100 Continue was ingressd's to send
            self.transport.write(b"HTTP/1.1%s\r\n%s\r\n" % (status_line, fields))

    def send_head(self, exchange: Exchange, status: int, status_line: bytes, fields: bytes, body: int) -> None:
        edit = exchange.route.options.response_headers  # add-headers, hide-headers, custom-headers
        if edit is not None:
            fields = edit.strip.sub(b"", fields)
        lowered = b"\n" + fields.lower()
        lines = [b"HTTP/1.1", status_line, b"\r\n", without_hop_by_hop(fields, lowered)]
        if edit is not None:
            lines.append(edit.lines)
        if lowered.find(b"\ndate:") < 0:  # RFC 9110 §6.6.1, as nginx (which always sends its own)
            lines.append(responses.date_line())
        if self.hsts and lowered.find(b"\nstrict-transport-security:") < 0:
            lines.append(self.hsts)
        if exchange.response_fields:
            lines.append(exchange.response_fields)
        keep_alive = exchange.keep_alive
        if exchange.upgrade:  # the upstream refused the upgrade: no way back to HTTP on either side
            keep_alive = exchange.keep_alive = False
        if body == RESPONSE_CHUNKED or body == RESPONSE_UNTIL_CLOSE:
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
        head = b"".join(lines)
        exchange.sent += len(head)
        self.out.append(head)

    def send_body(self, exchange: Exchange, data: bytes) -> None:
        exchange.sent += len(data)
        if exchange.chunked_out:
            self.out += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.out.append(data)

    def send_trailers(self, exchange: Exchange, trailers: list[tuple[bytes, bytes]]) -> None:
        if exchange.chunked_out and exchange.te_trailers:  # the last chunk with trailers (RFC 9112 §7.1.2)
            exchange.chunked_out = False
            self.out += (b"0\r\n", *(b"%s: %s\r\n" % field for field in trailers), b"\r\n")

    def send_end(self, exchange: Exchange) -> None:
        if exchange.chunked_out:
            self.out.append(b"0\r\n\r\n")
        self.flush()

    def send_upgrade(self, exchange: Exchange, status_line: bytes, fields: bytes, upstream: UpstreamSide) -> None:
        lines = [b"HTTP/1.1", status_line, b"\r\n", _HOP_BY_HOP.sub(b"", fields)]
        if self.hsts and (b"\n" + fields.lower()).find(b"\nstrict-transport-security:") < 0:
            lines.append(self.hsts)
        if exchange.response_fields:  # CORS, the affinity cookie
            lines.append(exchange.response_fields)
        upgrade = _UPGRADE_FIELD.search(fields)
        lines += (b"Connection: upgrade\r\nUpgrade: ", upgrade.group(1) if upgrade else b"websocket", b"\r\n\r\n")
        head = b"".join(lines)
        exchange.sent += len(head)
        self.out.append(head)
        self.flush()  # before any tunnelled byte
        self.become_tunnel(upstream)
        self.finish(exchange)

    def send_local(self, exchange: Exchange, data: bytes) -> None:
        self.transport.write(data)

    def cut(self) -> None:
        self.flush()
        self.close()

    # --- the tunnel, for the upstream connection ------------------------------------------------

    def become_tunnel(self, upstream: UpstreamSide) -> None:
        self.tunnel = upstream
        early, self.early = self.early, None
        if early:
            for data in early:
                self.tunnel_in += len(data)
                upstream.write(data)
        self.tunnel_at = monotonic()
        self.timers.discard(self)
        self.ctx.recorder.tunnel_opened()
        self.resume(PAUSE_PIPELINE | PAUSE_PENDING | PAUSE_UPSTREAM)

    def tunnel_send(self, data: bytes) -> None:
        self.tunnel_out += len(data)
        self.transport.write(data)

    def tunnel_closed_by_upstream(self) -> None:
        self.transport.close()

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
        if reason & _WAITING_FOR_UPSTREAM and self.tunnel is None:
            self.deadline = 0.0  # the upstream's timeouts apply now, not the client's body timeout

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.closed:
                self.transport.resume_reading()
                if self.cur is not None and self.cur.body_mode != NO_BODY and self.tunnel is None:
                    self.deadline = self.timers.now + self.limits.body_timeout

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
        broken, self.cur = self.cur, None
        if self.closed:
            return
        if broken is not None and not broken.request_done:
            # Its head was valid, its body is not (a bad chunk): the upstream, which has its head
            # and part of its body, must never see it complete: drop that connection.
            broken.keep_alive = False
            if broken is self.active:
                broken.abort()
                if not broken.response_started:
                    broken.answer(status, responses.error_body(status, "malformed request body"))
                self.close()
                return
            if broken in self.queue:
                self.queue.remove(broken)
                broken.abort()
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
        self.ctx.recorder.record(exchange)
        self.active = None
        if not exchange.keep_alive or self.closed or ((self.eof or self.ctx.draining is not None) and not self.queue):
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
            if self.held is not None:  # idle between requests: not counted (nginx's limit_conn)
                self.release_slot()
            self.deadline = self.timers.now + self.limits.keepalive_timeout
            self.resume(PAUSE_PIPELINE)

    def hold(self, limit) -> bool:
        """Count this connection in ``limit`` (limit-connections), once while it has requests in progress."""
        held = self.held
        if held is limit:
            return True
        if held is not None:  # a pipelined request of another Ingress: one zone at a time
            self.release_slot()
        if limit.exempts(self.client_ip):
            return True
        if not limit.acquire(self.client_ip):
            return False
        self.held = limit
        self.held_ip = self.client_ip
        return True

    def release_slot(self) -> None:
        held, self.held = self.held, None
        held.release(self.held_ip)

    def start(self, exchange: Exchange) -> None:
        if exchange.local is not None:
            exchange.status = int(exchange.local[9:12])
            exchange.response_started = exchange.response_done = True
            exchange.sent = len(exchange.local)
            self.transport.write(exchange.local)
            if exchange.request_done or not exchange.keep_alive:
                self.finish(exchange)
            return
        if exchange.buffered is not None and not exchange.request_done:
            if exchange.expect_continue:  # ask for the body now; the upstream is asked once it is here
                exchange.expect_continue = False
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            exchange.deferred = True
            return
        if exchange.gate is not None:
            asyncio.get_running_loop().create_task(self.pass_gate(exchange))
            return
        if exchange.expect_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.ctx.pool.proxy(exchange)

    # --- checks that wait (auth-url, a password to hash) -------------------------------------------------------------

    def _auth_request(self, exchange: Exchange, host: str, raw_host: bytes, scheme: str,
                      forwarded: bytes) -> extauth.AuthRequest:
        start = forwarded.find(b"X-Forwarded-For: ")
        xff = forwarded[start + 17:forwarded.find(b"\r\n", start)] if start >= 0 else None
        return extauth.AuthRequest(exchange.method, scheme, host, raw_host, exchange.url, self.client_ip,
                                   exchange.headers, exchange.request_id, xff)

    def send_continue(self, exchange: Exchange) -> None:
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def pass_gate(self, exchange: Exchange) -> None:
        """The exchange's auth subrequest, then the request is proxied or answered."""
        request, exchange.gate = exchange.gate, None
        route = exchange.route
        options = route.options
        auth = options.ext_auth
        basic = options.basic_auth
        try:
            if basic is not None and not await basic.verify(request.header(b"authorization")):
                verdict = extauth.Verdict(401, basic.challenge)
            elif auth is not None:
                verdict = await auth.check(request, extauth.client(), options.connect_timeout, options.read_timeout)
            else:
                verdict = extauth.Verdict(0)
        except Exception:  # noqa: BLE001 - a bug must not leave the client waiting
            log.exception("auth check for %s %s failed", exchange.host, exchange.url.decode("latin-1"))
            verdict = extauth.Verdict(500)
        if exchange.aborted or self.closed:
            return
        location = None
        if verdict.status == 0:
            answer = backend_answer(route)
            if answer is None:
                if auth is not None and auth.response_headers:
                    exchange.head = extauth.set_headers(exchange.head, auth.response_headers, verdict.headers)
                if verdict.cookies:  # nginx: add_header Set-Cookie $auth_cookie
                    exchange.response_fields += verdict.cookies
                if exchange.expect_continue:
                    self.send_continue(exchange)
                self.ctx.pool.proxy(exchange)
                return
            status, body, headers = answer.status, answer.body, answer.headers
        else:
            status, headers, location = verdict.status, verdict.headers, verdict.location
            body = responses.error_body(status)
        # Nothing of the body is left unread, or the connection closes after the answer.
        exchange.keep_alive = exchange.keep_alive and (exchange.request_done or exchange.body_mode == NO_BODY)
        if location is not None:
            encoded = location.encode("ascii", "backslashreplace")
            headers = b"Location: " + encoded + b"\r\n" + headers
            body = b"Redirecting to " + encoded + b"\n"
        exchange.answer(status, body, headers)
        self.flush()

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        last = self.last
        if last is not None and (not last.keep_alive or self.closed):
            # The connection ends after the last request (refused, or Connection: close): what
            # follows it is never parsed as another request (RFC 9112 §9.6).
            self.final = True
            raise ValueError("bytes after the last request")
        self.cur = self.last = Exchange(self)
        self.head_bytes = 0
        if self.active is None:
            self.deadline = self.timers.now + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.cur.url += url
        self.unparsed = 0
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_head_bytes:
            self.error_status = 414
            raise ValueError("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.cur.headers
        headers.append((name, value))
        self.unparsed = 0
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.limits.max_head_bytes or len(headers) > MAX_HEADERS:
            self.error_status = 431
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        self.unparsed = 0
        exchange = self.cur
        parser = self.parser
        method = exchange.method = parser.get_method()
        exchange.keep_alive = parser.should_keep_alive()
        limits = self.limits = self.ctx.config.client
        self.served += 1
        if self.served >= limits.keepalive_requests or not limits.keepalive_timeout or self.ctx.draining is not None:
            exchange.keep_alive = False  # keep-alive-requests / keep-alive 0 / shutting down
        exchange.is_head = method == b"HEAD"
        version = parser.get_http_version()
        exchange.http10 = version == "1.0"
        exchange.head_size = self.head_bytes + len(method) + 14
        head = read_headers(exchange)
        if head.error is not None:
            return self._bad(exchange, head.error, head.status)
        if version != "1.1" and not exchange.http10:
            return self._bad(exchange, f"HTTP/{version} is not supported", 505)  # RFC 9110 §15.6.6
        if exchange.body_mode != NO_BODY:
            if exchange.http10 and exchange.body_mode == CHUNKED_BODY:
                return self._bad(exchange, "Transfer-Encoding in an HTTP/1.0 request")  # RFC 9112 §6.1
            if head.upgrade is not None and parser.should_upgrade():
                return self._bad(exchange, "upgrade request with a body")
        if not self.route(exchange, head, head.upgrade is not None and parser.should_upgrade()):
            return
        self.deadline = self.timers.now + self.limits.body_timeout if exchange.body_mode != NO_BODY else 0.0
        if self.active is None:
            self.active = exchange
            self.start(exchange)
        else:
            self.queue.append(exchange)
            self.pause(PAUSE_PIPELINE)

    def route(self, exchange: Exchange, head, upgrade: bool) -> bool:
        """Route a parsed request head and prepare its upstream head: True when it is to be
        proxied, False when answered locally (``_local``, ``_bad``). Shared with HTTP/2
        (``h2client``), whose streams provide the attributes used here."""
        method = exchange.method
        url = exchange.url
        raw_host = head.raw_host
        if raw_host is None and not exchange.http10:
            return self._bad(exchange, "missing Host header")  # RFC 9112 §3.2, also in absolute form
        if url[:1] != b"/":
            absolute = split_absolute_form(url)
            if absolute is not None:  # the target's authority wins over Host (RFC 9112 §3.2.2)
                raw_host, url = absolute
                if not raw_host:
                    return self._bad(exchange, "absolute-form target without a host")
                head.raw_host = raw_host
                exchange.url = url
            elif url == b"*" and method == b"OPTIONS":  # the server itself (RFC 9110 §9.3.7)
                exchange.route = self.ctx.config.table.default
                return self._local(exchange, 200, b"", headers=_OPTIONS_ALLOW)
            else:
                return self._bad(exchange, "bad request target")
        if raw_host:
            host = parse_host(raw_host)
            if host is None:
                return self._bad(exchange, "invalid Host header")
        elif exchange.http10:
            host = ""
        else:
            return self._bad(exchange, "empty Host header")
        exchange.host = host
        query = url.find(b"?")
        raw_path = url if query < 0 else url[:query]
        path = raw_path.decode("utf-8", "surrogateescape")
        if "%" in path or "/." in path or "//" in path or "\\" in path or 35 in url:  # 35: "#"
            try:  # the rare path that needs a closer look (framing.normalize_target)
                if 35 in url:
                    raise TargetError("fragment in the request target")
                path, forwarded = normalize_target(raw_path)
            except TargetError as error:
                return self._bad(exchange, str(error))
            if forwarded is not raw_path:
                url = exchange.url = forwarded + url[len(raw_path):]

        exchange.request_id = head.request_id or new_request_id()
        ctx = self.ctx
        route = exchange.route = ctx.config.table.lookup(host, path)
        exchange.body_limit = route.options.body_size_limit
        exchange.expect_continue = head.expect and exchange.body_mode != NO_BODY and not exchange.http10
        listener = self.listener
        tls, scheme, forwarded, forwarded_host = listener.tls, listener.scheme, self.forwarded, None
        trust = self.trust
        if trust is not None:  # a trusted proxy's X-Forwarded-* (trust.py)
            if head.forwarding or trust.custom_for_header:
                trusted = for_request(trust, exchange, self.peer_ip, scheme, listener.port, self.proxied_ip)
                self.client_ip, scheme, forwarded, forwarded_host = (trusted.client_ip, trusted.scheme,
                                                                     trusted.lines, trusted.host)
                tls = scheme == "https"
            else:  # nothing forwarded: for_request's answer is the connection's own lines
                self.client_ip = self.proxied_ip or self.peer_ip
        config = ctx.config
        if listener.hsts:
            self.hsts = config.hsts
        blocked = config.blocked
        if blocked is not None and blocked.refuses(exchange.user_agent, exchange.referer):
            return self._local(exchange, 403, responses.error_body(403))  # block-user-agents / block-referers
        options = route.options
        cors = options.cors
        origin = _header(exchange.headers, b"origin") if cors is not None else None
        authorization = _header(exchange.headers, b"authorization") if options.basic_auth is not None else None
        body_length = exchange.body_length if exchange.body_mode != CHUNKED_BODY else -1
        limit = options.body_size_limit
        if (route.plain and (limit is None or body_length <= limit)
                and not path.startswith(ACME_CHALLENGE_PREFIX)):
            answer = None  # what answer_for would say (Route.plain), without the call
        else:
            answer = answer_for(route, host, path, url, tls=tls, scheme=scheme, body_length=body_length,
                                challenges=ctx.challenges, https_port=ctx.https_port, method=method,
                                client_ip=self.client_ip, origin=origin, now=self.timers.now,
                                authorization=authorization)
        limit = options.conn_limit
        if limit is not None and (answer is None or answer is DEFER) and not self.hold(limit):
            return self._local(exchange, limit.status,
                               responses.error_body(limit.status, "too many connections from your address"))
        if answer is not None:
            if answer is DEFER:  # auth-url: asked once the exchange is served (pass_gate)
                exchange.gate = self._auth_request(exchange, host, head.raw_host or b"", scheme, forwarded)
            else:
                if answer.close:
                    exchange.keep_alive = False
                return self._local(exchange, answer.status, answer.body, answer.location, answer.hsts,
                                   answer.headers, answer.content_type)
        if cors is not None:
            exchange.response_fields = cors.response_headers(origin)
        if options.custom_errors is not None:
            exchange.intercept = options.custom_errors

        exchange.upgrade = upgrade
        exchange.replayable = exchange.body_mode == NO_BODY
        if options.request_buffering and not exchange.replayable and options.body_size_limit is not None:
            exchange.buffered = []  # proxy-request-buffering on: read it all first, resendable
            exchange.replayable = True
        exchange.head = upstream_head(exchange, head, forwarded, forwarded_host)
        if options.grpc and exchange.body_mode == CHUNKED_BODY:
            exchange.body_mode = UNFRAMED_BODY  # HTTP/2 upstream: DATA frames, no chunks (h2upstream)
        return True

    def on_body(self, body: bytes) -> None:
        self.unparsed = 0
        exchange = self.cur
        exchange.received += len(body)
        if self.deadline:
            self.deadline = self.timers.now + self.limits.body_timeout
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
        self.unparsed = 0
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
        if exchange.deferred:  # proxy-request-buffering on: the body is all here, ask the upstream
            exchange.deferred = False
            if not exchange.aborted and exchange is self.active:
                self.start(exchange)
            return
        if exchange.upstream is not None:
            exchange.upstream.request_sent()
        if exchange.response_done and exchange is self.active:
            self.finish(exchange)

    # --- helpers -------------------------------------------------------------------------------

    def _local(self, exchange: Exchange, status: int, body: bytes, location: str | None = None,
               hsts: bool = True, headers: bytes = b"", content_type: bytes | None = None) -> None:
        """Answer ``exchange`` from ingressd itself, in order after any pipelined predecessor."""
        if self.hsts and hsts:
            headers += self.hsts
        edit = exchange.route.options.response_headers if exchange.route is not None else None
        if edit is not None and edit.lines:
            headers += edit.lines
        if exchange.body_mode != NO_BODY and exchange.expect_continue:
            exchange.keep_alive = False  # do not make the client send a body we would drop
        if location is not None:
            exchange.local = responses.redirect(status, location, keep_alive=exchange.keep_alive, headers=headers,
                                                head_only=exchange.is_head)
        else:
            exchange.local = responses.response(status, body, keep_alive=exchange.keep_alive,
                                                headers=headers, head_only=exchange.is_head,
                                                content_type=content_type)
        if self.active is None:
            self.active = exchange
            if not exchange.keep_alive:
                self.start(exchange)
        else:
            self.queue.append(exchange)
            self.pause(PAUSE_PIPELINE)

    def _bad(self, exchange: Exchange, reason: str, status: int = 400) -> None:
        """A request ingressd refuses: answered, the connection closed after it, and nothing of
        it, nor anything the client sent after it, reaches an upstream."""
        exchange.keep_alive = False
        exchange.route = self.ctx.config.table.default
        self._local(exchange, status, responses.error_body(status, reason))
