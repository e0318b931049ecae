"""The upstream side of the proxy: pooled keep-alive connections to endpoints, parsing responses.

An ``UpstreamConnection`` serves one exchange at a time. When a response ends and both sides allow
it, the connection goes back to its endpoint's idle list in the ``UpstreamPool``, where the next
request to that endpoint finds it. The pool also chooses endpoints (round robin) and dials new
connections, trying the next endpoint when one refuses. Response heads are handed to the client
side as the upstream wrote them (status line and raw field lines): the client side renders them
for its own protocol. Bodies stream through with backpressure both ways.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from time import monotonic
from typing import TYPE_CHECKING, Callable

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from ..options import balance as lb
from .exchange import (PAUSE_UPSTREAM, RESPONSE_CHUNKED, RESPONSE_EMPTY, RESPONSE_LENGTH, RESPONSE_UNTIL_CLOSE,
                       Exchange)
from .h2upstream import H2UpstreamPool

if TYPE_CHECKING:
    from .timers import Timers

log = logging.getLogger("ingressd.upstream")

# Keep-alive limits (idle timeout, idle connections per endpoint, requests per connection) are the
# configuration's ``upstream`` (config.UpstreamLimits), set on the pool by ``UpstreamPool.configure``.
MAX_RINGS = 1024  # hash rings and sticky maps kept (by endpoint set) before starting afresh
MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is an upstream error (502)

_NON_IDEMPOTENT = (b"POST", b"LOCK", b"PATCH")  # nginx's: not sent again unless "non_idempotent"
_CHUNKED_FIELD = re.compile(rb"^transfer-encoding:[ \t]*chunked[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("pool", "timers", "endpoint", "transport", "parser", "exchange", "interim", "deadline", "requests",
                 "fresh_parser", "tunnel", "closed", "read_timeout", "send_timeout", "until_close", "buffer",
                 "head_start", "partial", "in_head", "pool_key")

    def __init__(self, pool: UpstreamPool, endpoint: tuple[str, int], pool_key=None):
        self.pool = pool
        self.timers = pool.timers
        self.endpoint = endpoint
        self.pool_key = pool_key or endpoint  # TLS connections are pooled apart from plain ones
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.interim = False
        self.deadline = 0.0
        self.requests = 0
        self.fresh_parser = False
        self.tunnel = None  # the client side once the connection is a tunnel
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
        self.timers.add(self)

    def attach(self, exchange: Exchange) -> None:
        """Send ``exchange``'s request on this connection."""
        self.exchange = exchange
        exchange.upstream = self
        exchange.connecting = False
        exchange.upstream_connected = monotonic()
        exchange.upstream_addr = self.endpoint
        self.requests += 1
        self.in_head = True
        self.head_start = len(self.buffer)  # bytes read before the request was sent are not its response
        if self.fresh_parser:
            self.parser = HttpResponseParser(self)
            self.fresh_parser = False
        options = exchange.route.options
        self.read_timeout = options.read_timeout
        self.send_timeout = options.send_timeout
        # proxy-read-timeout runs once the request is sent; while its body streams, proxy-send-timeout
        # runs only while the upstream does not take what we write (a slow client is the client's timeout).
        self.deadline = self.timers.now + self.read_timeout if exchange.request_done else 0.0
        pending = exchange.take_pending()
        if pending:
            self.transport.writelines((exchange.head, *pending))
        else:
            self.transport.write(exchange.head)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def request_sent(self) -> None:
        """The whole request is written: from now on the upstream has read-timeout to answer."""
        self.deadline = self.timers.now + self.read_timeout

    def abandon(self) -> None:
        """The exchange is gone mid-way: this connection's state is unknown, so close it."""
        self.exchange = None
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def on_timeout(self) -> None:
        exchange = self.exchange
        self.exchange = None
        self.close()
        if exchange is not None:
            exchange.upstream = None
            if self.pool.may_retry(exchange, "timeout", sent=True):
                self.pool.proxy(exchange, fresh=True)
                return
            limit = self.read_timeout if exchange.request_done else self.send_timeout
            exchange.fail(504, f"upstream {exchange.route.backend.name} did not answer within {limit:g}s")

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)
        self.parser = None  # it holds bound methods of this connection: a cycle (see ClientConnection's)

    def _lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.timers.discard(self)
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.tunnel_closed_by_upstream()
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
            self.pool.proxy(exchange, fresh=True)
            return
        if self.pool.may_retry(exchange, "error", sent=True):  # proxy-next-upstream error
            self.pool.proxy(exchange, fresh=True)
            return
        exchange.fail(502, f"upstream {exchange.route.backend.name} closed the connection"
                           + (f" ({exc})" if exc else ""))

    def eof_received(self) -> bool:
        return False

    # --- data ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.tunnel_send(data)
            return
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: the connection is not reusable
            return
        if exchange.request_done:
            self.deadline = self.timers.now + self.read_timeout
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
                self.tunnel.tunnel_send(tail)
        except HttpParserError as error:
            log.warning("invalid response from %s:%d: %s", *self.endpoint, error)
            self.exchange = None
            self.close()
            exchange.fail(502, f"upstream {exchange.route.backend.name} sent an invalid response")
        client.flush()

    def pause_writing(self) -> None:
        exchange = self.exchange
        client = self.tunnel or (exchange.conn if exchange is not None else None)
        if client is not None:
            client.pause(PAUSE_UPSTREAM)
        if exchange is not None and not exchange.request_done:
            self.deadline = self.timers.now + self.send_timeout

    def resume_writing(self) -> None:
        exchange = self.exchange
        client = self.tunnel or (exchange.conn if exchange is not None else None)
        if client is not None:
            client.resume(PAUSE_UPSTREAM)
        if exchange is not None and not exchange.request_done:
            self.deadline = 0.0

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        buffer, start = self.buffer, self.head_start
        if buffer[start:start + 1] != b"H":  # empty lines before a status line (httptools skips them)
            while buffer[start:start + 1] in (b"\r", b"\n"):
                start += 1
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
            exchange.response_interim(status, status_line, fields)
            return
        exchange.upstream_header = monotonic()
        exchange.upstream_status = status
        if buffer[start + 5:start + 7] != b"1.":  # httptools takes HTTP/2.0 and others (RFC 9112 §2.3)
            raise ValueError("response version is not HTTP/1.x")
        if status == 101:
            if not exchange.upgrade:
                exchange.fail(502, "upstream switched protocols unasked")
                self.close()
                return
            self.exchange = None
            self.tunnel = exchange.conn
            self.timers.discard(self)
            exchange.switched_protocols(status_line, fields, self)
            return
        if status > 599 or status < 100:  # RFC 9110 §15: outside 100..599 is invalid (httptools takes 000..999)
            raise ValueError(f"invalid status {status}")
        if status in exchange.route.options.next_upstream_codes and self.pool.may_retry(exchange, status, sent=True):
            # proxy-next-upstream http_NNN: this answer is dropped unread, the next endpoint asked.
            self.exchange = None
            exchange.upstream = None
            self.close()
            self.pool.proxy(exchange, fresh=True)
            return
        lower = b"\n" + fields.lower()
        chunked = False
        if lower.find(b"\ntransfer-encoding") >= 0:
            # httptools takes any coding list (a body read until the close when chunked is not
            # last) and a repeated chunked; as nginx, only exactly one "chunked" is forwarded
            # (the client side drops the field: a gzip coding would reach the client unannounced).
            if lower.count(b"\ntransfer-encoding") != 1 or _CHUNKED_FIELD.search(fields) is None:
                raise ValueError("unsupported Transfer-Encoding")
            if self.parser.get_http_version() == "1.0":  # RFC 9112 §6.1: faulty framing
                raise ValueError("Transfer-Encoding in an HTTP/1.0 response")
            chunked = True
        if exchange.is_head or status == 204 or status == 304:
            body = RESPONSE_EMPTY
        elif lower.find(b"\ncontent-length:") >= 0:
            body = RESPONSE_LENGTH
        elif chunked:
            body = RESPONSE_CHUNKED
        else:
            body = RESPONSE_UNTIL_CLOSE
        self.until_close = body == RESPONSE_UNTIL_CLOSE
        exchange.response_head(status, status_line, fields, body)
        if exchange.is_head:
            # httptools cannot be told a response has no body; end it here, parse the next afresh.
            self.fresh_parser = True
            self.message_complete(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and not exchange.is_head:
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
                    and self.requests < self.pool.max_requests and not exchange.upgrade)
        # Back to the pool first, so that the client's next (pipelined) request can take it.
        if reusable and not self.closed:
            self.deadline = self.timers.now + self.pool.idle_timeout
            self.pool.release(self)
        else:
            self.close()
        exchange.response_complete()


