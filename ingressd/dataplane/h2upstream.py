"""HTTP/2 to upstreams (``backend-protocol: GRPC`` cleartext with prior knowledge, ``GRPCS`` over TLS
with ALPN ``h2``): pooled connections, each carrying many exchanges as streams.

``UpstreamPool.proxy`` hands the exchanges of such routes to the :class:`H2UpstreamPool` with the
endpoint it chose. The pool keeps the connections of each endpoint (TLS ones apart, by their
``UpstreamTLS``) and puts a new stream on the first that has room under the server's
SETTINGS_MAX_CONCURRENT_STREAMS (and ``MAX_STREAMS``); it dials another when none has, with the
route's ``proxy-connect-timeout``, as the HTTP/1.1 pool does. A connection that got GOAWAY takes no
new stream; the streams the server did not process are sent again elsewhere.

Each :class:`H2UpstreamStream` is the ``exchange.UpstreamSide`` of one exchange, so the client side
(HTTP/1.1 or HTTP/2) does not know which kind of upstream it has. The request head the client side
built for HTTP/1.1 (``forward.upstream_head``: every header rewrite of the route included) is
turned into HTTP/2 header fields; the response's fields are handed back as HTTP/1.1 field lines,
its trailers (``grpc-status``, ``grpc-message``, ...) through ``Exchange.response_trailers``.

Flow control is tied to the other side's backpressure both ways: response DATA is acknowledged to
the upstream (WINDOW_UPDATE) only while the client takes it (``pause_reading`` / ``resume_reading``);
request bytes beyond the upstream's window wait here and pause the client's reading until a
WINDOW_UPDATE. Timeouts: ``proxy-read-timeout`` between two frames of the upstream once the request
is sent or the response has begun, ``proxy-send-timeout`` while the upstream's window stays shut, and
a request's ``grpc-timeout`` as an absolute deadline (never later than those).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from . import grpcstatus, responses
from .hpack_literal import LiteralEncoder
from .exchange import PAUSE_UPSTREAM, RESPONSE_CHUNKED, RESPONSE_EMPTY, RESPONSE_LENGTH, Exchange

if TYPE_CHECKING:
    from .upstream import UpstreamPool

log = logging.getLogger("ingressd.upstream")

MAX_STREAMS = 100  # streams per upstream connection at most, whatever the server allows
STREAM_WINDOW = 256 * 1024  # response bytes in flight per stream before the client must take some
CONNECTION_WINDOW = MAX_STREAMS * STREAM_WINDOW  # so paused streams never stall the others

# Request fields that are connection-specific in HTTP/2 (RFC 9113 §8.2.2) or become pseudo-headers.
_NOT_FORWARDED = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
                            b"te", b"host", b"trailer"))
_Codes = h2.errors.ErrorCodes
_settings = h2.settings.SettingCodes


def request_fields(head: bytes, scheme: bytes) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """An HTTP/1.1 request head (``forward.upstream_head``) as HTTP/2 header fields, and the value of
    its ``grpc-timeout`` (or None). Host becomes :authority; ``te: trailers`` is always sent (gRPC
    servers require it, as nginx's grpc_pass sends it)."""
    lines = head.split(b"\r\n")
    method, _, rest = lines[0].partition(b" ")
    target = rest.rpartition(b" ")[0]
    authority = b""
    timeout = None
    fields: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip(b" \t")
        if name in _NOT_FORWARDED:
            if name == b"host":
                authority = value
            continue
        if name == b"grpc-timeout":
            timeout = value
        fields.append((name, value))
    fields.append((b"te", b"trailers"))
    return [(b":method", method), (b":scheme", scheme), (b":authority", authority), (b":path", target),
            *fields], timeout


def response_fields(headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, bool]:
    """The :status, the regular fields as HTTP/1.1 field lines, and whether Content-Length is among them."""
    status = 0
    lines = []
    length = False
    for name, value in headers:
        if name[:1] == b":":
            if name == b":status":
                status = int(value)
            continue
        if name == b"content-length":
            length = True
        lines += (name, b": ", value, b"\r\n")
    return status, b"".join(lines), length


def resendable(exchange: Exchange) -> bool:
    """Whether a stream the server did not process (GOAWAY above its last stream, REFUSED_STREAM)
    is sent again: RFC 9113 §8.7 makes it safe whatever the method, when its body is still at hand;
    at most proxy-next-upstream-tries times in all, so a server refusing everything ends it."""
    return exchange.replayable and exchange.attempts < max(exchange.route.options.next_upstream_tries, 1)


class H2UpstreamStream:
    """One exchange on an upstream connection: its ``exchange.UpstreamSide``."""

    __slots__ = ("conn", "id", "exchange", "out", "end_requested", "end_sent", "paused", "unacked", "deadline",
                 "read_at", "call_deadline", "blocked", "closed", "client_paused")

    def __init__(self, conn: H2UpstreamConnection, stream_id: int, exchange: Exchange):
        self.conn = conn
        self.id = stream_id
        self.exchange: Exchange | None = exchange
        self.out: deque[bytes] = deque()  # request bytes waiting for the upstream's window
        self.end_requested = False  # the request is complete: END_STREAM once ``out`` is sent
        self.end_sent = False
        self.paused = False  # the client cannot take more: DATA is not acknowledged meanwhile
        self.unacked = 0
        self.deadline = 0.0
        self.read_at = 0.0  # proxy-read-timeout runs from here (0: not running)
        self.call_deadline = 0.0  # grpc-timeout (0: none)
        self.blocked = False  # request bytes wait for a WINDOW_UPDATE (proxy-send-timeout runs)
        self.closed = False
        self.client_paused = False  # PAUSE_UPSTREAM asked of the client side, for this stream

    # --- exchange.UpstreamSide ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or not data:
            return
        self.out.append(data)
        self.send_waiting()
        self.conn.flush_soon()

    def request_sent(self) -> None:
        if self.closed:
            return
        self.end_requested = True
        self.send_waiting()
        self.start_reading()
        self.conn.flush_soon()

    def abandon(self) -> None:
        """The client is gone: cancel this stream only (the connection serves the others)."""
        self.exchange = None
        self.conn.reset(self, _Codes.CANCEL)

    close = abandon

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if self.unacked and not self.closed:
                unacked, self.unacked = self.unacked, 0
                self.conn.acknowledge(self.id, unacked)
                self.conn.flush_soon()

    # --- request bytes -----------------------------------------------------------------------------

    def send_waiting(self) -> None:
        """Frame waiting request bytes as far as the upstream's windows allow."""
        h2conn = self.conn.h2
        out = self.out
        try:
            while out:
                window = min(h2conn.local_flow_control_window(self.id), h2conn.max_outbound_frame_size)
                if window <= 0:
                    break
                data = out[0]
                if len(data) > window:
                    out[0] = data[window:]
                    data = data[:window]
                else:
                    out.popleft()
                h2conn.send_data(self.id, data)
            if not out and self.end_requested and not self.end_sent:
                self.end_sent = True
                h2conn.end_stream(self.id)
        except (h2.exceptions.ProtocolError, h2.exceptions.FlowControlError, KeyError):
            out.clear()  # the stream is closed on the upstream's side already (it answered, or reset it)
        self.set_blocked(bool(out))

    def set_blocked(self, blocked: bool) -> None:
        """Request bytes wait for the upstream's window: the client is not read meanwhile, and
        proxy-send-timeout runs."""
        if blocked == self.blocked:
            return
        self.blocked = blocked
        self.sync_client()
        self.arm()

    def sync_client(self) -> None:
        exchange = self.exchange
        paused = (self.blocked or self.conn.write_paused) and not self.closed
        if exchange is None or paused == self.client_paused:
            return
        self.client_paused = paused
        if paused:
            exchange.conn.pause(PAUSE_UPSTREAM)
        else:
            exchange.conn.resume(PAUSE_UPSTREAM)

    # --- timeouts ----------------------------------------------------------------------------------

    def start_reading(self) -> None:
        """proxy-read-timeout runs from now on (the request is sent, or the upstream answers)."""
        self.read_at = self.conn.timers.now
        self.arm()

    def arm(self) -> None:
        exchange = self.exchange
        if exchange is None or self.closed:
            return
        options = exchange.route.options
        deadline = self.read_at + options.read_timeout if self.read_at else 0.0
        if self.blocked:
            send = self.conn.timers.now + options.send_timeout
            deadline = min(deadline, send) if deadline else send
        if self.call_deadline:
            deadline = min(deadline, self.call_deadline) if deadline else self.call_deadline
        self.deadline = deadline

    def on_timeout(self) -> None:
        exchange = self.exchange
        self.conn.reset(self, _Codes.CANCEL)
        self.conn.flush_soon()
        if exchange is None:
            return
        exchange.upstream = None
        options = exchange.route.options
        name = exchange.route.backend.name
        if self.call_deadline and self.conn.timers.now >= self.call_deadline:
            detail = f"upstream {name}: the call's grpc-timeout passed"
        elif self.blocked:
            detail = f"upstream {name} did not take the request within {options.send_timeout:g}s"
        else:
            detail = f"upstream {name} did not answer within {options.read_timeout:g}s"
        exchange.fail(504, detail)
        exchange.conn.flush()

    # --- the response ----------------------------------------------------------------------------------

    def on_head(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        status, fields, has_length = response_fields(headers)
        exchange.upstream_header = monotonic()
        exchange.upstream_status = status
        if ended:
            body = RESPONSE_EMPTY
            if not has_length and not exchange.is_head and status != 204 and status != 304:
                fields += b"content-length: 0\r\n"  # trailers-only: an HTTP/1.1 client needs the framing
        elif has_length:
            body = RESPONSE_LENGTH
        else:
            body = RESPONSE_CHUNKED
        self.start_reading()
        exchange.response_head(status, b" %d %s" % (status, responses.reason(status)), fields, body)

    def on_data(self, data: bytes, size: int) -> None:
        exchange = self.exchange
        if exchange is not None and data and exchange.response_started:
            self.read_at = self.conn.timers.now
            self.arm()
            exchange.response_body(data)
        if self.paused and exchange is not None:
            self.unacked += size  # acknowledged once the client takes more (resume_reading)
        else:
            self.conn.acknowledge(self.id, size)

    def on_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.response_started:
            exchange.response_trailers([(name.lower(), value) for name, value in headers if name[:1] != b":"])

    def on_end(self) -> None:
        exchange = self.exchange
        if not self.end_sent:  # answered before the whole request: the rest is not wanted
            try:
                self.conn.h2.reset_stream(self.id, _Codes.CANCEL)
            except (h2.exceptions.ProtocolError, KeyError):
                pass
        self.conn.forget(self)
        if exchange is None:
            return
        self.exchange = None
        if not exchange.response_started:  # END_STREAM without a response head cannot happen in h2
            exchange.fail(502, f"upstream {exchange.route.backend.name} sent no response")
            return
        exchange.response_complete()

    def on_reset(self, code: int) -> None:
        exchange = self.exchange
        self.exchange = None
        self.conn.forget(self)
        if exchange is None or exchange.response_done:
            return
        exchange.upstream = None
        pool = self.conn.pool.pool
        if code == _Codes.REFUSED_STREAM and not exchange.response_started and resendable(exchange):
            pool.proxy(exchange, fresh=True)  # not processed (RFC 9113 §8.7): safe to send again
            return
        name = getattr(code, "name", code)
        exchange.fail(502, f"upstream {exchange.route.backend.name} reset the stream ({name})")


_STATES, _INPUTS = h2.connection.ConnectionState, h2.connection.ConnectionInputs


class _DrainingStateMachine(h2.connection.H2ConnectionStateMachine):
    """``h2`` refuses every frame once it has received GOAWAY, yet RFC 9113 §6.8 lets the streams up
    to the GOAWAY's last stream id finish (grpcio's graceful stop sends GOAWAY, PING, GOAWAY and then
    the answers). Here GOAWAY leaves the connection open; ``H2UpstreamConnection.draining`` keeps new
    streams off it."""

    _transitions = {**h2.connection.H2ConnectionStateMachine._transitions,
                    (_STATES.CLIENT_OPEN, _INPUTS.RECV_GOAWAY): (None, _STATES.CLIENT_OPEN)}


class H2UpstreamConnection(asyncio.Protocol):
    """One HTTP/2 connection to an endpoint (the client side of ``h2``) and its streams."""

    def __init__(self, pool: H2UpstreamPool, endpoint: tuple[str, int], key, tls):
        self.pool = pool
        self.timers = pool.timers
        self.endpoint = endpoint
        self.key = key
        self.tls = tls
        self.scheme = b"http" if tls is None else b"https"
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        # No validation of header fields either way: ours come from validated client requests
        # (httptools, h2client) and forward.upstream_head; the upstream's are filtered on the way to
        # the client (hop-by-hop fields dropped, framing ingressd's own). Framing, stream states and
        # flow control are still checked by h2. (Validation cost a tenth of a unary call's CPU.)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False, normalize_inbound_headers=False))
        self.h2.encoder = LiteralEncoder()  # static table and literals, as nginx's grpc_pass (hpack_literal)
        self.h2.state_machine = _DrainingStateMachine()
        self.streams: dict[int, H2UpstreamStream] = {}
        self.waiting: deque[Exchange] = deque()  # until connected, or until a stream slot frees
        self.connected = False
        self.settled = False  # the server's first SETTINGS frame was received
        self.closed = False
        self.draining = False  # GOAWAY received: no new streams
        self.write_paused = False
        self.flush_pending = False
        self.deadline = 0.0
        self.connect_timeout = 5.0  # also for the server's SETTINGS, the end of HTTP/2's handshake

    # --- capacity ----------------------------------------------------------------------------------

    def stream_limit(self) -> int:
        """Streams this connection may carry now: until the server's first SETTINGS frame says how
        many it takes (RFC 9113 §6.5.2: unlimited until then, which no server means), one."""
        if not self.settled:
            return 1
        return min(MAX_STREAMS, self.h2.remote_settings.max_concurrent_streams)

    def room(self) -> int:
        """How many more exchanges the pool may give this connection. Before the server's
        SETTINGS, optimistically MAX_STREAMS: the excess waits here for them, then ``spill``s."""
        limit = self.stream_limit() if self.settled else MAX_STREAMS
        return limit - len(self.streams) - len(self.waiting)

    def usable(self) -> bool:
        return not self.closed and not self.draining

    def send(self, exchange: Exchange) -> None:
        """Start ``exchange`` on this connection now, or once it is connected or has room."""
        if self.connected and not self.waiting and len(self.streams) < self.stream_limit():
            self.attach(exchange)
        else:
            exchange.connecting = True
            self.waiting.append(exchange)

    def start_waiting(self) -> None:
        waiting = self.waiting
        while waiting and self.connected and not self.closed:
            if len(self.streams) >= self.stream_limit():
                if not self.settled:
                    return  # the server's SETTINGS say how many more
                self.spill()
                return
            exchange = waiting.popleft()
            if exchange.aborted or not exchange.connecting:
                continue
            if self.draining:
                self.pool.pool.proxy(exchange, fresh=True)
            else:
                self.attach(exchange)

    def spill(self) -> None:
        """The server takes fewer streams than wait here: the others go to another connection."""
        waiting, self.waiting = self.waiting, deque()
        for exchange in waiting:
            if not exchange.aborted and exchange.connecting:
                exchange.connecting = False
                self.pool.send(exchange, self.endpoint, self.tls)

    # --- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        alpn = None
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
        conn = self.h2
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            _settings.ENABLE_PUSH: 0, _settings.INITIAL_WINDOW_SIZE: STREAM_WINDOW})
        conn.initiate_connection()
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.timers.add(self)
        if alpn is not None and alpn != "h2":
            self.closed = True
            transport.close()
            self.pool.dial_failed(self, 502, f"upstream chose {alpn} by ALPN, not h2")
            return
        self.connected = True
        self.deadline = self.timers.now + self.connect_timeout  # for the server's SETTINGS (on_timeout)
        self.flush()
        self.start_waiting()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            log.warning("HTTP/2 protocol error from upstream %s:%d: %s", *self.endpoint, error)
            self.flush()
            self.abort_all(f"sent an invalid HTTP/2 frame ({error})")
            return
        clients = set()
        streams = self.streams
        for event in events:
            stream = streams.get(getattr(event, "stream_id", 0))
            try:
                self.handle(event, stream, clients)
            except Exception:  # a bug here must not take the connection's other streams with it
                log.exception("internal error on a stream to upstream %s:%d", *self.endpoint)
                if stream is not None:
                    exchange = stream.exchange
                    self.reset(stream, _Codes.INTERNAL_ERROR)
                    if exchange is not None and not exchange.response_done:
                        exchange.upstream = None
                        exchange.fail(502, "internal error")
                if self.closed:
                    return
        self.flush()
        for client in clients:
            client.flush()
        if not self.closed:
            self.idle_check()

    def handle(self, event, stream: H2UpstreamStream | None, clients: set) -> None:
        """One event of ``h2`` (the clients whose responses moved are collected in ``clients``)."""
        kind = type(event)
        if kind is h2.events.DataReceived:
            if stream is None:
                self.acknowledge(event.stream_id, event.flow_controlled_length)
            else:
                stream.on_data(event.data, event.flow_controlled_length)
        elif kind is h2.events.ResponseReceived:
            if stream is not None:
                stream.on_head(event.headers, event.stream_ended is not None)
        elif kind is h2.events.StreamEnded:
            if stream is not None:
                if stream.exchange is not None:
                    clients.add(stream.exchange.conn)
                stream.on_end()
        elif kind is h2.events.TrailersReceived:
            if stream is not None:
                stream.on_trailers(event.headers)
        elif kind is h2.events.WindowUpdated:
            self.on_window(event.stream_id)
        elif kind is h2.events.StreamReset:
            if stream is not None:
                if stream.exchange is not None:
                    clients.add(stream.exchange.conn)
                stream.on_reset(event.error_code)
        elif kind is h2.events.RemoteSettingsChanged:
            if not self.settled:
                self.settled = True
                self.deadline = 0.0
            if _settings.INITIAL_WINDOW_SIZE in event.changed_settings:
                self.on_window(0)
            self.start_waiting()
        elif kind is h2.events.ConnectionTerminated:
            self.on_goaway(event.last_stream_id, event.error_code)
        if stream is not None and stream.exchange is not None:
            clients.add(stream.exchange.conn)

    def on_window(self, stream_id: int) -> None:
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is not None and stream.out:
                stream.send_waiting()
        else:
            for stream in list(self.streams.values()):
                if stream.out:
                    stream.send_waiting()

    def on_goaway(self, last_stream_id: int, code) -> None:
        """The server stops: streams it never processed go elsewhere, the others finish here."""
        self.draining = True
        self.pool.forget(self)
        log.info("upstream %s:%d sent GOAWAY (%s)", *self.endpoint, getattr(code, "name", code))
        for stream in [s for s in self.streams.values() if s.id > last_stream_id]:
            exchange = stream.exchange
            stream.exchange = None
            self.forget(stream)
            if exchange is not None and not exchange.response_started:
                exchange.upstream = None
                if resendable(exchange):
                    self.pool.pool.proxy(exchange, fresh=True)
                else:
                    exchange.fail(502, f"upstream {exchange.route.backend.name} went away (GOAWAY)")
        self.start_waiting()  # to other connections
        if code != _Codes.NO_ERROR:  # h2 takes no more frames: the connection is over
            self.abort_all(f"ended the connection ({getattr(code, 'name', code)})")

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            stream.sync_client()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.sync_client()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.abort_all("closed the connection" + (f" ({exc})" if exc else ""))

    def abort_all(self, why: str, status: int = 502) -> None:
        """The connection is gone: every exchange still on it fails with ``status`` (or, as
        proxy-next-upstream allows, goes to the next endpoint)."""
        was_closed = self.closed
        self.closed = True
        self.timers.discard(self)
        self.pool.forget(self)
        if not was_closed and self.transport is not None:
            self.transport.close()
        pool = self.pool.pool
        streams, self.streams = list(self.streams.values()), {}
        for stream in streams:
            stream.closed = True
            self.timers.discard(stream)
            exchange = stream.exchange
            stream.exchange = None
            if exchange is None or exchange.response_done:
                continue
            exchange.upstream = None
            if pool.may_retry(exchange, "timeout" if status == 504 else "error", sent=True):
                pool.proxy(exchange, fresh=True)
            else:
                exchange.fail(status, f"upstream {exchange.route.backend.name} {why}")
            exchange.conn.flush()
        waiting, self.waiting = self.waiting, deque()
        for exchange in waiting:  # never sent: as a failed dial (the next endpoint, within the tries)
            pool.dial_failed(exchange, status, f"upstream {exchange.route.backend.name} {why}")
            exchange.conn.flush()

    # --- streams -----------------------------------------------------------------------------------

    def attach(self, exchange: Exchange) -> None:
        conn = self.h2
        stream_id = conn.get_next_available_stream_id()
        stream = H2UpstreamStream(self, stream_id, exchange)
        headers, timeout = request_fields(exchange.head, self.scheme)
        pending = exchange.take_pending()
        ended = exchange.request_done and not pending
        conn.send_headers(stream_id, headers, end_stream=ended)
        stream.end_sent = stream.end_requested = ended
        self.streams[stream_id] = stream
        if self.settled:  # else the deadline is the SETTINGS one (on_timeout)
            self.deadline = 0.0
        exchange.upstream = stream
        exchange.connecting = False
        exchange.upstream_connected = monotonic()
        exchange.upstream_addr = self.endpoint
        self.pool.requests += 1
        if timeout is not None:
            seconds = grpcstatus.parse_timeout(timeout)
            if seconds is not None:
                stream.call_deadline = self.timers.now + seconds
        self.timers.add(stream)
        if pending:
            stream.out.extend(pending)
            stream.end_requested = exchange.request_done
            stream.send_waiting()
        if exchange.request_done:
            stream.start_reading()
        else:
            stream.arm()
        if self.write_paused:
            stream.sync_client()
        self.flush_soon()

    def reset(self, stream: H2UpstreamStream, code: int) -> None:
        if stream.closed:
            return
        try:
            self.h2.reset_stream(stream.id, code)
        except (h2.exceptions.ProtocolError, KeyError):  # closed on the h2 side already
            pass
        self.forget(stream)
        self.flush_soon()

    def forget(self, stream: H2UpstreamStream) -> None:
        if stream.client_paused and stream.exchange is not None:
            stream.client_paused = False
            stream.exchange.conn.resume(PAUSE_UPSTREAM)
        stream.closed = True
        stream.out.clear()
        self.timers.discard(stream)
        if self.streams.pop(stream.id, None) is not None and self.waiting:
            self.start_waiting()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size:
            try:
                self.h2.acknowledge_received_data(size, stream_id)
            except (h2.exceptions.ProtocolError, KeyError, ValueError):
                pass

    def idle_check(self) -> None:
        if not self.settled:
            return  # the deadline is the SETTINGS one
        if self.streams or self.waiting:
            self.deadline = 0.0
        elif self.draining:
            self.close()
        elif not self.deadline:
            self.deadline = self.timers.now + self.pool.pool.idle_timeout

    def on_timeout(self) -> None:
        if not self.settled:
            # Connected, but no SETTINGS within proxy-connect-timeout: not an HTTP/2 server (or a
            # stalled one). What waits here was never sent: it may go to the next endpoint.
            log.warning("upstream %s:%d sent no HTTP/2 SETTINGS within %gs", *self.endpoint, self.connect_timeout)
            self.abort_all(f"sent no HTTP/2 SETTINGS within {self.connect_timeout:g}s", 504)
        elif not self.streams and not self.waiting:
            self.close()
        else:
            self.deadline = 0.0

    # --- writing -----------------------------------------------------------------------------------

    def flush_soon(self) -> None:
        """Write what ``h2`` framed at the end of this turn of the event loop: a request's HEADERS,
        DATA and END_STREAM leave in one send."""
        if not self.flush_pending and not self.closed:
            self.flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        if self.closed or not self.connected:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self.h2.close_connection()
                self.flush()
            except h2.exceptions.ProtocolError:
                pass
            self.closed = True
            self.timers.discard(self)
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()


