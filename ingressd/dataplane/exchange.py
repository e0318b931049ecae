"""One request and its response, between a client side and an upstream side.

An :class:`Exchange` is what both halves of the proxy share: the client side (``http.py``, one per
client connection, speaking the client's protocol) creates it when a request head is complete;
the upstream side (``upstream.py``, one pooled connection to an endpoint) attaches to it, writes
the request and feeds the response back. Neither side knows the other's class: they meet through
the two small protocols below, so each can be tested alone and another client protocol (HTTP/2)
can carry exchanges too.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import TYPE_CHECKING, Protocol

from . import grpcstatus, responses

if TYPE_CHECKING:
    from ..routing import Route

log = logging.getLogger("ingressd.http")

# How a request body is framed (and whether there is one).
NO_BODY, LENGTH_BODY, CHUNKED_BODY = 0, 1, 2
# A body of unknown length for an HTTP/2 upstream (backend-protocol GRPC/GRPCS): the client sides
# hand its bytes over as they are, without chunked framing (``http.ClientConnection.route``).
UNFRAMED_BODY = 3
# How a response body ends, as the upstream framed it.
RESPONSE_EMPTY, RESPONSE_LENGTH, RESPONSE_CHUNKED, RESPONSE_UNTIL_CLOSE = 0, 1, 2, 3

# Why reading from the client is paused (a bit each; reading resumes when none is left).
PAUSE_PIPELINE = 1  # a pipelined request waits for the one before it
PAUSE_UPSTREAM = 2  # the upstream's write buffer is full
PAUSE_PENDING = 4  # body bytes wait for an upstream connection

PENDING_LIMIT = 256 * 1024  # body bytes buffered while no upstream connection is attached


class ClientSide(Protocol):
    """What an exchange needs from the connection its request came in on."""

    client_ip: str
    hsts: bytes  # the Strict-Transport-Security line for responses that lack it (b"": none)

    def send_interim(self, exchange: Exchange, status: int, status_line: bytes, fields: bytes) -> None:
        """An informational (1xx, not 101) response head from the upstream."""

    def send_head(self, exchange: Exchange, status: int, status_line: bytes, fields: bytes, body: int) -> None:
        """The response head: ``status_line`` is `` 200 OK``, ``fields`` the upstream's header lines
        (CRLF-terminated, hop-by-hop ones included), ``body`` one of the ``RESPONSE_*`` framings."""

    def send_body(self, exchange: Exchange, data: bytes) -> None: ...

    def send_end(self, exchange: Exchange) -> None:
        """The response is complete (written out now)."""

    def send_trailers(self, exchange: Exchange, trailers: list[tuple[bytes, bytes]]) -> None:
        """Response trailers (lower-case names) from an HTTP/2 upstream, before ``send_end``:
        HTTP/2 clients get a trailing HEADERS frame, HTTP/1.1 ones chunked trailers if they
        sent ``TE: trailers`` (otherwise they are dropped)."""

    def send_upgrade(self, exchange: Exchange, status_line: bytes, fields: bytes, upstream: UpstreamSide) -> None:
        """The upstream switched protocols: answer 101 and tunnel bytes from now on."""

    def send_local(self, exchange: Exchange, data: bytes) -> None:
        """A complete response written by ingressd itself."""

    def flush(self) -> None: ...

    def cut(self) -> None:
        """Close the client connection now (a response that cannot be completed)."""

    def finish(self, exchange: Exchange) -> None:
        """The exchange is over on both sides."""

    def pause(self, reason: int) -> None:
        """Stop reading from the client (``PAUSE_*`` bits; reading resumes when none is left)."""

    def resume(self, reason: int) -> None: ...

    def tunnel_send(self, data: bytes) -> None:
        """Bytes from the upstream of an upgraded (tunnelled) exchange."""

    def tunnel_closed_by_upstream(self) -> None: ...


class UpstreamSide(Protocol):
    """What an exchange needs from the upstream connection serving it."""

    def write(self, data: bytes) -> None:
        """Request body bytes, already framed for the upstream."""

    def request_sent(self) -> None:
        """The whole request is written."""

    def abandon(self) -> None:
        """The exchange is gone mid-way: the connection's state is unknown, drop it."""

    def pause_reading(self) -> None:
        """The client cannot take more now (its write buffer is full)."""

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


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
    body_length = -1  # Content-Length of the request, -1 when absent
    body_limit: int | None = None
    response_fields = b""  # field lines added to the upstream's response head (CORS)
    received = 0
    pending: list[bytes] | None = None  # body bytes read before an upstream was attached
    pending_bytes = 0
    request_done = False
    response_started = False
    response_done = False
    upstream: UpstreamSide | None = None
    chunked_out = False  # the client side re-frames the response body in chunks
    upgrade = False  # the request asks to switch protocols and is proxied as such
    expect_continue = False
    attempts = 0
    buffered: list[bytes] | None = None  # proxy-request-buffering on: the whole framed body, kept for retries
    deferred = False  # started before its body was complete (buffering): on_message_complete starts it
    first_try = 0.0  # Timers.now of the first attempt (proxy-next-upstream-timeout)
    replayable = True  # nothing of the request body is lost if it must be sent again
    connecting = False
    aborted = False
    http10 = False
    http2 = False  # the request came on an HTTP/2 stream (h2client)
    te_trailers = False  # the client sent "TE: trailers" (forward.read_headers)
    # for metrics and the access log
    upstream_start = upstream_connected = upstream_header = 0.0
    sent = upstream_received = head_size = 0
    upstream_addr: tuple[str, int] | None = None
    upstream_status = 0
    request_id = referer = user_agent = b""
    gate = None  # options.extauth.AuthRequest: an auth subrequest to pass before proxying
    intercept = None  # options.errorpages.CustomErrors: upstream answers replaced by the error backend's
    # routes with RouteOptions.balance only (UpstreamPool.choose):
    balanced: tuple | None = None  # (backend, options.balance.Balance) chosen for the attempts (main or canary)
    tried: set | None = None  # the endpoints tried
    ewma = None  # options.balance.EwmaScores to feed with this exchange's latency
    sticky_line = b""  # the Set-Cookie line of affinity: cookie, in response_fields

    def __init__(self, conn: ClientSide):
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
        if self.buffered is not None:  # bounded by proxy-body-size (buffering is off without a limit)
            self.buffered.append(data)
            return
        if self.pending is None:
            self.pending = []
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.replayable = False
        if self.pending_bytes > PENDING_LIMIT:
            self.conn.pause(PAUSE_PENDING)

    def take_pending(self) -> list[bytes] | None:
        if self.buffered is not None:  # the whole body, as often as it is sent (retries)
            return self.buffered
        pending, self.pending, self.pending_bytes = self.pending, None, 0
        if pending is not None:
            self.conn.resume(PAUSE_PENDING)
        return pending

    # --- response side (called by the upstream connection) ------------------------------------

    def response_interim(self, status: int, status_line: bytes, fields: bytes) -> None:
        self.conn.send_interim(self, status, status_line, fields)

    def response_head(self, status: int, status_line: bytes, fields: bytes, body: int) -> None:
        self.response_started = True
        self.status = status
        errors = self.intercept
        if errors is not None and status in errors.codes and self.request_done and not self.upgrade:
            # custom-http-errors: this answer is dropped, the error backend's is sent instead
            from ..options.errorpages import Discard
            self.intercept = None
            self.conn = Discard(self.conn, errors, status, self)
            return
        self.conn.send_head(self, status, status_line, fields, body)

    def response_body(self, data: bytes) -> None:
        self.upstream_received += len(data)
        self.conn.send_body(self, data)

    def response_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        self.conn.send_trailers(self, trailers)

    def response_complete(self) -> None:
        self.response_done = True
        self.upstream = None
        if not self.request_done:
            # The upstream answered before the whole body arrived: the connection cannot be reused.
            self.keep_alive = False
        self.conn.send_end(self)
        self.conn.finish(self)

    def switched_protocols(self, status_line: bytes, fields: bytes, upstream: UpstreamSide) -> None:
        self.response_started = self.response_done = True
        self.status = 101
        self.upstream = None
        self.conn.send_upgrade(self, status_line, fields, upstream)

    def fail(self, status: int, detail: str) -> None:
        """The upstream failed; answer with an error if nothing was sent yet, else cut the client."""
        self.upstream = None
        self.connecting = False
        if self.aborted:
            return
        if self.response_started:
            if self.route.options.grpc and not self.response_done and (self.http2 or self.te_trailers):
                # A gRPC response under way ends with the status in its trailers, not a cut.
                self.response_done = True
                self.conn.send_trailers(self, grpcstatus.status_fields(grpcstatus.status_for(status), detail))
                self.conn.send_end(self)
                self.conn.finish(self)
                return
            self.conn.cut()
            return
        log.warning("%s %s: %d %s", self.host or "-", self.url.decode("latin-1"), status, detail)
        if self.route.options.grpc:  # backend-protocol GRPC(S): a trailers-only answer (grpcstatus)
            self.answer(200, b"", grpcstatus.trailers_only(status, detail), content_type=b"")
            return
        # The connection stays usable when nothing of the request is left unread.
        self.keep_alive = self.keep_alive and (self.request_done or self.body_mode == NO_BODY)
        errors = self.intercept
        if errors is not None and status in errors.codes and self.request_done and not self.upgrade:
            self.intercept = None  # custom-http-errors: the error backend answers
            errors.serve(self, status, self.conn.ctx.pool)
            return
        pages = self.route.options.error_pages
        if pages is not None:  # ingressd chp: CHP's error pages (may answer later, see chp.errors)
            pages.serve(self, status)
        else:
            self.answer(status, responses.error_body(status, detail))

    def answer(self, status: int, body: bytes, headers: bytes = b"", content_type: bytes | None = None) -> None:
        """Answer from ingressd itself, now (the exchange is being served)."""
        self.status = status
        self.response_started = self.response_done = True
        conn = self.conn
        if conn.hsts:
            headers += conn.hsts
        data = responses.response(status, body, keep_alive=self.keep_alive, headers=headers, head_only=self.is_head,
                                  content_type=content_type)
        self.sent += len(data)
        conn.send_local(self, data)
        if self.request_done or not self.keep_alive:
            conn.finish(self)

    def abort(self) -> None:
        """The client went away: release whatever serves this exchange."""
        self.aborted = True
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.abandon()
