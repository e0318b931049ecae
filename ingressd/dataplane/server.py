"""The data plane: listeners, the current configuration, and the wiring of its parts.

``apply`` swaps the configuration reference; requests read it once when their head is complete.
Nothing else happens on a swap: open connections, upgraded tunnels and pooled upstream connections
are left as they are.

This is the only module that knows every part: client connections (``http``), the upstream pool
(``upstream``), timers, TLS contexts and the recorder of metrics and access logs (``stats``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import ssl

from ..config import Config
from ..routing import RouteTable
from . import passthrough, proxyproto
from .h2client import H2ClientConnection
from .http import HEADER_TIMEOUT, ClientConnection, ClientContext, Listener
from .stats import AccessLog, Counters, Recorder, rss_bytes
from .timers import Timers
from .tls import TLSContexts
from .upstream import UpstreamPool

log = logging.getLogger("ingressd.dataplane")

BACKLOG = 2048


def bind_listeners(host: str | None, http_port: int, https_port: int) -> dict[str, list[socket.socket]]:
    """Listening sockets for both ports, on every address of ``host`` (all addresses when None).

    They are bound once, by the control plane, and inherited by every worker: all workers accept
    from one queue, so a worker that dies loses only the connections it had accepted.
    """
    sockets: dict[str, list[socket.socket]] = {"http": [], "https": []}
    try:
        for scheme, port in (("http", http_port), ("https", https_port)):
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets[scheme].append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(address)
                except OSError as error:
                    raise OSError(error.errno, f"cannot listen on {address[0]} port {port}: "
                                               f"{error.strerror}") from None
                sock.listen(BACKLOG)
                sock.setblocking(False)
    except BaseException:
        for sock in sockets["http"] + sockets["https"]:
            sock.close()
        raise
    return sockets


class DataPlane:
    def __init__(self, *, https_port: int = 443, hsts: bool = True, access_log: AccessLog | None = None,
                 per_undefined_host: bool = False, timers: Timers | None = None, proxy_protocol: bool = False,
                 max_connections: int = 16384, ssl_passthrough: bool = False, http2: bool = False,
                 h2c: bool = False, metrics: bool = True):
        self.ready = False
        self.hsts = hsts
        self.proxy_protocol = proxy_protocol  # use-proxy-protocol: a listener property, fixed at start
        self.ssl_passthrough = ssl_passthrough  # --enable-ssl-passthrough: HTTPS connections peeked for SNI first
        self.timers = timers or Timers()
        self.pool = UpstreamPool(self.timers)
        self.recorder = Recorder(access_log, per_undefined_host, metrics)
        self.timers.on_tick.append(self.recorder.flush)
        self.ctx = ClientContext(Config(RouteTable()), self.timers, self.pool, self.recorder, https_port)
        self.http2 = http2  # ALPN offers h2 on the HTTPS listener (--http2)
        self.tls = TLSContexts(http2)
        self.h2c = h2c  # the HTTP listener serves HTTP/2 with prior knowledge too (--h2c)
        self.accepted = 0
        self.max_connections = max_connections
        self.refused = 0  # connections closed at once: the limit was reached
        self.passed_through = 0  # TLS connections handed to their backend undecrypted (ssl-passthrough)
        self._refused_logged = -60.0
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []  # accept loops of PROXY protocol HTTPS listeners

    @classmethod
    def from_options(cls, options) -> DataPlane:
        """A data plane for ``app.ServeOptions``."""
        return cls(https_port=options.https_port, hsts=options.hsts,
                   access_log=AccessLog(options.log_format) if options.access_log else None,
                   per_undefined_host=options.metrics_per_undefined_host,
                   proxy_protocol=options.settings.trust.use_proxy_protocol,
                   max_connections=options.max_connections, ssl_passthrough=options.ssl_passthrough,
                   http2=options.http2, h2c=options.h2c)

    @property
    def config(self) -> Config:
        return self.ctx.config

    # --- configuration -------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        self.tls.apply(config)
        self.pool.reset_balancing()
        self.pool.configure(config.upstream)
        self.recorder.configure(config.log_format)
        self.ctx.config = config
        self.ready = True
        # A configuration is long-lived and acyclic (reference counting frees the old one): keep
        # it out of the cyclic collector, whose full passes over 10,000 Ingresses' objects would
        # otherwise stall requests for milliseconds. The young generations are collected first:
        # cyclic garbage of recent requests frozen with it would never be freed (a leak of a few KB
        # per configuration, which ingressd chp's route changes several times a second made visible).
        # Everything alive now is frozen too (open connections, their exchanges): were it to die
        # in a reference cycle later, it would never be freed. So nothing per connection or per
        # request may form a cycle that outlives it; each protocol breaks its own when it closes
        # (see ClientConnection.connection_lost, tests/unit/test_dataplane_memory.py).
        gc.collect(1)
        gc.freeze()

    def set_challenges(self, challenges: dict[str, bytes]) -> None:
        """The HTTP-01 answers to serve at /.well-known/acme-challenge/TOKEN on every host."""
        self.ctx.challenges = dict(challenges)

    # --- listening -----------------------------------------------------------------------------

    async def listen(self, sockets: dict[str, list[socket.socket]]) -> None:
        """Serve on listening sockets from ``bind_listeners`` (shared by every worker process)."""
        loop = asyncio.get_running_loop()
        for scheme in ("http", "https"):
            for sock in sockets[scheme]:
                listener = Listener(scheme, sock.getsockname()[1], self.hsts, proxy_protocol=self.proxy_protocol)
                if listener.tls and (self.proxy_protocol or self.ssl_passthrough):
                    # The PROXY header and the ClientHello's SNI precede the TLS handshake: read the
                    # one, peek at the other, before deciding who answers the connection.
                    self._tasks.append(loop.create_task(self._accept_proxied(sock, listener)))
                    continue
                server = await loop.create_server(
                    lambda listener=listener: self._accept(listener), sock=sock, backlog=BACKLOG,
                    ssl=self.tls.listener_context if listener.tls else None,
                )
                self._servers.append(server)
        self._sweeper = loop.create_task(self.timers.run())

    async def _accept_proxied(self, sock: socket.socket, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as error:  # EMFILE and the like: do not spin
                log.warning("accepting on port %d: %s", listener.port, error)
                await asyncio.sleep(0.1)
                continue
            loop.create_task(self._serve_proxied(conn, listener))

    async def _serve_proxied(self, conn: socket.socket, listener: Listener) -> None:
        loop = asyncio.get_running_loop()
        header = None
        if self.proxy_protocol:
            try:
                header = await asyncio.wait_for(_read_proxy_header(loop, conn), HEADER_TIMEOUT)
            except (OSError, proxyproto.ProxyProtocolError, asyncio.TimeoutError) as error:
                log.info("closing connection on port %d: %s", listener.port, error or "no PROXY header in time")
                conn.close()
                return
        if self.ssl_passthrough:
            try:
                conn.setblocking(False)
                name = await asyncio.wait_for(passthrough.peek_server_name(loop, conn), passthrough.HELLO_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                conn.close()
                return
            if name is not None:
                route = self.ctx.config.table.lookup(name, "/")
                if route.options.ssl_passthrough and route.backend is not None:
                    self.passed_through += 1
                    await passthrough.pass_through(loop, conn, route.backend, name)
                    return
        protocol = self._accept(listener)
        if header is not None and isinstance(protocol, (ClientConnection, Negotiate)):
            protocol.proxied = header
        try:
            await loop.connect_accepted_socket(lambda: protocol, conn, ssl=self.tls.listener_context,
                                               ssl_handshake_timeout=HEADER_TIMEOUT)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
            conn.close()

    def _accept(self, listener: Listener) -> asyncio.Protocol:
        self.accepted += 1
        if len(self.ctx.connections) >= self.max_connections:
            self.refused += 1
            now = self.timers.now
            if now - self._refused_logged >= 60:
                self._refused_logged = now
                log.warning("%d client connections open, the limit (--max-worker-connections): closing new ones "
                            "(%d so far)", len(self.ctx.connections), self.refused)
            return _Refused()
        if self.http2 and listener.tls:
            return Negotiate(self.ctx, listener)
        if self.h2c and not listener.tls:
            return SniffPreface(self.ctx, listener)
        return ClientConnection(self.ctx, listener)

    async def drain(self, timeout: float) -> None:
        """worker-shutdown-timeout: stop accepting, close idle keep-alive connections, let requests
        in flight finish (their responses end the connection) and tunnels (websockets) run, for
        at most ``timeout`` seconds; ``close`` ends what is left."""
        self.ready = False
        draining = self.ctx.draining = asyncio.Event()
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for conn in list(self.ctx.connections):
            if isinstance(conn, H2ClientConnection):  # GOAWAY: its streams finish, then it closes
                conn.shut_down()
                continue
            if conn.tunnel is None and conn.active is None and not conn.queue and conn.cur is None:
                conn.close()  # idle between requests
            else:
                for exchange in (conn.active, *conn.queue):
                    if exchange is not None and not exchange.response_started:
                        exchange.keep_alive = False  # its response says Connection: close
        if self.ctx.connections:
            log.info("shutting down: %d connection(s) open, waiting up to %gs (worker-shutdown-timeout)",
                     len(self.ctx.connections), timeout)
            try:
                await asyncio.wait_for(draining.wait(), timeout)
            except asyncio.TimeoutError:
                log.info("worker-shutdown-timeout: closing %d connection(s) still open", len(self.ctx.connections))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in self._tasks:
            task.cancel()
        for conn in list(self.ctx.connections):
            conn.transport.close()
        self.pool.close_idle()

    # --- counting ------------------------------------------------------------------------------

    def counters(self) -> Counters:
        """A copy of this plane's counters, for metrics (and for adding up across workers)."""
        counters = Counters()
        for conn in list(self.ctx.connections):
            if conn.active is not None or conn.tunnel is not None:
                counters.writing += 1
            elif conn.cur is not None:
                counters.reading += 1
            else:
                counters.waiting += 1
        recorder = self.recorder
        counters.stats = dict(recorder.stats)
        counters.accepted = self.accepted
        counters.refused = self.refused
        counters.h2_goaways = dict(recorder.h2_goaways)
        counters.upgraded = recorder.upgraded
        counters.upgraded_lifetimes = recorder.upgraded_lifetimes
        counters.idle_upstream = self.pool.count()
        counters.upstream_new = self.pool.new
        counters.upstream_reused = self.pool.reused
        counters.rss = rss_bytes()
        times = os.times()
        counters.cpu = times.user + times.system
        return counters

    async def gather_counters(self) -> Counters:
        """Same as ``counters``; the shape the control plane also uses for worker processes."""
        return self.counters()


