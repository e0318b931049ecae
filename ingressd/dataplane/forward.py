"""The request head as the upstream gets it: client headers read once, rewritten as ingress-nginx does.

``read_headers`` makes the one pass over a request's headers: it keeps the end-to-end ones (as
raw ``name: value`` lines), takes out what ingressd itself interprets (Host, framing, Expect,
Upgrade, X-Request-ID, X-Forwarded-For) and drops what must not reach the upstream (hop-by-hop
fields, the ``Proxy`` header (httpoxy), and the X-Forwarded-*/X-Real-IP values a client could forge).
``upstream_head`` then joins the request head with ingressd's own forwarding headers.
"""

from __future__ import annotations

import ipaddress
import itertools
from random import getrandbits
from typing import TYPE_CHECKING

from ..options.upstream_request import edit_request
from .exchange import CHUNKED_BODY, LENGTH_BODY
from .framing import MAX_CONTENT_LENGTH

if TYPE_CHECKING:
    from .exchange import Exchange

# How a request header is treated when building the upstream request.
(_FORWARD, _HOST, _DROP, _REQUEST_ID, _XFF, _CONNECTION, _UPGRADE, _EXPECT, _LENGTH, _TE, _REFERER, _AGENT,
 _FORWARDING, _TE_FIELD) = range(14)
_REQUEST_HEADERS = {
    b"referer": _REFERER, b"user-agent": _AGENT,
    b"host": _HOST, b"x-request-id": _REQUEST_ID, b"x-forwarded-for": _XFF, b"connection": _CONNECTION,
    b"upgrade": _UPGRADE, b"expect": _EXPECT, b"content-length": _LENGTH, b"transfer-encoding": _TE,
    b"keep-alive": _DROP, b"proxy-connection": _DROP, b"te": _TE_FIELD, b"trailer": _DROP, b"proxy": _DROP,
    # dropped; a trusted proxy's values are read by trust.for_request (the request is marked for it)
    b"x-forwarded-host": _FORWARDING, b"x-forwarded-port": _FORWARDING, b"x-forwarded-proto": _FORWARDING,
    b"x-real-ip": _DROP,
    b"x-forwarded-scheme": _DROP, b"x-scheme": _DROP, b"x-original-forwarded-for": _DROP,
}
_CONNECTION_OPTIONS = (b"keep-alive", b"close", b"upgrade")
# What read_headers takes out of a request that a route without X-Forwarded-* passes as sent.
_CLIENT_FORWARDING = frozenset(name for name, kind in _REQUEST_HEADERS.items()
                               if kind in (_DROP, _XFF, _REQUEST_ID, _FORWARDING) and name.startswith(b"x-"))

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._*")
_host_cache: dict[bytes, str | None] = {}
# The per-process random half above 64 bits, the counter below: one format per request.
_request_ids = itertools.count((getrandbits(64) << 64) | getrandbits(63))


def new_request_id() -> bytes:
    """32 hex digits as ingress-nginx's $req_id: a random per-process half and a counter, unique
    without a random draw per request (the counter starts at random and would need 2**63
    requests to reach the random half)."""
    return b"%032x" % next(_request_ids)


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
            host = name[:-1] if name.endswith(".") else name
            if ((colon and not (port.isascii() and port.isdigit())) or not _HOST_CHARS.issuperset(host)
                    or not host or host[0] == "." or host[-1] == "." or ".." in name):
                host = None
        if len(_host_cache) > 4096:
            _host_cache.clear()
        _host_cache[raw] = host
    return host


class RequestHead:
    """What ``read_headers`` found besides the forwarded lines (one per request, slots only)."""

    __slots__ = ("lines", "raw_host", "request_id", "xff", "upgrade", "expect", "error", "status", "forwarding")

    def __init__(self) -> None:
        self.lines: list[bytes] = []  # name, b": ", value, b"\r\n" for every forwarded header
        self.raw_host: bytes | None = None
        self.request_id: bytes | None = None
        self.xff: bytes | None = None
        self.upgrade: bytes | None = None
        self.expect = False
        self.error: str | None = None  # why the request is malformed
        self.status = 400  # the answer when it is
        self.forwarding = False  # an X-Forwarded-For, -Host, -Port or -Proto is present