class H2UpstreamPool:
    """The HTTP/2 upstream connections of one data plane, by endpoint (and TLS setting)."""

    def __init__(self, pool: UpstreamPool):
        self.pool = pool  # the HTTP/1.1 pool: endpoint choice, retries, limits
        self.timers = pool.timers
        self.conns: dict[object, list[H2UpstreamConnection]] = {}
        self.requests = 0  # streams started

    def send(self, exchange: Exchange, endpoint: tuple[str, int], tls, fresh: bool = False) -> None:
        key = endpoint if tls is None else (endpoint, tls)
        conns = self.conns.get(key)
        if conns is None:
            conns = self.conns[key] = []
        elif not fresh:
            for conn in conns:
                if conn.usable() and conn.room() > 0:
                    self.pool.reused += 1  # ingressd_upstream_connections_total{result="reused"}
                    conn.send(exchange)
                    return
        conn = H2UpstreamConnection(self, endpoint, key, tls)
        conn.connect_timeout = exchange.route.options.connect_timeout
        conns.append(conn)
        conn.send(exchange)
        self.pool.new += 1
        asyncio.get_running_loop().create_task(self.connect(conn, exchange, tls))

    async def connect(self, conn: H2UpstreamConnection, exchange: Exchange, tls) -> None:
        loop = asyncio.get_running_loop()
        endpoint = conn.endpoint
        timeout = exchange.route.options.connect_timeout
        name = exchange.route.backend.name
        try:
            if tls is None:
                opening = loop.create_connection(lambda: conn, endpoint[0], endpoint[1])
            else:
                opening = loop.create_connection(lambda: conn, endpoint[0], endpoint[1], ssl=tls.context,
                                                 server_hostname=tls.server_name or "")
            await asyncio.wait_for(opening, timeout)
        except asyncio.TimeoutError:
            self.dial_failed(conn, 504, f"timed out connecting to upstream {name} after {timeout:g}s")
        except OSError as error:
            self.dial_failed(conn, 502, f"cannot connect to upstream {name}: {error.strerror or error}")

    def dial_failed(self, conn: H2UpstreamConnection, status: int, detail: str) -> None:
        """Every exchange waiting for ``conn`` gets the failure (and perhaps another endpoint)."""
        conn.closed = True
        self.forget(conn)
        waiting, conn.waiting = conn.waiting, deque()
        for exchange in waiting:
            self.pool.dial_failed(exchange, status, detail)
            exchange.conn.flush()

    def forget(self, conn: H2UpstreamConnection) -> None:
        conns = self.conns.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.conns[conn.key]

    def close_idle(self) -> None:
        for conns in list(self.conns.values()):
            for conn in list(conns):
                if not conn.streams and not conn.waiting:
                    conn.close()

    def count(self) -> int:
        return sum(1 for conns in self.conns.values() for conn in conns if not conn.streams)
