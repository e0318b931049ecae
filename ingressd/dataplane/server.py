"""The data plane: listeners, the current configuration, upstream pools, timers and counters.

``apply`` swaps the configuration reference; requests read it once when their head is complete.
Nothing else happens on a swap: open connections, upgraded tunnels and pooled upstream connections
are left as they are.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from dataclasses import dataclass
from time import monotonic

from ..config import Config
from ..routing import UNDEFINED_HOST, RouteTable
from .http import ClientConnection, Exchange
from .stats import LIFETIME_BUCKETS, AccessLog, Counters, Histogram, RequestStats, rss_bytes
from .tls import TLSContexts
from .upstream import IDLE_TIMEOUT, UpstreamConnection, UpstreamPool

log = logging.getLogger("ingressd.dataplane")

TICK = 0.25  # resolution of every timeout
MAX_ATTEMPTS = 3  # endpoints tried when connecting fails (nginx's proxy_next_upstream_tries)
BACKLOG = 2048
MAX_UNDEFINED_HOSTS = 1000  # distinct host labels kept with --metrics-per-undefined-host


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


@dataclass(frozen=True, slots=True)
class Listener:
    scheme: str
    port: int
    tls: bool
    hsts: bool
    headers: bytes  # the X-Forwarded-* lines that depend only on the listener


def make_listener(scheme: str, port: int, hsts: bool) -> Listener:
    tls = scheme == "https"
    headers = (b"X-Forwarded-Port: %d\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Scheme: %s\r\nX-Scheme: %s\r\n"
               % (port, scheme.encode(), scheme.encode(), scheme.encode()))
    return Listener(scheme, port, tls, tls and hsts, headers)


class DataPlane:
    def __init__(self, *, https_port: int = 443, hsts: bool = True, access_log: AccessLog | None = None,
                 per_undefined_host: bool = False):
        self.config = Config(RouteTable())
        self.ready = False
        self.https_port = https_port
        self.hsts = hsts
        self.now = time.monotonic()
        self.timed: set = set()  # objects with a ``deadline`` and ``on_timeout()``
        self.connections: set[ClientConnection] = set()
        self.pool = UpstreamPool(self)
        self.tls = TLSContexts()
        self.stats: dict[tuple, RequestStats] = {}  # by (route labels, method, status)
        self.access_log = access_log
        self.per_undefined_host = per_undefined_host
        self._undefined_labels: dict[tuple, tuple] = {}
        self.upgraded = 0  # open tunnels
        self.upgraded_lifetimes = Histogram(LIFETIME_BUCKETS)
        self.challenges: dict[str, bytes] = {}  # ACME HTTP-01 token -> key authorization
        self.accepted = 0
        self.upstream_new = 0
        self.upstream_reused = 0
        self._round_robin: dict = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task | None = None

    @classmethod
    def from_options(cls, options) -> DataPlane:
        """A data plane for ``app.ServeOptions``."""
        return cls(https_port=options.https_port, hsts=options.hsts,
                   access_log=AccessLog(options.log_format) if options.access_log else None,
                   per_undefined_host=options.metrics_per_undefined_host)

    # --- configuration -------------------------------------------------------------------------

    def apply(self, config: Config) -> None:
        self.tls.apply(config)
        self._round_robin = {}
        self.config = config
        self.ready = True
        # A configuration is long-lived and acyclic (reference counting frees the old one): keep
        # it out of the cyclic collector, whose full passes over 10,000 Ingresses' objects would
        # otherwise stall requests for milliseconds.
        gc.freeze()

    def set_challenges(self, challenges: dict[str, bytes]) -> None:
        """The HTTP-01 answers to serve at /.well-known/acme-challenge/TOKEN on every host."""
        self.challenges = dict(challenges)

    # --- listening -----------------------------------------------------------------------------

    async def listen(self, sockets: dict[str, list[socket.socket]]) -> None:
        """Serve on listening sockets from ``bind_listeners`` (shared by every worker process)."""
        loop = asyncio.get_running_loop()
        for scheme in ("http", "https"):
            for sock in sockets[scheme]:
                listener = make_listener(scheme, sock.getsockname()[1], self.hsts)
                server = await loop.create_server(
                    lambda listener=listener: self._accept(listener), sock=sock, backlog=BACKLOG,
                    ssl=self.tls.listener_context if listener.tls else None,
                )
                self._servers.append(server)
        self._sweeper = loop.create_task(self._sweep())

    def _accept(self, listener: Listener) -> ClientConnection:
        self.accepted += 1
        return ClientConnection(self, listener)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.transport.close()
        self.pool.close_idle()

    # --- proxying --------------------------------------------------------------------------------

    def proxy(self, exchange: Exchange, fresh: bool = False) -> None:
        """Send ``exchange`` to the next endpoint of its backend (round robin)."""
        backend = exchange.route.backend
        endpoints = backend.endpoints
        index = self._round_robin.get(backend, 0)
        self._round_robin[backend] = index + 1
        endpoint = endpoints[index % len(endpoints)]
        exchange.attempts += 1
        if not fresh:
            conn = self.pool.acquire(endpoint)
            if conn is not None:
                self.upstream_reused += 1
                exchange.upstream_start = monotonic()
                conn.attach(exchange)
                return
        if not exchange.upstream_start:
            exchange.upstream_start = monotonic()
        exchange.connecting = True
        asyncio.get_running_loop().create_task(self._connect(exchange, endpoint))

    async def _connect(self, exchange: Exchange, endpoint: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        timeout = exchange.route.options.connect_timeout
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self, endpoint), endpoint[0], endpoint[1]),
                timeout)
        except asyncio.TimeoutError:
            failure = (504, f"timed out connecting to upstream {exchange.route.backend.name} after {timeout:g}s")
        except OSError as error:
            failure = (502, f"cannot connect to upstream {exchange.route.backend.name}: "
                            f"{error.strerror or error}")
        else:
            self.upstream_new += 1
            if exchange.aborted or not exchange.connecting:
                conn.deadline = self.now + IDLE_TIMEOUT
                self.pool.release(conn)
            else:
                conn.attach(exchange)
            return
        if exchange.aborted or not exchange.connecting:
            return
        if exchange.attempts < min(len(exchange.route.backend.endpoints), MAX_ATTEMPTS):
            self.proxy(exchange, fresh=True)
        else:
            exchange.fail(*failure)

    # --- counting ------------------------------------------------------------------------------

    def record(self, exchange: Exchange) -> None:
        """Count a finished exchange (and log it): the only per-request bookkeeping."""
        route = exchange.route
        if route is None:
            return
        labels = route.labels
        if self.per_undefined_host and labels[3] == UNDEFINED_HOST:
            labels = self.undefined_host_labels(labels, exchange.host)
        key = (labels, exchange.method, exchange.status)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = RequestStats()
        now = monotonic()
        stats.observe(now - exchange.started, exchange.head_size + exchange.received, exchange.sent)
        proxied = exchange.upstream_header
        if proxied:
            start = exchange.upstream_start
            stats.observe_upstream(exchange.upstream_connected - start, proxied - start, now - start)
        if self.access_log is not None:
            self.log_exchange(exchange, now)

    def undefined_host_labels(self, labels: tuple, host: str) -> tuple:
        """Labels naming an undefined host (--metrics-per-undefined-host), bounded in number."""
        cached = self._undefined_labels.get((labels, host))
        if cached is None:
            if len(self._undefined_labels) >= MAX_UNDEFINED_HOSTS:
                return labels  # past the bound, further hosts share the collapsed label
            cached = self._undefined_labels[(labels, host)] = (*labels[:3], host or UNDEFINED_HOST, labels[4])
        return cached

    def log_exchange(self, exchange: Exchange, now: float) -> None:
        route = exchange.route
        proxied = bool(exchange.upstream_header)
        address = exchange.upstream_addr
        self.access_log.write({
            "remote_addr": exchange.conn.client_ip,
            "time_local": self.access_log.time_local(),
            "request": "%s %s HTTP/%s" % (exchange.method.decode("latin-1"), exchange.url.decode("latin-1"),
                                           "1.0" if exchange.http10 else "1.1"),
            "status": exchange.status,
            "body_bytes_sent": exchange.sent,
            "http_referer": exchange.referer.decode("latin-1") or "-",
            "http_user_agent": exchange.user_agent.decode("latin-1") or "-",
            "request_length": exchange.head_size + exchange.received,
            "request_time": round(now - exchange.started, 3),
            "proxy_upstream_name": route.backend.name if route.backend is not None else "upstream-default-backend",
            "upstream_addr": f"{address[0]}:{address[1]}" if address else "-",
            "upstream_response_length": exchange.upstream_received if proxied else "-",
            "upstream_response_time": round(now - exchange.upstream_start, 3) if proxied else "-",
            "upstream_status": exchange.upstream_status or "-",
            "req_id": exchange.request_id.decode("latin-1"),
            "namespace": route.namespace or "-",
            "ingress": route.ingress or "-",
            "service": route.service or "-",
        })

    def counters(self) -> Counters:
        """A copy of this plane's counters, for metrics (and for adding up across workers)."""
        counters = Counters()
        for conn in list(self.connections):
            if conn.active is not None or conn.tunnel is not None:
                counters.writing += 1
            elif conn.cur is not None:
                counters.reading += 1
            else:
                counters.waiting += 1
        counters.stats = dict(self.stats)
        counters.accepted = self.accepted
        counters.upgraded = self.upgraded
        counters.upgraded_lifetimes = self.upgraded_lifetimes
        counters.idle_upstream = self.pool.count()
        counters.upstream_new = self.upstream_new
        counters.upstream_reused = self.upstream_reused
        counters.rss = rss_bytes()
        times = os.times()
        counters.cpu = times.user + times.system
        return counters

    async def gather_counters(self) -> Counters:
        """Same as ``counters``; the shape the control plane also uses for worker processes."""
        return self.counters()

    def tunnel_opened(self) -> None:
        self.upgraded += 1

    def tunnel_closed(self, conn: ClientConnection, opened: float, sent: int, received: int) -> None:
        self.upgraded -= 1
        lifetime = monotonic() - opened
        self.upgraded_lifetimes.observe(lifetime)
        if self.access_log is not None:
            self.access_log.write({
                "remote_addr": conn.client_ip, "time_local": self.access_log.time_local(),
                "request": "websocket closed", "status": 101, "body_bytes_sent": sent, "http_referer": "-",
                "http_user_agent": "-", "request_length": received, "request_time": round(lifetime, 3),
                "proxy_upstream_name": "-", "upstream_addr": "-", "upstream_response_length": "-",
                "upstream_response_time": "-", "upstream_status": "-", "req_id": "-", "namespace": "-",
                "ingress": "-", "service": "-",
            })

    # --- timeouts --------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Expire deadlines. A coarse clock keeps timers off the request path."""
        while True:
            await asyncio.sleep(TICK)
            self.now = now = time.monotonic()
            if self.access_log is not None:
                self.access_log.flush()
            limit = now - TICK  # never fire early: ``now`` may have been a tick old when set
            expired = [item for item in self.timed if 0.0 < item.deadline < limit]
            for item in expired:
                try:
                    item.on_timeout()
                except Exception:
                    log.exception("timeout handling failed for %r", item)