def read_headers(exchange: Exchange) -> RequestHead:
    """One pass over ``exchange.headers``: sets its body framing, referer and user agent."""
    head = RequestHead()
    lines = head.lines
    connection = None
    chunked = False
    for name, value in exchange.headers:
        kind = _REQUEST_HEADERS.get(name.lower(), _FORWARD)
        if kind == _FORWARD:
            lines += (name, b": ", value, b"\r\n")
        elif kind == _HOST:
            if head.raw_host is not None:
                head.error = "duplicate Host header"
            head.raw_host = value
        elif kind == _LENGTH:
            length = exchange.body_length = int(value)  # httptools has validated the digits
            if length > MAX_CONTENT_LENGTH:
                head.error = "Content-Length too large"
        elif kind == _TE:
            # httptools has refused duplicates and a last coding other than chunked; a list
            # ("gzip, chunked") is a coding ingressd does not implement (RFC 9112 §6.1, as nginx).
            if value.rstrip(b" \t").lower() == b"chunked":
                chunked = True
            else:
                head.error, head.status = "unsupported Transfer-Encoding", 501
        elif kind == _REQUEST_ID:
            head.request_id = value
        elif kind == _REFERER:
            exchange.referer = value
            lines += (name, b": ", value, b"\r\n")
        elif kind == _AGENT:
            exchange.user_agent = value
            lines += (name, b": ", value, b"\r\n")
        elif kind == _XFF:
            head.xff = value if head.xff is None else head.xff + b", " + value
            head.forwarding = True
        elif kind == _FORWARDING:
            head.forwarding = True
        elif kind == _EXPECT:
            head.expect = value.lower() == b"100-continue"
        elif kind == _UPGRADE:
            head.upgrade = value
        elif kind == _TE_FIELD:  # hop-by-hop; "trailers" says the client takes response trailers
            exchange.te_trailers = exchange.te_trailers or b"trailers" in value.lower()
        elif kind == _CONNECTION and value.lower() not in _CONNECTION_OPTIONS:
            connection = value if connection is None else connection + b"," + value
    if connection is not None:
        _drop_connection_listed(lines, connection)
    if chunked:
        exchange.body_mode = CHUNKED_BODY
    elif exchange.body_length > 0:
        exchange.body_mode = LENGTH_BODY
    return head


def upstream_head(exchange: Exchange, head: RequestHead, forwarded: bytes, forwarded_host: bytes | None = None) -> bytes:
    """The request head for the upstream. ``forwarded`` holds the per-connection X-Forwarded-For,
    X-Real-IP and listener lines (see ``http.ClientConnection``); ``forwarded_host`` a trusted
    proxy's X-Forwarded-Host (``trust.for_request``)."""
    raw_host = head.raw_host or b""
    framing = b""
    if exchange.body_mode == LENGTH_BODY:
        framing = b"Content-Length: %d\r\n" % exchange.body_length
    elif exchange.body_mode == CHUNKED_BODY:
        framing = b"Transfer-Encoding: chunked\r\n"
    if exchange.upgrade:
        framing += b"Upgrade: " + head.upgrade + b"\r\nConnection: upgrade\r\n"
    options = exchange.route.options
    if options.edits_request:  # rewrite-target, upstream-vhost, ..., ingressd chp's flags
        return _edited_head(exchange, head, options, forwarded, forwarded_host, framing)
    if head.xff is not None:
        framing += b"X-Original-Forwarded-For: " + head.xff + b"\r\n"
    return b"".join((
        exchange.method, b" ", exchange.url, b" HTTP/1.1\r\nHost: ", raw_host, b"\r\n", *head.lines, forwarded,
        b"X-Forwarded-Host: ", forwarded_host or raw_host, b"\r\nX-Request-ID: ", exchange.request_id, b"\r\n",
        framing, b"\r\n",
    ))


def _edited_head(exchange: Exchange, head: RequestHead, options, forwarded: bytes, forwarded_host: bytes | None,
                 framing: bytes) -> bytes:
    raw_host = head.raw_host or b""
    url, host, extra = edit_request(options, exchange.url, raw_host)
    lines = head.lines
    names = options.request_header_names  # --custom-header, proxy-set-headers: replace the client's
    if names:
        lines = [field for i in range(0, len(lines), 4) if lines[i].lower() not in names
                 for field in lines[i:i + 4]]
        for name, line in options.request_headers:
            if name == b"host":
                host = line.partition(b":")[2].strip()
            else:
                extra += line
    if options.x_forward:
        forwarding = (forwarded, b"X-Forwarded-Host: ", forwarded_host or raw_host, b"\r\nX-Request-ID: ",
                      exchange.request_id, b"\r\n")
        if head.xff is not None:
            extra += b"X-Original-Forwarded-For: " + head.xff + b"\r\n"
        if names:  # proxy-set-headers may replace ingressd's own X-Forwarded-* lines too
            forwarding = tuple(line + b"\r\n" for line in b"".join(forwarding).split(b"\r\n")
                               if line and line.partition(b":")[0].lower() not in names)
    else:  # --no-x-forward: the client's own forwarding headers pass unchanged, nothing is added
        forwarding = tuple(b"%s: %s\r\n" % (name, value) for name, value in exchange.headers
                           if name.lower() in _CLIENT_FORWARDING)
    return b"".join((exchange.method, b" ", url, b" HTTP/1.1\r\nHost: ", host, b"\r\n", *lines, *forwarding,
                     extra, framing, b"\r\n"))


def _drop_connection_listed(lines: list[bytes], value: bytes) -> None:
    """Remove headers the client listed in Connection (hop-by-hop by declaration)."""
    listed = {token.strip().lower() for token in value.split(b",")} - set(_CONNECTION_OPTIONS)
    if not listed:
        return
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in listed:
            kept += lines[i:i + 4]
    lines[:] = kept

