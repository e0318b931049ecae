"""Pure helpers of the HTTP/2 client side (ingressd.dataplane.h2client)."""

from __future__ import annotations

from ingressd.dataplane import responses
from ingressd.dataplane.h2client import fields_to_headers, request_headers, split_response


def test_fields_to_headers_lowercases_and_drops_connection_specific():
    headers: list = []
    fields_to_headers(b"Content-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                      b"Transfer-Encoding: chunked\r\nX-Thing:  spaced \r\nUpgrade: h2c\r\nTE: trailers\r\n"
                      b"Trailer: x\r\nProxy-Connection: close\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n", headers)
    assert headers == [(b"content-type", b"text/plain"), (b"x-thing", b"spaced"), (b"set-cookie", b"a=1"),
                       (b"set-cookie", b"b=2")]


def test_fields_to_headers_ignores_malformed_lines():
    headers: list = []
    fields_to_headers(b"no colon here\r\n: empty name\r\nok: 1\r\n", headers)
    assert headers == [(b"ok", b"1")]


def test_split_response_of_a_local_answer():
    data = responses.response(404, b"nope\n", keep_alive=False, headers=b"X-A: 1\r\n")
    status, headers, body = split_response(data)
    assert status == 404
    assert headers[0] == (b":status", b"404")
    names = [name for name, _ in headers]
    assert b"connection" not in names
    assert (b"x-a", b"1") in headers
    assert (b"content-length", b"5") in headers
    assert b"date" in names
    assert body == b"nope\n"


def test_split_response_of_a_redirect_without_body_on_head():
    data = responses.redirect(308, "https://example.com/", head_only=True)
    status, headers, body = split_response(data)
    assert status == 308 and body == b""
    assert (b"location", b"https://example.com/") in headers


def _req(*extra, method=b"GET", scheme=b"https"):
    return [(b":method", method), (b":scheme", scheme), (b":authority", b"example.com"), (b":path", b"/x"),
            *extra]


def test_request_headers_authority_becomes_host_first():
    pseudo, fields, error = request_headers(_req((b"accept", b"*/*")))
    assert error is None
    assert pseudo[b":path"] == b"/x"
    assert fields == [(b"host", b"example.com"), (b"accept", b"*/*")]


def test_request_headers_keeps_a_host_field():
    _, fields, error = request_headers(_req((b"host", b"example.com")))
    assert error is None
    assert fields == [(b"host", b"example.com")]


def test_request_headers_joins_cookie_crumbs():
    _, fields, _ = request_headers(_req((b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")))
    assert (b"cookie", b"a=1; b=2") in fields
    assert sum(1 for name, _ in fields if name == b"cookie") == 1


def test_request_headers_content_length_checked():
    assert request_headers(_req((b"content-length", b"12")))[2] is None
    assert request_headers(_req((b"content-length", b"12"), (b"content-length", b"12")))[2] is None
    assert request_headers(_req((b"content-length", b"1x")))[2] == "invalid Content-Length"
    assert request_headers(_req((b"content-length", b"-1")))[2] == "invalid Content-Length"
    assert request_headers(_req((b"content-length", b"1"), (b"content-length", b"2")))[2] == "invalid Content-Length"


def test_request_headers_scheme_and_connect():
    assert request_headers(_req(scheme=b"ftp"))[2] == "unknown :scheme"
    assert request_headers(_req(scheme=b"http"))[2] is None
    assert request_headers([(b":method", b"CONNECT"), (b":authority", b"example.com:443")])[2] == "CONNECT"


def test_request_headers_extended_connect():
    """RFC 8441: CONNECT with :protocol is a request like any other (websockets over HTTP/2)."""
    pseudo, fields, error = request_headers([(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                                             (b":scheme", b"https"), (b":authority", b"example.com"),
                                             (b":path", b"/ws"), (b"sec-websocket-version", b"13")])
    assert error is None
    assert pseudo[b":protocol"] == b"websocket"
    assert fields[0] == (b"host", b"example.com")