class Negotiate(asyncio.Protocol):
    """An HTTPS connection until its handshake is done: then the protocol ALPN chose serves it
    (``h2client.H2ClientConnection`` for h2, ``http.ClientConnection`` otherwise)."""

    def __init__(self, ctx: ClientContext, listener: Listener):
        self.ctx = ctx
        self.listener = listener
        self.proxied: proxyproto.ProxyHeader | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
            protocol = H2ClientConnection(self.ctx, self.listener)
        else:
            protocol = ClientConnection(self.ctx, self.listener)
        protocol.proxied = self.proxied
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4: what an HTTP/2 client sends first


class SniffPreface(asyncio.Protocol):
    """A cleartext connection until its first bytes are known (``--h2c``): the HTTP/2 connection
    preface makes it an ``h2client.H2ClientConnection`` (h2c with prior knowledge, RFC 9113 §3.3),
    anything else an ``http.ClientConnection`` fed the same bytes.

    Until then it is the HTTP/1.1 connection it would be (registered, header-timeout running,
    PROXY protocol header read first): only the first up to 24 bytes are held back. No
    ``Upgrade: h2c`` (RFC 7540 §3.2, removed by RFC 9113), as nginx.
    """

    def __init__(self, ctx: ClientContext, listener: Listener):
        self.ctx = ctx
        self.listener = listener
        self.http1 = ClientConnection(ctx, listener)
        self.held = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.http1.connection_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        http1 = self.http1
        if http1.proxy_header is not None:  # use-proxy-protocol: its header precedes the preface
            data = http1.read_proxy_header(data)
            if not data:
                return
        data = self.held + data
        if PREFACE.startswith(data[:len(PREFACE)]):
            if len(data) < len(PREFACE):
                self.held = data  # the preface so far
                return
            self.become_http2(data)
            return
        self.held = b""
        self.transport.set_protocol(http1)
        http1.data_received(data)

    def become_http2(self, data: bytes) -> None:
        http1 = self.http1
        # The HTTP/1.1 connection never served a byte: unregister it, keep what it learnt of the client.
        http1.closed = True
        self.ctx.timers.discard(http1)
        self.ctx.connections.discard(http1)
        protocol = H2ClientConnection(self.ctx, self.listener)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if http1.proxied_ip is not None:
            protocol.client_ip = protocol.proxied_ip = http1.proxied_ip
            protocol.forwarded = http1.forwarded
        protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self.http1.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.http1.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed without reading a byte (as nginx when worker_connections
    are exhausted), so that it costs no more than its accept."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


async def _read_proxy_header(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> proxyproto.ProxyHeader:
    """Consume exactly the PROXY header from ``conn``, leaving the TLS handshake unread: the
    bytes are peeked until the header parses, then only its length is received."""
    conn.setblocking(False)
    while True:
        data = await passthrough.peek(loop, conn, proxyproto.MAX_HEADER, "PROXY header")
        header = proxyproto.parse(data)
        if header is not None:
            conn.recv(header.length)
            return header
        await asyncio.sleep(0.05)  # a partial header stays readable: wait for more instead of spinning