class UpstreamPool:
    """Idle keep-alive connections per endpoint, the choice of endpoint, and the dialing of new ones.

    ``dial(pool, exchange, endpoint)`` opens a connection and hands it to ``connected`` (or reports
    ``dial_failed``); the default dials TCP on the running loop. Tests pass their own.
    """

    def __init__(self, timers: Timers, dial: Callable[[UpstreamPool, Exchange, tuple[str, int]], None] | None = None):
        self.timers = timers
        self.dial = dial or dial_tcp
        self.idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self.round_robin: dict = {}
        self.balancers: dict = {}  # per backend of this configuration: the ewma backends seen (slow start)
        # Hash rings and sticky keys by endpoints: kept across configurations (built once per endpoint set).
        self.rings: dict = {}
        self.ewma = lb.EwmaScores()  # per endpoint, kept across configurations (as ingress-nginx's shared dict)
        self.random = random.Random()
        self.idle_timeout, self.max_idle, self.max_requests = 60.0, 320, 10_000
        self.new = 0  # connections dialed
        self.reused = 0  # exchanges sent on a pooled connection
        self.h2 = H2UpstreamPool(self)  # HTTP/2 upstreams (backend-protocol GRPC, GRPCS)

    # --- proxying ---------------------------------------------------------------------------------

    def configure(self, limits) -> None:
        """A configuration's keep-alive limits (config.UpstreamLimits)."""
        self.idle_timeout, self.max_idle, self.max_requests = limits.idle_timeout, limits.max_idle, limits.max_requests

    def reset_balancing(self) -> None:
        """A new configuration: backends are new objects, start their rotation afresh."""
        self.round_robin = {}
        self.balancers = {}

    def proxy(self, exchange: Exchange, fresh: bool = False) -> None:
        """Send ``exchange`` to the next endpoint of its backend (round robin, unless the route's
        ``balance`` says otherwise)."""
        route = exchange.route
        backend = route.backend
        if backend is None:  # no route, with error pages to answer it (policy.answer_for)
            exchange.fail(404, "no route")
            return
        options = route.options
        if options.balance is None:
            endpoints = backend.endpoints
            index = self.round_robin.get(backend, 0)
            self.round_robin[backend] = index + 1
            endpoint = endpoints[index % len(endpoints)]
        else:
            endpoint = self.choose(exchange, options.balance, backend)
        exchange.attempts += 1
        if exchange.attempts == 1:
            exchange.first_try = self.timers.now  # proxy-next-upstream-timeout counts from here
        if options.grpc:  # backend-protocol GRPC(S): a stream on an HTTP/2 connection
            if not exchange.upstream_start:
                exchange.upstream_start = monotonic()
            self.h2.send(exchange, endpoint, options.upstream_tls, fresh)
            return
        if not fresh:
            tls = options.upstream_tls
            conn = self.acquire(endpoint if tls is None else (endpoint, tls))
            if conn is not None:
                self.reused += 1
                exchange.upstream_start = monotonic()
                conn.attach(exchange)
                return
        if not exchange.upstream_start:
            exchange.upstream_start = monotonic()
        exchange.connecting = True
        self.dial(self, exchange, endpoint)

    # --- balancing other than round robin (options.balance) ------------------------------------

    def choose(self, exchange: Exchange, balance: lb.Balance, backend) -> tuple[str, int]:
        """The endpoint for one attempt of ``exchange`` on a route with ``balance`` set."""
        chosen = exchange.balanced
        if chosen is None:  # the first attempt: main or canary, then kept for the retries
            canary = balance.canary
            if canary is not None and self.to_canary(exchange, balance, backend, canary):
                backend, balance = canary.backend, canary.balance
            chosen = exchange.balanced = (backend, balance)
            exchange.tried = set()
        else:
            backend, balance = chosen
        endpoints = backend.endpoints
        tried = exchange.tried
        affinity = balance.affinity
        if affinity is not None:
            endpoint = self.sticky(exchange, affinity, backend)
        elif balance.hash_by is not None:
            key = (endpoints, balance.subset)
            ring = self.rings.get(key)
            if ring is None:
                if len(self.rings) >= MAX_RINGS:
                    self.rings.clear()
                if balance.subset:
                    subsets = lb.hash_subsets(endpoints, balance.subset)
                    ring = self.rings[key] = (lb.HashRing(subsets), subsets)
                else:
                    ring = self.rings[key] = (lb.HashRing(endpoints), None)
            found = ring[0].find(balance.hash_by.render(exchange))
            endpoint = found if ring[1] is None else self.random.choice(ring[1][found])
        elif balance.method == "ewma":
            now = monotonic()
            if backend not in self.balancers:
                self.balancers[backend] = True
                self.ewma.slow_start(endpoints, now)
            endpoint = lb.pick_ewma(endpoints, tried, self.ewma, now, self.random)
            exchange.ewma = self.ewma
        else:
            index = self.round_robin.get(backend, 0)
            self.round_robin[backend] = index + 1
            endpoint = endpoints[index % len(endpoints)]
        tried.add(endpoint)
        return endpoint

    def sticky_backend(self, backend, mode: str) -> lb.StickyBackend:
        key = (backend.name, backend.endpoints, mode)
        state = self.rings.get(key)
        if state is None:
            if len(self.rings) >= MAX_RINGS:
                self.rings.clear()
            state = self.rings[key] = lb.StickyBackend(backend.name, backend.endpoints, mode)
        return state

    def sticky(self, exchange: Exchange, affinity: lb.CookieAffinity, backend) -> tuple[str, int]:
        """sticky.lua's balance: the cookie's endpoint, else a new one and a Set-Cookie."""
        state = self.sticky_backend(backend, affinity.mode)
        key, _ = lb.split_sticky(lb.cookie(exchange.headers, affinity.name.encode()))
        failed = exchange.attempts > 0
        endpoint = state.find(key) if key is not None else None
        if endpoint is not None and not (failed and affinity.change_on_failure):
            return endpoint
        endpoint, key = state.pick_new(exchange.tried, self.random, time.time())
        conn = exchange.conn
        line = affinity.set_cookie(f"{key}|{state.key}", exchange.route.path, getattr(conn, "listener", None) is not None
                                   and conn.listener.tls, exchange.user_agent or None, time.time())
        if exchange.sticky_line:
            exchange.response_fields = exchange.response_fields.replace(exchange.sticky_line, b"")
        exchange.sticky_line = line
        exchange.response_fields += line
        return endpoint

    def affinitized(self, exchange: Exchange, balance: lb.Balance, backend) -> bool:
        """Whether the request's sticky cookie was set by ``backend`` (sticky.lua's is_affinitized)."""
        affinity = balance.affinity
        if affinity is None:
            return False
        _, key = lb.split_sticky(lb.cookie(exchange.headers, affinity.name.encode()))
        return key is not None and key == self.sticky_backend(backend, affinity.mode).key

    def to_canary(self, exchange: Exchange, balance: lb.Balance, backend, canary: lb.Canary) -> bool:
        """balancer.lua's route_to_alternative_balancer: affinity first, then the canary's policy."""
        if not canary.backend.endpoints:
            return False
        if self.affinitized(exchange, balance, backend):
            return False
        if self.affinitized(exchange, canary.balance, canary.backend):
            return True
        return canary.policy.decide(exchange.headers, self.random)

    def connected(self, exchange: Exchange, conn: UpstreamConnection) -> None:
        self.new += 1
        if exchange.aborted or not exchange.connecting:
            conn.deadline = self.timers.now + self.idle_timeout
            self.release(conn)
        else:
            conn.attach(exchange)

    def dial_failed(self, exchange: Exchange, status: int, detail: str) -> None:
        if exchange.aborted or not exchange.connecting:
            return
        if self.may_retry(exchange, "timeout" if status == 504 else "error", sent=False):
            self.proxy(exchange, fresh=True)
        else:
            exchange.fail(status, detail)

    def may_retry(self, exchange: Exchange, condition, sent: bool) -> bool:
        """Whether proxy-next-upstream sends ``exchange`` to the next endpoint after ``condition``
        ("error", "timeout" or a status): the route lists it, tries (3, never more than the
        endpoints) and proxy-next-upstream-timeout remain, nothing was answered yet, and, once the
        request was sent, it can be sent again (no body streamed; POST, PATCH and LOCK only with
        "non_idempotent", as nginx)."""
        options = exchange.route.options
        if exchange.aborted or exchange.response_started:
            return False
        allowed = options.next_upstream_codes if isinstance(condition, int) else options.next_upstream
        if condition not in allowed:
            return False
        route = exchange.route
        backend = route.backend if exchange.balanced is None else exchange.balanced[0]
        if exchange.attempts >= min(len(backend.endpoints), options.next_upstream_tries):
            return False
        if options.next_upstream_timeout and self.timers.now - exchange.first_try >= options.next_upstream_timeout:
            return False
        if sent:
            if not exchange.replayable:
                return False
            if exchange.method in _NON_IDEMPOTENT and "non_idempotent" not in options.next_upstream:
                return False
        return True

    # --- idle connections -------------------------------------------------------------------------

    def acquire(self, endpoint: tuple[str, int]) -> UpstreamConnection | None:
        idle = self.idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        idle = self.idle.get(conn.pool_key)
        if idle is None:
            idle = self.idle[conn.pool_key] = []
        if len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self.idle.get(conn.pool_key)
        if idle and conn in idle:
            idle.remove(conn)
            if not idle:
                del self.idle[conn.pool_key]

    def close_idle(self) -> None:
        self.h2.close_idle()
        for idle in list(self.idle.values()):
            for conn in list(idle):
                conn.close()

    def count(self) -> int:
        return sum(len(idle) for idle in self.idle.values()) + self.h2.count()


