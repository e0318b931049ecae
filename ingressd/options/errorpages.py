"""``custom-http-errors`` (annotation and ConfigMap key) with ``default-backend``: upstream error answers
replaced by the default backend's, as ingress-nginx's ``proxy_intercept_errors`` + ``error_page``.

When the upstream answers one of the codes (or ingressd itself fails the request with one, such as
502 or 504), its response is dropped (the body is read to its end, so the upstream connection stays
usable) and the request is sent to the error backend instead: the ``default-backend`` annotation's
Service (in the Ingress's namespace, its first port) or else the controller's default backend
(``--default-backend-service``, an Ingress's ``spec.defaultBackend``). As ingress-nginx's
``@custom_..._CODE`` location, the request is ``METHOD /`` (``rewrite (.*) / break``), without a
body, with the client's headers and ``X-Code``, ``X-Format`` (the client's Accept),
``X-Original-URI``, ``X-Namespace``, ``X-Ingress-Name``, ``X-Service-Name``, ``X-Service-Port``,
``X-Request-ID`` and ``X-Forwarded-For`` (the client address); its answer, status included, is the
client's. Without an error backend (the built-in 404 default backend), ingressd answers the code with
its own short text. Not intercepted: a response to a request whose body is still being received
(it goes through as the upstream sent it), websocket upgrade answers, and the error backend's own
answers.

``default-backend`` also serves the route when its Service has no ready endpoints (the translator
puts it in the route's place).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dataplane import responses

_BODY_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"x-code", b"x-format", b"x-original-uri",
                          b"x-namespace", b"x-ingress-name", b"x-service-name", b"x-service-port",
                          b"x-forwarded-for", b"expect"))


def parse_codes(value: str) -> frozenset[int]:
    codes = set()
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or not 300 <= int(part) <= 599:
            raise ValueError(f"{part!r} is not an HTTP status code between 300 and 599")
        codes.add(int(part))
    if not codes:
        raise ValueError("expected a comma-separated list of status codes such as 404,503")
    return frozenset(codes)


@dataclass(frozen=True, slots=True, eq=False)
class CustomErrors:
    """One route's ``custom-http-errors``: which codes, and the route that answers them."""

    codes: frozenset
    route: object = None  # routing.Route of the error backend (the original route's labels); None: built in
    namespace: str = ""
    ingress: str = ""
    service: str = ""
    port: str = ""

    def describe(self) -> str:
        target = self.route.backend.name if self.route is not None else "built-in"
        return f"custom-http-errors={','.join(map(str, sorted(self.codes)))}->{target}"

    def serve(self, exchange, status: int, pool) -> None:
        """Answer ``exchange`` (nothing sent to the client yet) from the error backend."""
        route = self.route
        if route is None or route.backend is None or route.backend.error is not None:
            exchange.answer(status, responses.error_body(status))
            return
        exchange.head = self.head(exchange, status)
        exchange.route = route
        exchange.status = exchange.upstream_status = 0
        exchange.attempts = 0
        exchange.response_started = exchange.response_done = False
        exchange.replayable = True
        exchange.upstream_start = 0.0
        pool.proxy(exchange)

    def head(self, exchange, status: int) -> bytes:
        first, *fields = exchange.head[:-4].split(b"\r\n")
        method = first.partition(b" ")[0]
        accept = b""
        kept = []
        for line in fields:
            name = line.partition(b":")[0].strip().lower()
            if name == b"accept":
                accept = line.partition(b":")[2].strip()
            if name not in _BODY_FIELDS:
                kept.append(line)
        client_ip = exchange.conn.client_ip.encode()
        extra = [b"X-Code: %d" % status, b"X-Format: " + (accept or b"text/html"),
                 b"X-Original-URI: " + exchange.url, b"X-Namespace: " + self.namespace.encode(),
                 b"X-Ingress-Name: " + self.ingress.encode(), b"X-Service-Name: " + self.service.encode(),
                 b"X-Service-Port: " + self.port.encode(), b"X-Forwarded-For: " + client_ip]
        return b"\r\n".join((method + b" / HTTP/1.1", *kept, *extra)) + b"\r\n\r\n"


class Discard:
    """The client side of an exchange whose upstream response is being replaced: the body is read
    and dropped, then ``CustomErrors.serve`` takes over. Everything else goes to the connection."""

    __slots__ = ("conn", "errors", "status", "exchange")

    def __init__(self, conn, errors: CustomErrors, status: int, exchange):
        self.conn = conn
        self.errors = errors
        self.status = status
        self.exchange = exchange

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def send_head(self, exchange, status: int, status_line: bytes, fields: bytes, body: int) -> None:
        pass

    def send_body(self, exchange, data: bytes) -> None:
        pass

    def send_end(self, exchange) -> None:
        pass

    def send_trailers(self, exchange, trailers) -> None:
        pass

    def finish(self, exchange) -> None:
        if exchange.conn is not self:
            return
        exchange.conn = self.conn
        if not exchange.aborted:
            self.errors.serve(exchange, self.status, self.conn.ctx.pool)

    def cut(self) -> None:  # the upstream failed while its error body was dropped: the page is still owed
        self.finish(self.exchange)
