"""The HTTP/2 client side of the proxy: one asyncio protocol per client connection, framing with ``h2``.

A TLS connection whose ALPN chose ``h2`` (``--http2``; ``server.Negotiate`` picks the protocol once
the handshake is done) is served here. Each stream is a :class:`Stream`, the ``exchange.ClientSide``
of one :class:`~ingressd.dataplane.exchange.Exchange`: its request is routed exactly as an HTTP/1.1
one (``http.ClientConnection.route``: the same route table, policy, header rewriting, request id)
and proxied over the HTTP/1.1 upstream pools; its response is rendered as HTTP/2 headers and DATA.

Flow control is tied to backpressure both ways: a request body's window is given back only as its
bytes are handed to the upstream connection (not while that one's write buffer is full), and when
the client's window for a response is exhausted the upstream connection stops being read.

Limits (each ends the connection with GOAWAY, or refuses one stream, and is counted in ``stats``):
SETTINGS_MAX_CONCURRENT_STREAMS (``http2-max-concurrent-streams``, 128; REFUSED_STREAM beyond),
RST_STREAM from the client (rapid reset, CVE-2023-44487), HEADERS + CONTINUATION larger than the
head limit (CONTINUATION flood) and decoded header lists past ``max_head_bytes`` (HPACK bombs;
``large-client-header-buffers``, as nginx since 1.19.7), PING / SETTINGS / PRIORITY / empty DATA
floods, WINDOW_UPDATE frames beyond two per DATA frame sent (and some slack), a connection without a complete request head in ``header_timeout`` or idle past
``keepalive_timeout``, a request body stalled past ``body_timeout`` and a client that opens no
window for ``SEND_TIMEOUT``.

Websockets over HTTP/2 (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised; an extended
CONNECT (``:protocol websocket``) is routed as a GET upgrade and proxied as an HTTP/1.1 ``Upgrade:
websocket`` request. The upstream's 101 becomes ``:status 200`` and the stream a tunnel: DATA frames
to the upstream and back under flow control, END_STREAM or RST_STREAM closing the upstream and the
upstream's close ending the stream. Like HTTP/1.1 tunnels, no timeout and no configuration change
closes one.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from time import monotonic
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from . import responses
from .exchange import CHUNKED_BODY, LENGTH_BODY, NO_BODY, Exchange, UpstreamSide
from .forward import read_headers
from .hpack_literal import LiteralEncoder
from .http import SEND_TIMEOUT, ClientConnection
from .trust import is_trusted

if TYPE_CHECKING:
    from .http import ClientContext, Listener

log = logging.getLogger("ingressd.http2")

MAX_CONCURRENT_STREAMS = 128  # as nginx's http2_max_concurrent_streams (the ConfigMap's: ClientLimits)
CONNECTION_WINDOW = MAX_CONCURRENT_STREAMS * 65535  # a paused stream never stalls the others
RESET_RATE = 100  # RST_STREAM (and refused streams) per second past which a client is a rapid-reset attacker
RESET_MIN = 100  # ... and in all: above this, more resets than twice the responses completed
CONTROL_RATE = 100  # PING, SETTINGS, PRIORITY and empty DATA frames per second
WINDOW_UPDATE_SLACK = 200  # WINDOW_UPDATE frames beyond two per DATA frame sent
RECEIVE_SLICE = 4096  # bytes handed to h2 at a time (floods are checked between slices)

# Response fields that have no meaning in HTTP/2 (RFC 9113 §8.2.2).
_HOP_BY_HOP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                         b"transfer-encoding", b"upgrade"))
_SCHEMES = (b"https", b"http")

# why a response stream does not read its upstream (bits)
_BLOCKED_WINDOW, _BLOCKED_TRANSPORT = 1, 2

_settings_codes = h2.settings.SettingCodes


class _LocalSettings(h2.settings.Settings):
    """Advertises MAX_CONCURRENT_STREAMS but lets ``h2`` accept more, so that ingressd refuses the
    excess streams one by one (REFUSED_STREAM, RFC 9113 §5.1.2) instead of ``h2`` ending the
    connection; the refusals count as resets against rapid-reset floods."""

    @property
    def max_concurrent_streams(self) -> int:
        return 2 * self[_settings_codes.MAX_CONCURRENT_STREAMS] + 1

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[_settings_codes.MAX_CONCURRENT_STREAMS] = value


def fields_to_headers(fields: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """HTTP/1.1 field lines (each ending in CRLF) as HTTP/2 header pairs, lower-case, without the
    connection-specific ones."""
    for line in fields.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        name = name.strip().lower()
        if not colon or not name or name in _HOP_BY_HOP:
            continue
        headers.append((name, value.strip(b" \t")))


def split_response(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A complete HTTP/1.1 response ingressd wrote (``responses``) as status, HTTP/2 headers, body."""
    end = data.find(b"\r\n\r\n")
    line_end = data.find(b"\r\n")
    status = int(data[9:12])
    headers = [(b":status", b"%d" % status)]
    fields_to_headers(data[line_end + 2:end + 2], headers)
    return status, headers, data[end + 4:]