def dial_tcp(pool: UpstreamPool, exchange: Exchange, endpoint: tuple[str, int]) -> None:
    asyncio.get_running_loop().create_task(_connect(pool, exchange, endpoint))


def _open(loop, pool: UpstreamPool, exchange: Exchange, endpoint: tuple[str, int]):
    tls = exchange.route.options.upstream_tls  # backend-protocol: HTTPS
    if tls is None:
        return loop.create_connection(lambda: UpstreamConnection(pool, endpoint), endpoint[0], endpoint[1])
    return loop.create_connection(lambda: UpstreamConnection(pool, endpoint, (endpoint, tls)), endpoint[0],
                                  endpoint[1], ssl=tls.context, server_hostname=tls.server_name or "")


async def _connect(pool: UpstreamPool, exchange: Exchange, endpoint: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    timeout = exchange.route.options.connect_timeout
    try:
        _, conn = await asyncio.wait_for(
            _open(loop, pool, exchange, endpoint), timeout)
    except asyncio.TimeoutError:
        pool.dial_failed(exchange, 504, f"timed out connecting to upstream {exchange.route.backend.name} "
                                        f"after {timeout:g}s")
    except OSError as error:
        pool.dial_failed(exchange, 502, f"cannot connect to upstream {exchange.route.backend.name}: "
                                        f"{error.strerror or error}")
    else:
        pool.connected(exchange, conn)
