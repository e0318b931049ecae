"""Hostile requests, by RFC 9112 / RFC 9110 section: what ingressd answers, and that nothing of an
ambiguous request (nor anything after it) reaches an upstream. In process (see dataplanekit).

Rows marked "llhttp" are refused by httptools' parser itself (strict mode, no leniency flags);
the others by ingressd (``dataplane/framing.py``, ``forward.read_headers``, ``http.py``).
"""

from __future__ import annotations

import pytest

from dataplanekit import Rig
from unitkit import compile_config, ingress, path, rule, svc_with_endpoints

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

POST = b"POST / HTTP/1.1\r\nHost: a.com\r\n"
GET_HEAD = b"GET / HTTP/1.1\r\nHost: a.com\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a.com\r\n\r\n"


def web_config():
    return compile_config(ingress("web", rule("a.com", path("/", "web"))), svc_with_endpoints("web"))


@pytest.fixture
def rig():
    return Rig(web_config())


REFUSED = [
    # --- message framing, RFC 9112 §6 ---
    ("§6.3 CL with TE (llhttp)", POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("§6.3 TE with CL (llhttp)", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("§6.1 TE list gzip, chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("§6.1 TE chunked not last (llhttp)", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("§6.1 TE unknown coding (as nginx)", POST + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
    ("§6.1 TE identity (as nginx)", POST + b"Transfer-Encoding: identity\r\n\r\n", 501),
    ("§6.1 TE twice (llhttp)", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("§6.1 TE chunked, chunked (llhttp)", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("§6.1 TE with parameter", POST + b"Transfer-Encoding: chunked;q=1\r\n\r\n", 501),
    ("§6.1 TE empty (llhttp)", POST + b"Transfer-Encoding: \r\n\r\n", 400),
    ("§6.1 TE vertical tab (llhttp)", POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n", 400),
    ("§6.1 TE in HTTP/1.0", b"POST / HTTP/1.0\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("§6.3 CL twice, same value (llhttp)", POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("§6.3 CL twice, different (llhttp)", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("§6.3 CL list (llhttp)", POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("§6.3 CL plus sign (llhttp)", POST + b"Content-Length: +3\r\n\r\nabc", 400),
    ("§6.3 CL negative (llhttp)", POST + b"Content-Length: -3\r\n\r\nabc", 400),
    ("§6.3 CL junk (llhttp)", POST + b"Content-Length: 3x\r\n\r\nabc", 400),
    ("§6.3 CL hex (llhttp)", POST + b"Content-Length: 0x3\r\n\r\nabc", 400),
    ("§6.3 CL inner space (llhttp)", POST + b"Content-Length: 3 3\r\n\r\nabc", 400),
    ("§6.3 CL empty (llhttp)", POST + b"Content-Length: \r\n\r\n", 400),
    ("§6.3 CL over 2**64 (llhttp)", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("§6.3 CL over 2**63-1", POST + b"Content-Length: 9223372036854775808\r\n\r\n", 400),
    # --- field syntax, RFC 9112 §5 ---
    ("§5.1 space before colon (llhttp)", b"GET / HTTP/1.1\r\nHost : a.com\r\n\r\n", 400),
    ("§5.1 tab before colon (llhttp)", b"GET / HTTP/1.1\r\nHost\t: a.com\r\n\r\n", 400),
    ("§2.2 whitespace before the first field (llhttp)", b"GET / HTTP/1.1\r\n Host: a.com\r\n\r\n", 400),
    ("§5.1 NUL in a name (llhttp)", b"GET / HTTP/1.1\r\nHo\x00st: a.com\r\n\r\n", 400),
    ("§5.5 NUL in a value (llhttp)", GET_HEAD + b"X: a\x00b\r\n\r\n", 400),
    ("§5.5 control byte in a value (llhttp)", GET_HEAD + b"X: a\x01b\r\n\r\n", 400),
    ("§5.5 DEL in a value (llhttp)", GET_HEAD + b"X: a\x7fb\r\n\r\n", 400),
    ("§2.2 bare CR in a value (llhttp)", GET_HEAD + b"X: a\rb\r\n\r\n", 400),
    ("§2.2 bare CR ending the request line (llhttp)", b"GET / HTTP/1.1\rHost: a.com\r\n\r\n", 400),
    ("§5.2 obs-fold (llhttp)", GET_HEAD + b"X: a\r\n b\r\n\r\n", 400),
    ("§2.2 LF-only lines (llhttp)", b"GET / HTTP/1.1\nHost: a.com\n\n", 400),
    ("§2.2 one LF-only line (llhttp)", b"GET / HTTP/1.1\r\nHost: a.com\nX: b\r\n\r\n", 400),
    ("§5.1 name not a token (llhttp)", GET_HEAD + b"X@Y: b\r\n\r\n", 400),
    ("§5.1 empty name (llhttp)", GET_HEAD + b": b\r\n\r\n", 400),
    ("§5.1 line without colon (llhttp)", GET_HEAD + b"No colon here\r\n\r\n", 400),
    ("§5 too many fields", GET_HEAD + b"".join(b"X-%d: v\r\n" % i for i in range(201)) + b"\r\n", 431),
    ("§5 field too large", GET_HEAD + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    # --- Host, RFC 9112 §3.2 ---
    ("§3.2 no Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("§3.2 two Host fields", b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n", 400),
    ("§3.2 two Host fields, same value", b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2 empty Host (as nginx)", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    ("§3.2 Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("§3.2 Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a.com\r\n\r\n", 400),
    ("§3.2 Host with a path", b"GET / HTTP/1.1\r\nHost: a.com/x\r\n\r\n", 400),
    ("§3.2 Host with a bad port", b"GET / HTTP/1.1\r\nHost: a.com:8x\r\n\r\n", 400),
    ("§3.2 Host with non-ASCII letters", b"GET / HTTP/1.1\r\nHost: \xaa.com\r\n\r\n", 400),
    ("§3.2 Host with an empty label", b"GET / HTTP/1.1\r\nHost: a..com\r\n\r\n", 400),
    ("§3.2 Host ending in two dots (found by test_fuzz)", b"GET / HTTP/1.1\r\nHost: a..\r\n\r\n", 400),
    ("§3.2 Host only a dot", b"GET / HTTP/1.1\r\nHost: .\r\n\r\n", 400),
    ("§3.2 Host only whitespace", b"GET / HTTP/1.1\r\nHost:  \r\n\r\n", 400),
    ("§3.2 Host a bad IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    ("§3.2.2 absolute form without Host", b"GET http://a.com/ HTTP/1.1\r\n\r\n", 400),
    ("§3.2.2 absolute form, empty authority", b"GET http:///x HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2.2 absolute form with userinfo", b"GET http://u@a.com/ HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    # --- request line and target, RFC 9112 §3, RFC 9110 ---
    ("§3 request line too long", b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: a.com\r\n\r\n", 414),
    ("§3.1 unknown method (llhttp; nginx forwards)", b"FOO / HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.1 lower-case method (llhttp)", b"get / HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.1 method not a token (llhttp)", b"G@T / HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3 tab in the request line (llhttp)", b"GET\t/ HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§2.3 HTTP/1.2 (llhttp)", b"GET / HTTP/1.2\r\nHost: a.com\r\n\r\n", 400),
    ("§2.3 lower-case http (llhttp)", b"GET / http/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§2.3 HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: a.com\r\n\r\n", 505),
    ("§2.3 HTTP/0.9 request", b"GET /\r\n\r\n", 505),
    ("§3.2 space in the target (llhttp)", b"GET /a b HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2 NUL in the target (llhttp)", b"GET /a\x00b HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2 byte above 0x7f in the target (llhttp)", b"GET /a\xffb HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2 fragment in the target", b"GET /a#b HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2 fragment after the query", b"GET /a?q#b HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2 relative target", b"GET x HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2.4 * with GET", b"GET * HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("§3.2.3 CONNECT (authority form)", b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n", 400),
    ("RFC 9113 §3.4 h2 preface on HTTP/1.1 (llhttp)", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("TLS on the HTTP port (llhttp)", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
    # --- paths (RFC 3986 §3.3, §5.2.4; nginx) ---
    ("path above the root", b"GET /../x HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("path above the root, encoded dots", b"GET /a/%2e%2e/%2E%2E/x HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("encoded slash makes a dot segment", b"GET /a/..%2f..%2fx HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("encoded slash makes a dot segment, upper case", b"GET /a%2F..%2Fb HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("encoded NUL (as nginx)", b"GET /a%00b HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("invalid percent-escape (as nginx)", b"GET /a%zzb HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("truncated percent-escape", b"GET /a%2 HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    ("backslash in the path", b"GET /a\\..\\b HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    # --- upgrades, RFC 9110 §7.8 ---
    ("§7.8 upgrade request with a body", POST + b"Connection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("§7.8 upgrade request chunked", POST + b"Connection: upgrade\r\nUpgrade: websocket\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
]


# Bodies stream to the upstream as they arrive (ingress-nginx buffers them: proxy-request-buffering),
# so a body found malformed after its head was sent cannot be kept from the upstream: it gets a
# head and part of a body, never a complete request, and its connection is dropped.
BODY_ERRORS = [
    ("§7.1 chunk size junk (llhttp)", CHUNKED + b"zz\r\nabc\r\n0\r\n\r\n"),
    ("§7.1 chunk size negative (llhttp)", CHUNKED + b"-1\r\nabc\r\n0\r\n\r\n"),
    ("§7.1 chunk size overflow (llhttp)", CHUNKED + b"f" * 17 + b"\r\nabc\r\n0\r\n\r\n"),
    ("§7.1 chunk size with space (llhttp)", CHUNKED + b"3 \r\nabc\r\n0\r\n\r\n"),
    ("§7.1.1 chunk extension control byte (llhttp)", CHUNKED + b"3;\x01\r\nabc\r\n0\r\n\r\n"),
    ("§7.1.1 chunk extension bare LF (llhttp)", CHUNKED + b"3;a\nabc\r\n0\r\n\r\n"),
    ("§7.1 chunk data without CRLF (llhttp)", CHUNKED + b"3\r\nabcX0\r\n\r\n"),
    ("§7.1 bare LF after chunk size (llhttp)", CHUNKED + b"3\nabc\n0\n\n"),
    ("§7.1 bare LF after chunk data (llhttp)", CHUNKED + b"3\r\nabc\n0\r\n\r\n"),
    ("§7.1.2 trailer Content-Length (llhttp)", CHUNKED + b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n"),
    ("§7.1.2 trailer Transfer-Encoding (llhttp)", CHUNKED + b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("§7.1.2 trailer bad name (llhttp)", CHUNKED + b"3\r\nabc\r\n0\r\nX Y: z\r\n\r\n"),
]


@pytest.mark.parametrize("request_bytes", [row[1] for row in BODY_ERRORS],
                         ids=[row[0] for row in BODY_ERRORS])
def test_malformed_body_is_400_and_the_upstream_never_sees_it_complete(rig, request_bytes):
    client = rig.client()
    client.send(request_bytes + SMUGGLED)
    assert client.response().status == 400 and client.closed
    upstream = rig.upstream()
    assert upstream.closed and not upstream.received().endswith(b"0\r\n\r\n")
    assert len(rig.dialed) == 1 and b"smuggled" not in upstream.received()


@pytest.mark.parametrize("request_bytes, status", [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED])
def test_refused_closed_and_nothing_reaches_an_upstream(rig, request_bytes, status):
    client = rig.client()
    client.send(request_bytes)
    response = client.response()
    assert response.status == status and response.header("connection") == "close"
    assert client.closed and rig.dialed == []


@pytest.mark.parametrize("request_bytes, status", [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED])
def test_a_request_after_a_refused_one_is_never_parsed(rig, request_bytes, status):
    """RFC 9112 §9.6: after the response that closes, nothing the client sent is a request."""
    client = rig.client()
    client.send(request_bytes + SMUGGLED + SMUGGLED)
    assert client.response().status == status and client.closed and rig.dialed == []


@pytest.mark.parametrize("first", [
    b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 2000000\r\n\r\n",  # 413 before the body
    b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED),  # 400, body
    b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",  # 501, chunked "body"
])
def test_a_body_after_a_refusal_is_never_parsed_as_a_request(rig, first):
    client = rig.client()
    client.send(first + SMUGGLED)
    assert client.response().status in (400, 413, 501) and client.closed and rig.dialed == []


def test_requests_after_a_connection_close_request_are_ignored(rig):
    """RFC 9112 §9.6: a client that sent close sends no further request; what follows is dropped."""
    client = rig.client()
    client.send(b"GET /first HTTP/1.1\r\nHost: a.com\r\nConnection: close\r\n\r\n" + SMUGGLED)
    upstream = rig.upstream()
    assert upstream.received().startswith(b"GET /first ") and b"smuggled" not in upstream.received()
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert client.response().status == 200 and client.closed and len(rig.dialed) == 1


def test_bytes_after_an_upgrade_request_wait_for_the_101(rig):
    """RFC 9110 §7.8: a refused upgrade must not turn the bytes after it into requests the upstream
    parses (websocket/h2c smuggling past routing)."""
    client = rig.client()
    client.send(b"GET /ws HTTP/1.1\r\nHost: a.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n" + SMUGGLED)
    client.send(SMUGGLED)
    upstream = rig.upstream()
    assert b"smuggled" not in upstream.received()
    upstream.send(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
    assert client.response().status == 426 and client.closed
    assert b"smuggled" not in upstream.received() and upstream.closed


def test_early_bytes_held_for_an_upgrade_are_bounded(rig):
    client = rig.client()
    client.send(b"GET /ws HTTP/1.1\r\nHost: a.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
    for _ in range(5):
        client.send(b"x" * 100_000)
    assert not client.transport.reading  # paused: the kernel buffers, not ingressd
    rig.upstream().send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    assert rig.upstream().received().endswith(b"x" * 500_000) and client.transport.reading


# --- accepted, and what the upstream gets ---------------------------------------------------------

ACCEPTED = [
    # (row, request, request line + Host the upstream gets)
    ("§6.1 TE is case-insensitive", POST + b"Transfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
     b"POST / HTTP/1.1\r\nHost: a.com\r\n"),
    ("§7.1 leading zeros in a chunk size", POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"0" * 30 + b"3\r\nabc\r\n0\r\n\r\n",
     b"POST / HTTP/1.1\r\nHost: a.com\r\n"),
    ("§7.1.1 chunk extensions (dropped)", POST + b"Transfer-Encoding: chunked\r\n\r\n3;a=\"b\\\"c\"\r\nabc\r\n0\r\n\r\n",
     b"POST / HTTP/1.1\r\nHost: a.com\r\n"),
    ("§6.3 CL with leading zeros and OWS", POST + b"Content-Length: 03 \r\n\r\nabc", b"POST / HTTP/1.1\r\nHost: a.com\r\n"),
    ("§2.2 empty lines before the request", b"\r\n" + GET_HEAD + b"\r\n", b"GET / HTTP/1.1\r\nHost: a.com\r\n"),
    ("§5.5 obs-text and tab in a value", GET_HEAD + b"X: a\tb\xff\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a.com\r\n"),
    ("§3.2.2 absolute form: its authority wins", b"GET http://a.com/p?q HTTP/1.1\r\nHost: evil.com\r\n\r\n",
     b"GET /p?q HTTP/1.1\r\nHost: a.com\r\n"),
    ("§3.2.2 absolute form, upper-case scheme, no path", b"GET HTTP://a.com?q HTTP/1.1\r\nHost: x\r\n\r\n",
     b"GET /?q HTTP/1.1\r\nHost: a.com\r\n"),
    ("§3.2 Host with port and trailing dot", b"GET / HTTP/1.1\r\nHost: A.com.:80\r\n\r\n", b"GET / HTTP/1.1\r\nHost: A.com.:80\r\n"),
    ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n", None),
    ("dot segments resolved for the upstream too", b"GET /x/../p/./q HTTP/1.1\r\nHost: a.com\r\n\r\n",
     b"GET /p/q HTTP/1.1\r\nHost: a.com\r\n"),
    ("encoded dot segments resolved for the upstream", b"GET /x/%2e%2E/p?a=%2e%2e HTTP/1.1\r\nHost: a.com\r\n\r\n",
     b"GET /p?a=%2e%2e HTTP/1.1\r\nHost: a.com\r\n"),
    ("encoded slash kept for the upstream (nginx)", b"GET /api/g%2Fp HTTP/1.1\r\nHost: a.com\r\n\r\n",
     b"GET /api/g%2Fp HTTP/1.1\r\nHost: a.com\r\n"),
    ("double slashes kept for the upstream (nginx)", b"GET //p HTTP/1.1\r\nHost: a.com\r\n\r\n",
     b"GET //p HTTP/1.1\r\nHost: a.com\r\n"),
]


@pytest.mark.parametrize("request_bytes, start", [row[1:] for row in ACCEPTED], ids=[row[0] for row in ACCEPTED])
def test_accepted_and_forwarded_unambiguously(rig, request_bytes, start):
    client = rig.client()
    client.send(request_bytes)
    if start is None:  # no Host: the default backend answers
        assert client.response().status == 404
        return
    raw = rig.upstream().received()
    assert raw.startswith(start), raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.count(b"\r\nHost:") == 1 and b"\r\nX-Forwarded-Host: " + start.split(b"Host: ")[1] in head + b"\r\n"
    if request_bytes.startswith(b"POST"):
        assert body in (b"abc", b"3\r\nabc\r\n0\r\n\r\n")  # one framing: Content-Length or chunked, never both
        assert (b"Content-Length" in head) != (b"Transfer-Encoding" in head)


def test_options_star_is_answered_by_ingressd(rig):
    """RFC 9110 §9.3.7: OPTIONS * is about the server; no upstream ever sees a * target."""
    client = rig.client()
    client.send(b"OPTIONS * HTTP/1.1\r\nHost: a.com\r\n\r\n")
    response = client.response()
    assert response.status == 200 and "GET" in response.header("allow") and rig.dialed == [] and not client.closed


def test_exact_route_is_not_served_for_paths_that_only_resolve_to_it():
    """An ``Exact /badge.svg`` backend (a static bucket) gets /badge.svg and only that; the
    upstream never gets a path it could resolve to something the routing did not see."""
    config = compile_config(
        ingress("badge", rule("a.com", path("/badge.svg", "static", path_type="Exact"))),
        ingress("app", rule("a.com", path("/", "app"))),
        svc_with_endpoints("static", ("10.0.0.1",)), svc_with_endpoints("app", ("10.0.0.2",)))
    for target, endpoint, forwarded in [
        (b"/badge.svg", "10.0.0.1", b"/badge.svg"),
        (b"/x/../badge.svg", "10.0.0.1", b"/badge.svg"),
        (b"/x/%2e%2e/badge.svg", "10.0.0.1", b"/badge.svg"),
        (b"/%62adge.svg", "10.0.0.1", b"/%62adge.svg"),  # decoded for routing, as nginx; same resource
        (b"/badge.svg/..%2f..%2fsecret", None, None),
        (b"/x%2f..%2fbadge.svg", None, None),
        (b"/badge.svg%2f..%2fsecret", None, None),
        (b"/badge.svg/", "10.0.0.2", b"/badge.svg/"),
    ]:
        rig = Rig(config)
        client = rig.client()
        client.send(b"GET %s HTTP/1.1\r\nHost: a.com\r\n\r\n" % target)
        if endpoint is None:
            assert client.response().status == 400 and rig.dialed == [], target
        else:
            assert rig.dialed[0][0] == endpoint, target
            assert rig.upstream().received().startswith(b"GET %s HTTP/1.1\r\n" % forwarded), target


@pytest.mark.parametrize("start", [
    b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Long: ",  # a field value that never ends
    b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Long",  # a field name that never ends
    CHUNKED + b"3\r\nabc\r\n0\r\nX-Trailer: ",  # a trailer that never ends
])
def test_an_unfinished_line_is_bounded_in_memory(rig, start):
    """httptools keeps an unfinished field line in memory until it ends: 431 once it passes the
    head limit, whatever the pace (found while checking slowloris memory: 13 MB per connection)."""
    client = rig.client()
    client.send(start)
    for _ in range(3):
        client.send(b"a" * 40_000)
    if rig.upstreams:  # the trailer case: the head was sent already, the request never completes
        assert rig.upstream().closed and not rig.upstream().received().endswith(b"0\r\n\r\n")
    assert client.response().status == 431 and client.closed


def test_pipelined_requests_in_one_large_read_are_not_mistaken_for_a_large_head(rig):
    client = rig.client()
    request = b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Pad: " + b"p" * 1000 + b"\r\n\r\n"
    client.send(request * 200 + b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 300000\r\n\r\n" + b"b" * 300_000)
    assert not client.closed and len(rig.upstreams) == 1 and client.received() == b""
