"""``ingressd chp``: configurable-http-proxy's command line, REST API and routing on ingressd's data plane.

One process (the data plane serves from the same event loop as the API; ``--workers`` is not
offered in this mode): the API changes the route store, each change compiles a new route table
that the data plane swaps in atomically, and requests never wait for the API. Routes live in
memory only, as in CHP (the Hub re-adds them every 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass, replace

from httptools import HttpParserError, HttpRequestParser

from ..admin import metrics_handler, serve_admin
from ..config import ClientLimits, ClientTrust, Config
from ..dataplane.responses import date_line, reason
from ..dataplane.server import DataPlane, bind_listeners
from ..dataplane.stats import AccessLog
from .api import handle
from .errors import ErrorPages
from .routes import Forwarding, ProxyRoutes, compile_table, route_options

log = logging.getLogger("ingressd.chp")

MAX_API_BODY = 1024 * 1024
SAMPLE_INTERVAL = 1.0  # seconds between samples of websocket traffic (last_activity's resolution)


class ProxyAPI:
    """The REST API's state: the route store and what to do when it changes."""

    def __init__(self, store: ProxyRoutes, token: str | None, on_change):
        self.store = store
        self.token = token
        self.on_change = on_change

    def request(self, method: str, url: str, headers: dict[bytes, bytes], body: bytes):
        version = self.store.version
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        status, content_type, payload = handle(self.store, self.token, method, url, authorization, body)
        if self.store.version != version:
            self.on_change()
        level = logging.INFO if status < 400 else logging.WARNING
        log.log(level, "%d %s %s", status, method, url.split("?", 1)[0])
        return status, content_type, payload


class HTTPSRedirect:
    """CHP's --redirect-port server: every request answers 301 to the same URL over HTTPS."""

    def __init__(self, https_port: int):
        self.https_port = https_port

    def request(self, method: str, url: str, headers: dict[bytes, bytes], body: bytes):
        host = headers.get(b"host")
        if host is None:
            return 400, None, (f"This server is HTTPS-only on port {self.https_port}, but an HTTP request was "
                               "made and the host could not be determined from the request.").encode()
        name = host.decode("latin-1").split(":")[0]
        port = "" if self.https_port == 443 else f":{self.https_port}"
        location = f"https://{name}{port}{url}".encode("latin-1")
        return 301, None, b"", b"Location: " + location + b"\r\n"


class APIConnection(asyncio.Protocol):
    """HTTP/1.1 for the API port and the redirect port (httptools, as the metrics port): small
    bodies, keep-alive. ``api.request(method, url, headers, body)`` returns (status, content type,
    body[, extra header lines]); ``headers`` holds Authorization and Host."""

    KEPT = (b"authorization", b"host")

    def __init__(self, api):
        self.api = api
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self._header = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        # The parser holds bound methods of this connection: a reference cycle, broken so that
        # the connection is freed now. The Hub opens a connection per API call, and the call that
        # changes a route runs DataPlane.apply's gc.freeze() while it is open, which would keep
        # the cycle for good.
        self.parser = None

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError:
            self.respond(400, None, b"Bad Request", keep_alive=False)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in self.KEPT:
            self.headers[name] = value

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_API_BODY:
            self.respond(413, None, b"Payload Too Large", keep_alive=False)
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        method = self.parser.get_method().decode("latin-1")
        try:
            result = self.api.request(method, self.url.decode("latin-1"), self.headers, b"".join(self.body))
        except Exception:  # a bug here must never take down the proxy
            log.exception("API request %s %s failed", method, self.url)
            result = (500, None, b"Internal Server Error")
        keep_alive = self.parser.should_keep_alive()
        self._reset()
        self.respond(*result, keep_alive=keep_alive)

    def respond(self, status: int, content_type: str | None, body: bytes, extra: bytes = b"", *,
                keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status)), date_line(), extra]
        if content_type:
            head.append(b"Content-Type: %s\r\n" % content_type.encode())
        head.append(b"Content-Length: %d\r\n" % len(body))
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + body)
        if not keep_alive:
            self.transport.close()