def request_headers(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], list[tuple[bytes, bytes]], str | None]:
    """The pseudo-headers and the regular fields of an HTTP/2 request (as ``h2`` validated them:
    pseudo-headers first, once each, required ones present, no connection-specific field), with
    :authority as Host when there is none and cookie crumbs joined (RFC 9113 §8.2.3). The third
    item says why the request is malformed (RFC 9113 §8.1.1), or None."""
    pseudo: dict[bytes, bytes] = {}
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    host = False
    length = None
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            if name == b"host":
                host = True
            elif name == b"content-length":
                if not value.isdigit() or (length is not None and value != length):
                    return pseudo, fields, "invalid Content-Length"
                length = value
            fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    authority = pseudo.get(b":authority")
    if not host and authority is not None:
        fields.insert(0, (b"host", authority))
    if pseudo.get(b":method") == b"CONNECT" and b":protocol" not in pseudo:  # extended CONNECT: RFC 8441
        return pseudo, fields, "CONNECT"
    if pseudo.get(b":scheme", b"").lower() not in _SCHEMES:
        return pseudo, fields, "unknown :scheme"
    return pseudo, fields, None


class Stream:
    """One request stream: the ``exchange.ClientSide`` of its exchange (``http.ClientConnection.route``
    reads the connection's facts through it)."""

    __slots__ = ("conn", "id", "exchange", "client_ip", "hsts", "paused", "unacked", "out", "out_bytes",
                 "head", "end_pending", "blocked", "deadline", "finished", "closed", "local_sent", "upstream_paused",
                 "trailers", "connect", "tunnel", "early", "client_ended", "tunnel_at", "tunnel_in", "tunnel_out",
                 "held", "held_ip")

    def __init__(self, conn: H2ClientConnection, stream_id: int):
        self.conn = conn
        self.id = stream_id
        self.exchange: Exchange | None = None
        self.client_ip = conn.client_ip
        self.hsts = conn.hsts
        self.paused = 0  # exchange.PAUSE_* bits: request body bytes are not acknowledged meanwhile
        self.unacked = 0  # request body bytes received and not yet given back to the client's window
        self.out: list[bytes] = []  # response body bytes waiting for the client's window
        self.out_bytes = 0
        self.head: list[tuple[bytes, bytes]] | None = None  # a response head not yet framed
        self.end_pending = False  # the response ends once ``out`` is sent
        self.blocked = 0  # _BLOCKED_* bits: the upstream is not read
        self.upstream_paused: UpstreamSide | None = None  # the upstream connection paused for this stream
        self.deadline = 0.0
        self.finished = False  # the exchange is over (recorded)
        self.closed = False  # the stream is gone from the connection
        self.local_sent = False
        self.trailers: list[tuple[bytes, bytes]] | None = None  # response trailers, sent to end the stream
        # websockets over HTTP/2 (RFC 8441): an extended CONNECT stream and, after the 101, its tunnel
        self.connect = False
        self.tunnel: UpstreamSide | None = None
        self.early: list[bytes] | None = None  # DATA before the upstream switched protocols (unacknowledged)
        self.client_ended = False  # the client sent END_STREAM
        self.tunnel_at = 0.0
        self.tunnel_in = self.tunnel_out = 0  # tunnel bytes from / to the client
        self.held = None  # the limit-connections zone counting this stream (as nginx: each HTTP/2 stream)
        self.held_ip = ""

    # --- what http.ClientConnection.route reads -----------------------------------------------

    @property
    def ctx(self) -> ClientContext:
        return self.conn.ctx

    @property
    def listener(self) -> Listener:
        return self.conn.listener

    @property
    def timers(self):
        return self.conn.timers

    @property
    def forwarded(self) -> bytes:
        return self.conn.forwarded

    @property
    def trust(self):
        return self.conn.trust

    @property
    def peer_ip(self) -> str:
        return self.conn.peer_ip

    @property
    def proxied_ip(self) -> str | None:
        return self.conn.proxied_ip

    route = ClientConnection.route
    # auth-url and auth-type basic: the same check as HTTP/1.1 (ClientConnection.pass_gate), then proxied
    _auth_request = ClientConnection._auth_request
    pass_gate = ClientConnection.pass_gate

    def send_continue(self, exchange: Exchange) -> None:
        if not self.closed:
            self.conn.h2.send_headers(self.id, [(b":status", b"100")])

    def hold(self, limit) -> bool:
        """limit-connections: as nginx counts HTTP/2, each stream in progress is one connection."""
        if limit.exempts(self.client_ip):
            return True
        if not limit.acquire(self.client_ip):
            return False
        self.held, self.held_ip = limit, self.client_ip
        return True

    def release_slot(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            held.release(self.held_ip)

    def _local(self, exchange: Exchange, status: int, body: bytes, location: str | None = None,
               hsts: bool = True, headers: bytes = b"", content_type: bytes | None = None) -> None:
        if self.hsts and hsts:
            headers += self.hsts
        if location is not None:
            data = responses.redirect(status, location, headers=headers, head_only=exchange.is_head)
        else:
            data = responses.response(status, body, headers=headers, head_only=exchange.is_head,
                                      content_type=content_type)
        exchange.local = data
        exchange.status = status
        exchange.response_started = exchange.response_done = True
        exchange.sent = len(data)
        self.send_local(exchange, data)
        self.finish(exchange)

    def _bad(self, exchange: Exchange, reason: str, status: int = 400) -> None:
        exchange.route = self.conn.ctx.config.table.default
        self._local(exchange, status, responses.error_body(status, reason))

    # --- exchange.ClientSide -----------------------------------------------------------------------

    def send_interim(self, exchange: Exchange, status: int, status_line: bytes, fields: bytes) -> None:
        if status != 100 and not self.closed:  # 100 Continue was ingressd's to send
            headers = [(b":status", b"%d" % status)]
            fields_to_headers(fields, headers)
            self.conn.h2.send_headers(self.id, headers)

    def send_head(self, exchange: Exchange, status: int, status_line: bytes, fields: bytes, body: int) -> None:
        if self.connect and status < 300:  # a 2xx would tell the client its websocket is open (RFC 8441 §5)
            exchange.status = 502
            log.warning("%s %s: the upstream answered %d to a websocket upgrade", exchange.host,
                        exchange.url.decode("latin-1"), status)
            self.cut()
            return
        headers = [(b":status", b"%d" % status)]
        fields_to_headers(fields, headers)
        lowered = b"\n" + fields.lower()
        if b"\ndate:" not in lowered:
            fields_to_headers(responses.date_line(), headers)
        if self.hsts and b"\nstrict-transport-security:" not in lowered:
            fields_to_headers(self.hsts, headers)
        if exchange.response_fields:
            fields_to_headers(exchange.response_fields, headers)
        exchange.sent += sum(len(name) + len(value) + 4 for name, value in headers)
        self.head = headers  # framed with the first body bytes, the end, or at the next flush

    def send_body(self, exchange: Exchange, data: bytes) -> None:
        exchange.sent += len(data)
        if self.closed or not data:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        if self.blocked and self.upstream_paused is None:
            self.conn.sync_upstream(self)  # blocked before its upstream was attached
        # framed by ``flush`` (after each upstream read) or ``send_end``: a small response is one
        # HEADERS and one DATA frame with END_STREAM

    def send_end(self, exchange: Exchange) -> None:
        if self.closed:
            return
        self.end_pending = True
        self.conn.pump(self)
        self.conn.flush()

    def send_trailers(self, exchange: Exchange, trailers: list[tuple[bytes, bytes]]) -> None:
        """Trailers from an HTTP/2 upstream (gRPC's grpc-status): the HEADERS frame that ends the stream."""
        if not self.closed:
            self.trailers = [field for field in trailers if field[0] not in _HOP_BY_HOP] or None

    def send_upgrade(self, exchange: Exchange, status_line: bytes, fields: bytes, upstream: UpstreamSide) -> None:
        if not self.connect or self.closed:  # only an extended CONNECT asks an upstream to switch
            upstream.close()
            self.cut()
            return
        self.conn.open_tunnel(self, exchange, fields, upstream)

    def send_local(self, exchange: Exchange, data: bytes) -> None:
        if self.closed or self.local_sent or self.conn.closed:
            return
        self.local_sent = True
        status, headers, body = split_response(data)
        h2conn = self.conn.h2
        if body:
            h2conn.send_headers(self.id, headers)
            self.out.append(body)
            self.out_bytes += len(body)
            self.end_pending = True
            self.conn.pump(self)
        else:
            h2conn.send_headers(self.id, headers, end_stream=True)
            self.end_pending = False
            self.conn.stream_sent(self)
        self.conn.flush()

    def flush(self) -> None:
        if not self.closed and (self.head is not None or self.out):
            self.conn.pump(self)
        self.conn.flush()

    def cut(self) -> None:
        """The response cannot be completed: reset the stream (other streams go on)."""
        self.conn.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.conn.flush()

    def finish(self, exchange: Exchange) -> None:
        if self.finished:
            return
        self.finished = True
        self.conn.ctx.recorder.record(exchange)
        self.conn.answered += 1
        if not self.out and not self.end_pending and self.head is None and self.tunnel is None:
            self.conn.stream_sent(self)

    def pause(self, reason: int) -> None:
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.unacked:
                unacked, self.unacked = self.unacked, 0
                self.conn.acknowledge(self, unacked)
                self.conn.flush()

    def tunnel_send(self, data: bytes) -> None:
        """Bytes from the upstream of a websocket: DATA frames as the client's windows allow (the
        upstream is not read while they are exhausted)."""
        if self.closed or not data:
            return
        self.tunnel_out += len(data)
        self.out.append(data)
        self.out_bytes += len(data)
        self.conn.pump(self)
        self.conn.flush()

    def tunnel_closed_by_upstream(self) -> None:
        if self.tunnel is not None:  # (not when ingressd closed it: close_tunnel has ended the stream)
            self.conn.close_tunnel(self)
            self.conn.end_tunnel_stream(self)

    # --- timers ------------------------------------------------------------------------------------

    def on_timeout(self) -> None:
        exchange = self.exchange
        self.deadline = 0.0
        if exchange is not None and not exchange.request_done and not exchange.response_started:
            exchange.abort()
            exchange.keep_alive = False  # finished at once, the stream reset after the answer
            exchange.answer(408, responses.error_body(408, "the request body was not received in time"))
            self.conn.flush()
            return
        # a client that opened no window for the response (or sent no body) for that long
        self.conn.reset(self, h2.errors.ErrorCodes.CANCEL)
        self.conn.flush()


class H2ClientConnection(asyncio.Protocol):
    """One HTTP/2 client connection (server side of ``h2``), its streams and its limits."""

    tunnel = None  # for DataPlane.counters and close: never a tunnel, never an HTTP/1.1 request being read
    cur = None

    def __init__(self, ctx: ClientContext, listener: Listener):
        self.ctx = ctx
        self.timers = ctx.timers
        self.listener = listener
        self.hsts = ctx.config.hsts if listener.hsts else b""
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.h2: h2.connection.H2Connection = None  # type: ignore[assignment]
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.deadline = 0.0
        self.client_ip = self.peer_ip = ""
        self.forwarded = b""
        self.trust = None
        self.proxied = None  # a PROXY protocol header read before TLS (server.py)
        self.proxied_ip: str | None = None
        self.limits = ctx.config.client
        self.write_paused = False
        self.answered = 0  # responses completed
        self.resets = 0  # RST_STREAM from the client and streams refused, in all
        self.window_start = 0.0  # the current one-second window of the flood counters
        self.window_resets = self.window_control = 0
        self.goaway_reason = ""
        self.partial_since = 0.0  # when a request head that is still incomplete began
        self.served = 0  # streams accepted
        # The ConfigMap's HTTP/2 limits when the connection opened (a change applies to new connections)
        self.max_streams = self.limits.http2_max_concurrent_streams
        self.max_requests = self.limits.http2_requests
        self.data_frames = self.window_updates = 0  # DATA frames sent, WINDOW_UPDATE frames received
        self.draining = False  # a GOAWAY NO_ERROR was sent: no new stream, close once the last ends
        self.write_scheduled = False  # a write_out is due in this event loop iteration
        self.to_proxy: list[Exchange] = []  # requests of the read being handled, proxied after it
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    @property
    def active(self) -> bool:
        return bool(self.streams)

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.loop = asyncio.get_event_loop()
        peer = transport.get_extra_info("peername")
        self.peer_ip = self.client_ip = ip = peer[0] if peer else ""
        header = self.proxied
        if header is not None and header.source is not None and is_trusted(self.ctx.config.trust, ip):
            ip = self.client_ip = self.proxied_ip = header.source
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\n%s" % (ip.encode(), ip.encode(),
                                                                          self.listener.headers)
        trust = self.ctx.config.trust
        if trust.realip and is_trusted(trust, self.peer_ip):
            self.trust = trust
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        # What ingressd sends is built well-formed here (lower-case names, no connection-specific
        # fields, values from parsed HTTP/1.1 lines): h2's per-field checks of it are skipped.
        conn = self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=True,
            validate_outbound_headers=False, normalize_outbound_headers=False))
        head_limit = self.limits.max_head_bytes
        conn.local_settings = _LocalSettings(client=False, initial_values={
            _settings_codes.MAX_CONCURRENT_STREAMS: self.max_streams,
            _settings_codes.MAX_HEADER_LIST_SIZE: head_limit,
            _settings_codes.ENABLE_CONNECT_PROTOCOL: 1,  # websockets over HTTP/2 (RFC 8441)
        })
        conn.decoder.max_header_list_size = head_limit
        conn.encoder = LiteralEncoder()  # as nginx: responses use no dynamic table (a third of h2's CPU)
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.deadline = self.timers.now + self.limits.header_timeout
        self.window_start = self.timers.now
        self.timers.add(self)
        self.ctx.connections.add(self)
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if len(data) <= RECEIVE_SLICE:
            self.receive(data)
        else:
            # A slice at a time: a flood of small frames (SETTINGS, PING, WINDOW_UPDATE, HEADERS,
            # CONTINUATION) is cut after one slice, not after all that one read brought (256 KB).
            for offset in range(0, len(data), RECEIVE_SLICE):
                self.receive(data[offset:offset + RECEIVE_SLICE])
                if self.closed:
                    return
        if self.to_proxy:
            try:
                self.proxy_requests()
            except Exception:  # a bug here must not leave the connection hanging
                log.exception("internal error on an HTTP/2 connection from %s", self.client_ip)
                self.goaway(h2.errors.ErrorCodes.INTERNAL_ERROR, "internal error")
                return
        self.flush()

    def proxy_requests(self) -> None:
        """Send the requests of this read to their upstreams, once every frame of it is handled: a
        stream opened and reset in the same read (rapid reset) never costs an upstream connection."""
        exchanges, self.to_proxy = self.to_proxy, []
        pool = self.ctx.pool
        for exchange in exchanges:
            if not exchange.aborted and not self.closed:
                pool.proxy(exchange)

    def receive(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            code = getattr(error, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self.goaway(code, str(error) or type(error).__name__)
            return
        buffered = getattr(self.h2.incoming_buffer, "_headers_buffer", None)
        if buffered:  # HEADERS + CONTINUATION without END_HEADERS yet
            if sum(len(frame.data) for frame in buffered) > self.limits.max_head_bytes:  # the CONTINUATION flood
                self.goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "request head too large")
                return
            if not self.partial_since:  # ... and a slow one: header-timeout to complete it
                self.partial_since = self.timers.now
                limit = self.partial_since + self.limits.header_timeout
                if not self.deadline or self.deadline > limit:
                    self.deadline = limit
        elif self.partial_since:
            self.partial_since = 0.0
            if not self.streams:
                self.idle_check()
            elif not self.write_paused:
                self.deadline = 0.0
        try:
            self.handle(events)
        except Exception:  # a bug here must not leave the connection hanging
            log.exception("internal error on an HTTP/2 connection from %s", self.client_ip)
            self.goaway(h2.errors.ErrorCodes.INTERNAL_ERROR, "internal error")

    def handle(self, events: list) -> None:
        for event in events:
            if self.closed:
                return
            kind = type(event)
            if kind is h2.events.RequestReceived:
                self.on_request(event)
            elif kind is h2.events.DataReceived:
                self.on_data(event)
            elif kind is h2.events.StreamEnded:
                self.on_end(event.stream_id)
            elif kind is h2.events.WindowUpdated:
                self.window_updates += 1
                if self.window_updates > 2 * self.data_frames + WINDOW_UPDATE_SLACK:
                    # more than a reader consuming what was sent would ever need (a WINDOW_UPDATE flood)
                    self.goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "too many WINDOW_UPDATE frames")
                    return
                self.on_window(event.stream_id)
            elif kind is h2.events.StreamReset:
                self.on_reset(event)
            elif kind is h2.events.RemoteSettingsChanged:
                self.count_control()
                if _settings_codes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self.on_window(0)
            elif kind is h2.events.PingReceived or kind is h2.events.PriorityUpdated:
                self.count_control()
            elif kind is h2.events.ConnectionTerminated:
                self.flush()
                self.close()
                return
            # TrailersReceived: dropped (HTTP/1.1 upstreams get no request trailers); StreamEnded follows

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.timers.discard(self)
        self.ctx.connections.discard(self)
        draining = self.ctx.draining  # shutting down (DataPlane.drain): set when the last connection is gone
        if draining is not None and not self.ctx.connections:
            draining.set()
        for stream in list(self.streams.values()):
            self.timers.discard(stream)
            stream.closed = True
            if stream.tunnel is not None:
                self.close_tunnel(stream)
            if stream.held is not None:
                stream.release_slot()
            if stream.exchange is not None and not stream.finished:
                stream.exchange.abort()
            stream.exchange = None  # see forget
        self.streams.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.deadline = self.timers.now + SEND_TIMEOUT  # a client not reading at all
        for stream in self.streams.values():
            self.block(stream, _BLOCKED_TRANSPORT)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.deadline = 0.0
        self.idle_check()
        for stream in list(self.streams.values()):
            self.unblock(stream, _BLOCKED_TRANSPORT)

    # --- requests ------------------------------------------------------------------------------------

    def on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.draining:  # after our GOAWAY: the client retries it on a new connection
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = Stream(self, stream_id)
        if len(self.streams) >= self.max_streams:
            self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            self.count_reset()
            return
        self.served += 1
        if self.served >= self.max_requests:
            self.drain(stream_id)  # http2-max-requests, else keep-alive-requests (nginx): this stream is the last
        self.streams[stream_id] = stream
        if not self.write_paused and not self.partial_since:
            self.deadline = 0.0
        self.limits = limits = self.ctx.config.client
        if self.listener.hsts:
            stream.hsts = self.hsts = self.ctx.config.hsts
        exchange = stream.exchange = Exchange(stream)
        exchange.http2 = True
        exchange.keep_alive = True
        pseudo, fields, error = request_headers(event.headers)
        exchange.headers = fields
        exchange.method = method = pseudo.get(b":method", b"")
        exchange.url = pseudo.get(b":path", b"")
        exchange.is_head = method == b"HEAD"
        exchange.head_size = sum(len(name) + len(value) + 4 for name, value in event.headers)
        ended = exchange.request_done = event.stream_ended is not None
        if self.write_paused:
            stream.blocked = _BLOCKED_TRANSPORT
        if error is not None:
            return stream._bad(exchange, "CONNECT is not supported", 501) if error == "CONNECT" else \
                stream._bad(exchange, error)
        if method == b"CONNECT":
            return self.on_extended_connect(stream, exchange, pseudo, ended)
        head = read_headers(exchange)
        if head.error is not None:
            return stream._bad(exchange, head.error, head.status)
        if exchange.body_mode == NO_BODY and not ended and exchange.body_length != 0:
            exchange.body_mode = CHUNKED_BODY  # a body of unknown length: chunked to the upstream
        if ended and exchange.body_mode == LENGTH_BODY:
            return stream._bad(exchange, "Content-Length without a body")
        if not stream.route(exchange, head, False):
            return
        if not ended:
            stream.deadline = self.timers.now + limits.body_timeout
            self.timers.add(stream)
        if exchange.gate is not None:  # auth-url / basic auth: checked first, then proxied or answered
            asyncio.get_running_loop().create_task(stream.pass_gate(exchange))
            return
        if exchange.expect_continue:
            self.h2.send_headers(stream_id, [(b":status", b"100")])
        self.to_proxy.append(exchange)  # once the whole read is handled (proxy_requests)

    def on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length
        data = event.data
        if not data and event.stream_ended is None:
            self.count_control()  # empty DATA frames (CVE-2019-9518)
        if stream is None or stream.exchange is None:
            self.acknowledge(None, size, event.stream_id)
            return
        if stream.connect:
            return self.tunnel_data(stream, data, size)
        exchange = stream.exchange
        exchange.received += len(data)
        if stream.deadline and not exchange.request_done:
            stream.deadline = self.timers.now + self.limits.body_timeout
        limit = exchange.body_limit
        if limit is not None and exchange.received > limit and exchange.local is None and not exchange.aborted:
            self.acknowledge(stream, size)
            if not exchange.response_started:
                exchange.abort()
                exchange.keep_alive = False
                exchange.answer(413, responses.error_body(413, f"the body exceeds the limit of {limit} bytes"))
            else:
                exchange.abort()
                self.reset(stream, h2.errors.ErrorCodes.CANCEL)
            return
        if exchange.local is not None or exchange.aborted or exchange.response_done:
            self.acknowledge(stream, size)  # answered already: the body is read and dropped
            return
        if data:
            if exchange.body_mode == CHUNKED_BODY:
                exchange.send_upstream(b"%x\r\n%s\r\n" % (len(data), data) if len(data) < 4096 else
                                       b"".join((b"%x\r\n" % len(data), data, b"\r\n")))
            else:
                exchange.send_upstream(data)
        if stream.paused:
            stream.unacked += size  # given back once the upstream takes more
        else:
            self.acknowledge(stream, size)

    def on_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.exchange is None:
            return
        if stream.connect:
            return self.tunnel_ended_by_client(stream)
        exchange = stream.exchange
        if exchange.request_done:
            return
        exchange.request_done = True
        if not stream.finished:
            stream.deadline = 0.0
            if exchange.response_done:  # answered (Exchange.answer) while the body was coming
                stream.finish(exchange)
                return
        if exchange.local is not None or exchange.aborted:
            if stream.finished and not stream.out and not stream.end_pending:
                self.stream_sent(stream)
            return
        if exchange.body_mode == CHUNKED_BODY:
            exchange.send_upstream(b"0\r\n\r\n")
        if exchange.upstream is not None:
            exchange.upstream.request_sent()
        if stream.finished and not stream.out and not stream.end_pending:
            self.stream_sent(stream)

    def on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if event.remote_reset:
            self.count_reset()
        if stream is not None:
            self.drop(stream)

    # --- the response -------------------------------------------------------------------------------

    def pump(self, stream: Stream) -> None:
        """Frame a stream's waiting response as far as the client's windows allow; when they are
        exhausted, stop reading its upstream until a WINDOW_UPDATE (or SEND_TIMEOUT: reset)."""
        if stream.closed or self.closed:  # closed: GOAWAY received, the streams end with the connection
            return
        conn = self.h2
        out = stream.out
        if stream.head is not None:
            head, stream.head = stream.head, None
            end = stream.end_pending and not out and stream.trailers is None
            conn.send_headers(stream.id, head, end_stream=end)
            if end:
                stream.end_pending = False
                self.stream_sent(stream)
                return
        while out:
            window = min(conn.local_flow_control_window(stream.id), conn.max_outbound_frame_size)
            if window <= 0:
                self.block(stream, _BLOCKED_WINDOW)
                if not stream.deadline and stream.tunnel is None:  # (a tunnel waits as long as it takes)
                    stream.deadline = self.timers.now + SEND_TIMEOUT
                    self.timers.add(stream)
                return
            data = out[0]
            if len(data) > window:
                out[0] = data[window:]
                data = data[:window]
            else:
                out.pop(0)
            stream.out_bytes -= len(data)
            last = stream.end_pending and not out and stream.trailers is None
            conn.send_data(stream.id, data, end_stream=last)
            self.data_frames += 1
            if last:
                stream.end_pending = False
                self.unblock(stream, _BLOCKED_WINDOW)
                self.stream_sent(stream)
                return
        self.unblock(stream, _BLOCKED_WINDOW)
        if stream.end_pending:  # nothing left to frame: trailers or an empty DATA end the stream
            stream.end_pending = False
            if stream.trailers is not None:
                conn.send_headers(stream.id, stream.trailers, end_stream=True)
            else:
                conn.end_stream(stream.id)
            self.stream_sent(stream)

    def on_window(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None and stream.out:
                stream.deadline = self.timers.now + SEND_TIMEOUT
                self.pump(stream)
        else:
            for stream in list(self.streams.values()):
                if stream.out:
                    self.pump(stream)

    def stream_sent(self, stream: Stream) -> None:
        """The response is framed completely (the exchange may still be finishing)."""
        if not stream.finished:
            return
        exchange = stream.exchange
        if exchange is not None and (not exchange.request_done or (stream.connect and not stream.client_ended)):
            # Answered before the whole body came: the client may stop sending it (RFC 9113 §8.1).
            self.reset(stream, h2.errors.ErrorCodes.NO_ERROR)
            return
        self.forget(stream)

    def block(self, stream: Stream, reason: int) -> None:
        stream.blocked |= reason
        self.sync_upstream(stream)

    def unblock(self, stream: Stream, reason: int) -> None:
        if stream.blocked & reason:
            stream.blocked &= ~reason
            self.sync_upstream(stream)
            if not stream.blocked and stream.deadline and stream.exchange is not None \
                    and stream.exchange.request_done:
                stream.deadline = 0.0

    @staticmethod
    def sync_upstream(stream: Stream) -> None:
        """Read the stream's upstream connection only while the client takes what it sends."""
        exchange = stream.exchange
        upstream = stream.tunnel or (exchange.upstream if exchange is not None else None)
        if upstream is None:
            stream.upstream_paused = None
        elif stream.blocked and stream.upstream_paused is not upstream:
            stream.upstream_paused = upstream
            upstream.pause_reading()
        elif not stream.blocked and stream.upstream_paused is upstream:
            stream.upstream_paused = None
            upstream.resume_reading()

    # --- websockets over HTTP/2 (RFC 8441 extended CONNECT) ------------------------------------------

    def on_extended_connect(self, stream: Stream, exchange: Exchange, pseudo: dict[bytes, bytes], ended: bool) -> None:
        """``:method CONNECT`` with ``:protocol websocket``: routed exactly as an HTTP/1.1 GET asking
        ``Upgrade: websocket`` and proxied as one over the upstream pools (which open a tunnel on
        its 101). The upstream gets the handshake fields it needs and an HTTP/2 client does not
        send (Sec-WebSocket-Key; its Accept is dropped from the answer, RFC 8441 §5)."""
        stream.connect = True
        if pseudo.get(b":protocol", b"").lower() != b"websocket":
            return stream._bad(exchange, "unsupported :protocol", 501)
        if ended:
            return stream._bad(exchange, "extended CONNECT without a stream to tunnel")
        exchange.method = b"GET"
        headers = exchange.headers
        names = {name for name, _ in headers}
        headers.append((b"upgrade", b"websocket"))
        if b"sec-websocket-key" not in names:
            headers.append((b"sec-websocket-key", base64.b64encode(os.urandom(16))))
        if b"sec-websocket-version" not in names:
            headers.append((b"sec-websocket-version", b"13"))
        head = read_headers(exchange)
        if head.error is not None:
            return stream._bad(exchange, head.error, head.status)
        if exchange.body_mode != NO_BODY:
            return stream._bad(exchange, "extended CONNECT with a request body")
        exchange.request_done = True  # the upstream request is its head; DATA frames are the tunnel's
        stream.early = []
        if not stream.route(exchange, head, True):
            return
        if exchange.gate is not None:  # auth-url / basic auth first, as for any request
            asyncio.get_running_loop().create_task(stream.pass_gate(exchange))
            return
        self.to_proxy.append(exchange)

    def open_tunnel(self, stream: Stream, exchange: Exchange, fields: bytes, upstream: UpstreamSide) -> None:
        """The upstream switched protocols: :status 200, then the stream is the websocket's tunnel."""
        headers = [(b":status", b"200")]
        fields_to_headers(fields, headers)
        headers = [pair for pair in headers if pair[0] != b"sec-websocket-accept"]
        if stream.hsts and b"\nstrict-transport-security:" not in b"\n" + fields.lower():
            fields_to_headers(stream.hsts, headers)
        if exchange.response_fields:  # CORS, the affinity cookie
            fields_to_headers(exchange.response_fields, headers)
        exchange.sent += sum(len(name) + len(value) + 4 for name, value in headers)
        self.h2.send_headers(stream.id, headers)
        stream.tunnel = upstream
        stream.tunnel_at = monotonic()
        self.ctx.recorder.tunnel_opened()
        early, stream.early = stream.early, None
        for data in early or ():
            stream.tunnel_in += len(data)
            upstream.write(data)
        if stream.blocked:
            self.sync_upstream(stream)
        if not stream.paused and stream.unacked:
            unacked, stream.unacked = stream.unacked, 0
            self.acknowledge(stream, unacked)
        stream.finish(exchange)  # counted and logged as the 101 of an HTTP/1.1 websocket
        self.flush()

    def tunnel_data(self, stream: Stream, data: bytes, size: int) -> None:
        """A DATA frame on an extended CONNECT stream: to the upstream once it has switched protocols
        (before, held unacknowledged: the stream's window bounds it); window given back as the
        upstream takes the bytes."""
        upstream = stream.tunnel
        if upstream is not None:
            stream.tunnel_in += len(data)
            if data:
                upstream.write(data)  # may pause the stream (PAUSE_UPSTREAM): acknowledged on resume
        elif stream.early is not None and not stream.finished and not stream.closed:
            if data:
                stream.early.append(data)
            stream.unacked += size
            return
        if stream.paused:
            stream.unacked += size
        else:
            self.acknowledge(stream, size)

    def tunnel_ended_by_client(self, stream: Stream) -> None:
        """END_STREAM from the client (its websocket's TCP FIN, RFC 8441 §4): as an HTTP/1.1 client's
        half-close ends its tunnel, the upstream is closed and the stream ended."""
        stream.client_ended = True
        if stream.tunnel is not None:
            self.close_tunnel(stream)
            self.end_tunnel_stream(stream)
        elif stream.finished and not stream.out and not stream.end_pending and not stream.closed:
            self.stream_sent(stream)  # answered without a tunnel (refused, local answer)

    def end_tunnel_stream(self, stream: Stream) -> None:
        """The tunnel is closed: END_STREAM after what is still waiting for the client's window."""
        if not stream.closed:
            stream.end_pending = True
            self.pump(stream)
            self.flush()

    def close_tunnel(self, stream: Stream) -> None:
        upstream, stream.tunnel = stream.tunnel, None
        if upstream is None:
            return
        stream.upstream_paused = None
        upstream.close()
        self.ctx.recorder.tunnel_closed(stream.client_ip, stream.tunnel_at, stream.tunnel_out, stream.tunnel_in,
                                        stream.exchange)

    # --- streams and the connection -----------------------------------------------------------------

    def acknowledge(self, stream: Stream | None, size: int, stream_id: int = 0) -> None:
        if size:
            try:
                self.h2.acknowledge_received_data(size, stream.id if stream is not None else stream_id)
            except (h2.exceptions.ProtocolError, ValueError):
                pass

    def reset(self, stream: Stream, code: int) -> None:
        if stream.closed:
            return
        try:
            self.h2.reset_stream(stream.id, code)
        except h2.exceptions.ProtocolError:  # closed on the h2 side already
            pass
        self.streams.pop(stream.id, None)
        self.drop(stream)

    def drop(self, stream: Stream) -> None:
        """A stream reset by either side: release what serves it."""
        stream.closed = True
        stream.out = []
        self.timers.discard(stream)
        if stream.tunnel is not None:
            self.close_tunnel(stream)
        exchange = stream.exchange
        if exchange is not None and not stream.finished:
            exchange.abort()
            if not exchange.response_done:
                exchange.status = exchange.status or 499  # as nginx: the client closed the request
            stream.finished = True
            self.ctx.recorder.record(exchange)
        if stream.held is not None:
            stream.release_slot()
        stream.exchange = None  # see forget
        self.idle_check()

    def forget(self, stream: Stream) -> None:
        stream.closed = True
        if stream.held is not None:
            stream.release_slot()
        self.timers.discard(stream)
        self.streams.pop(stream.id, None)
        # The exchange points back at its stream: without this reference cycle the two are freed
        # now, not by the cyclic collector (or never, for a stream frozen by DataPlane.apply).
        stream.exchange = None
        self.idle_check()

    def idle_check(self) -> None:
        if self.streams or self.closed:
            return
        if self.draining:
            self.flush()
            self.close()
        elif not self.write_paused and not self.partial_since:
            self.deadline = self.timers.now + self.limits.keepalive_timeout

    def drain(self, last_stream_id: int) -> None:
        """GOAWAY NO_ERROR naming the last stream served; the ones open finish first. (Framed here:
        ``h2`` sends nothing more on a connection once it has sent GOAWAY itself.)"""
        self.draining = True
        frame = hyperframe.frame.GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = h2.errors.ErrorCodes.NO_ERROR
        self.h2._data_to_send += frame.serialize()

    def shut_down(self) -> None:
        """worker-shutdown-timeout (``DataPlane.drain``): GOAWAY NO_ERROR naming the last stream
        received; those open finish (websockets run on), then the connection closes."""
        if self.closed:
            return
        if not self.streams:
            self.goaway(h2.errors.ErrorCodes.NO_ERROR, "shutting down")
        elif not self.draining:
            self.drain(self.h2.highest_inbound_stream_id)
            self.flush()

    def count_reset(self) -> None:
        self.resets += 1
        self.roll_window()
        self.window_resets += 1
        if self.window_resets > RESET_RATE or (self.resets > RESET_MIN and self.resets > 2 * self.answered):
            self.goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "too many streams reset")

    def count_control(self) -> None:
        self.roll_window()
        self.window_control += 1
        if self.window_control > CONTROL_RATE:
            self.goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "too many control frames")

    def roll_window(self) -> None:
        now = monotonic()
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.window_resets = self.window_control = 0

    def goaway(self, code: int, reason: str) -> None:
        """End the connection with GOAWAY ``code``: every stream's exchange is released."""
        if self.closed:
            return
        self.goaway_reason = reason
        log.log(logging.DEBUG if code == h2.errors.ErrorCodes.NO_ERROR else logging.INFO,
                "closing HTTP/2 connection from %s: %s (%s)", self.client_ip, reason, getattr(code, "name", code))
        self.ctx.recorder.h2_goaway(getattr(code, "name", str(code)))
        try:
            self.h2.close_connection(error_code=code)
        except h2.exceptions.ProtocolError:
            pass
        self.flush()
        self.close()

    def flush(self) -> None:
        """Write what ``h2`` has framed, once per event loop iteration: the responses completed by
        the upstream reads of one iteration leave in one TLS write instead of one each."""
        if not self.write_scheduled and not self.closed:
            self.write_scheduled = True
            self.loop.call_soon(self.write_out)

    def write_out(self) -> None:
        self.write_scheduled = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.write_out()  # what is framed (a GOAWAY) goes first
            self.closed = True
            self.transport.close()

    def on_timeout(self) -> None:
        """No request head in header-timeout, or idle past keep-alive: GOAWAY NO_ERROR and close;
        a head begun and not finished in header-timeout, or a client reading nothing for SEND_TIMEOUT:
        close."""
        if self.write_paused:
            log.info("closing HTTP/2 connection from %s: not reading for %gs", self.client_ip, SEND_TIMEOUT)
            self.closed = True
            self.transport.abort()
        elif self.partial_since:
            self.goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, "request head not completed in time")
        elif self.streams:
            self.deadline = 0.0
        else:
            self.goaway(h2.errors.ErrorCodes.NO_ERROR, "idle")