@dataclass(frozen=True)
class ChpOptions:
    ip: str | None
    port: int
    api_ip: str | None
    api_port: int
    token: str | None
    default_target: str | None = None
    host_routing: bool = False
    proxy_timeout: float | None = None  # seconds
    ssl_cert: str | None = None
    ssl_key: str | None = None
    metrics_ip: str | None = None
    metrics_port: int | None = None
    access_log: bool = False
    pid_file: str | None = None
    error_target: str | None = None
    error_path: str | None = None
    redirect_port: int | None = None
    redirect_to: int | None = None
    ssl_ca: str | None = None
    ssl_request_cert: bool = False
    ssl_reject_unauthorized: bool = False
    x_forward: bool = True
    forwarding: Forwarding = Forwarding()
    custom_headers: tuple[tuple[str, str], ...] = ()  # (name, value), later ones replacing earlier
    timeout: float | None = None  # seconds: --timeout
    keep_alive_timeout: float = 75.0  # seconds between requests on a client connection (CHP: 5)

    def client_limits(self) -> ClientLimits:
        limits = ClientLimits(keepalive_timeout=self.keep_alive_timeout)
        if self.timeout:
            limits = replace(limits, header_timeout=self.timeout, body_timeout=self.timeout)
        return limits

    def trust(self) -> ClientTrust:
        """As CHP's http-proxy (xfwd): X-Forwarded-For appended to, the client's -Proto/-Host/-Port
        kept, but the client's address is the peer's (X-Real-IP, logs); with --no-x-forward nothing
        is believed or added."""
        if not self.x_forward:
            return ClientTrust()
        return ClientTrust(use_forwarded_headers=True, compute_full_forwarded_for=True, address_from_headers=False)

    def request_headers(self) -> tuple:
        merged = {}
        for name, value in self.custom_headers:
            merged[name.lower()] = f"{name}: {value}\r\n".encode("latin-1")
        return tuple((name.encode("latin-1"), line) for name, line in merged.items())


def _listen_socket(host: str | None, port: int) -> list[socket.socket]:
    sockets = bind_listeners(host, port, 0)
    for sock in sockets["https"]:  # bind_listeners binds a pair; chp mode has one public port
        sock.close()
    return sockets["http"]


def _certificate(options: ChpOptions):
    from ..certs import load_certificate

    with open(options.ssl_cert, "rb") as cert, open(options.ssl_key, "rb") as key:
        return load_certificate("--ssl-cert", cert.read(), key.read())


class ChpProxy:
    """The running proxy: route store, API, data plane. ``start`` then ``close``."""

    def __init__(self, options: ChpOptions):
        self.options = options
        self.store = ProxyRoutes(host_routing=options.host_routing, forwarding=options.forwarding)
        error_pages = ErrorPages(options.error_target, options.error_path, options.forwarding.insecure)
        self.route_options = route_options(options.proxy_timeout, headers=options.request_headers(),
                                           x_forward=options.x_forward, error_pages=error_pages,
                                           timeout=options.timeout)
        # As CHP (its MockMetrics): with no --metrics-port nothing could read the counts, so none are kept.
        self.plane = DataPlane(https_port=options.port, hsts=False,
                               access_log=AccessLog("text") if options.access_log else None,
                               metrics=options.metrics_port is not None)
        self.api = ProxyAPI(self.store, options.token, self.apply)
        self.certificate = _certificate(options) if options.ssl_cert else None
        if self.certificate is not None and (options.ssl_request_cert or options.ssl_ca):
            self.plane.tls.request_client_certificates(options.ssl_ca, options.ssl_reject_unauthorized)
        self.client_limits = options.client_limits()
        self.client_trust = options.trust()
        self.servers: list[asyncio.AbstractServer] = []
        self._sampler: asyncio.Task | None = None
        if options.default_target:
            self.store.add("/", {"target": options.default_target})
        self.apply()

    def apply(self) -> None:
        table = compile_table(self.store, self.route_options)
        self.plane.apply(Config(table, default_certificate=self.certificate, client=self.client_limits,
                                trust=self.client_trust))

    async def start(self) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        sockets = _listen_socket(options.ip, options.port)
        await self.plane.listen({"http": [] if self.certificate else sockets,
                                 "https": sockets if self.certificate else []})
        self.servers.append(await loop.create_server(lambda: APIConnection(self.api), options.api_ip,
                                                     options.api_port, reuse_address=True))
        if options.redirect_port and self.certificate is not None and options.port != 80:  # as CHP
            redirect = HTTPSRedirect(options.redirect_to or options.port)
            self.servers.append(await loop.create_server(lambda: APIConnection(redirect), options.ip,
                                                         options.redirect_port, reuse_address=True))
            log.info("redirecting HTTP on port %d to HTTPS on port %d", options.redirect_port, redirect.https_port)
        if options.metrics_port is not None:
            from ..metrics import make_registry
            from ..status import status_handlers

            registry = make_registry(self.plane.counters, "chp")
            self.servers.append(await serve_admin(options.metrics_ip, options.metrics_port, {
                "/metrics": metrics_handler(registry),
                **status_handlers(self.plane),
            }))
        self._sampler = loop.create_task(self._sample())
        log.info("proxying on %s:%d (%s), API on %s:%d", options.ip or "*", options.port,
                 "https" if self.certificate else "http", options.api_ip or "*", options.api_port)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            self.store.sample()

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        for server in self.servers:
            server.close()
        await self.plane.close()


async def run(options: ChpOptions) -> None:
    proxy = ChpProxy(options)
    await proxy.start()
    if options.pid_file:
        with open(options.pid_file, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()
    log.info("stopped")
