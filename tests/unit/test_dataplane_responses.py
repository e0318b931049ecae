"""Hostile responses from upstreams (RFC 9112 §6, §5; RFC 9110 §15): never forwarded; the client
gets a 502 and the upstream connection is dropped, not pooled. In process (see dataplanekit).
Rows marked "llhttp" are refused by httptools' response parser; the others by ``upstream.py``."""

from __future__ import annotations

import pytest

from dataplanekit import Rig
from unitkit import compile_config, ingress, path, rule, svc_with_endpoints

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

OK = b"HTTP/1.1 200 OK\r\n"
GET = b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n"

INVALID = [
    ("§6.3 CL with TE (llhttp)", OK + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("§6.3 CL twice, different (llhttp)", OK + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
    ("§6.3 CL twice, same (llhttp)", OK + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
    ("§6.3 CL list (llhttp)", OK + b"Content-Length: 3, 3\r\n\r\nabc"),
    ("§6.3 CL negative (llhttp)", OK + b"Content-Length: -1\r\n\r\nabc"),
    ("§6.3 CL junk (llhttp)", OK + b"Content-Length: nope\r\n\r\n"),
    ("§6.1 TE gzip (as nginx)", OK + b"Transfer-Encoding: gzip\r\n\r\nabc"),
    ("§6.1 TE gzip, chunked (as nginx)", OK + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("§6.1 TE chunked, gzip", OK + b"Transfer-Encoding: chunked, gzip\r\n\r\nabc"),
    ("§6.1 TE unknown", OK + b"Transfer-Encoding: xchunked\r\n\r\nabc"),
    ("§6.1 TE twice", OK + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("§6.1 TE in HTTP/1.0", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
    ("§5.5 NUL in a value (llhttp)", OK + b"X: a\x00b\r\nContent-Length: 0\r\n\r\n"),
    ("§5.5 control byte in Set-Cookie (llhttp)", OK + b"Set-Cookie: a=\x01\r\nContent-Length: 0\r\n\r\n"),
    ("§2.2 bare CR (llhttp)", OK + b"X: a\rb\r\nContent-Length: 0\r\n\r\n"),
    ("§2.2 LF-only lines (llhttp)", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    ("§5.2 obs-fold (llhttp)", OK + b"X: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    ("§5.1 space before colon (llhttp)", OK + b"Content-Length : 0\r\n\r\n"),
    ("§5.1 name not a token (llhttp)", OK + b"X@Y: b\r\nContent-Length: 0\r\n\r\n"),
    ("§4 four-digit status (llhttp)", b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
    ("RFC 9110 §15 status below 100", b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n"),
    ("RFC 9110 §15 status above 599", b"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n"),
    ("§2.3 HTTP/2.0 status line", b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ("§2.3 HTTP/0.9 (no status line) (llhttp)", b"hello world\r\n\r\n"),
    ("RFC 9110 §15.2.2 unsolicited 101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
]


@pytest.fixture
def rig():
    return Rig(compile_config(ingress("web", rule("a.com", path("/", "web"))), svc_with_endpoints("web")))


@pytest.mark.parametrize("response_bytes", [row[1] for row in INVALID], ids=[row[0] for row in INVALID])
def test_invalid_response_is_502_and_the_connection_dropped(rig, response_bytes):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(response_bytes)
    response = client.response()
    assert response.status == 502 and response.body.startswith(b"502 Bad Gateway")
    assert upstream.closed and rig.pool.count() == 0
    client.send(GET)  # the client's connection is still good; the next request gets a new upstream one
    assert len(rig.upstreams) == 2


@pytest.mark.parametrize("response_bytes", [row[1] for row in INVALID], ids=[row[0] for row in INVALID])
def test_invalid_response_split_across_reads_is_502(rig, response_bytes):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    for i in range(len(response_bytes)):
        if client.received():
            break
        upstream.send(response_bytes[i:i + 1])
    assert client.response().status == 502 and upstream.closed and rig.pool.count() == 0


def test_invalid_chunk_after_the_head_cuts_the_client(rig):
    """The head is forwarded already: the client's connection is closed mid-body (it sees a
    truncated chunked body, never a complete one), and the upstream connection dropped."""
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(OK + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    assert client.closed and upstream.closed and rig.pool.count() == 0
    assert not client.received().endswith(b"0\r\n\r\n")


def test_bytes_after_a_complete_response_drop_the_connection(rig):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(OK + b"Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert client.response().body == b"ok" and upstream.closed and rig.pool.count() == 0


def test_response_framing_as_the_client_gets_it(rig):
    """Accepted: exactly "chunked" in any case; re-framed for the client, one framing only."""
    client = rig.client()
    client.send(GET)
    rig.upstream().send(OK + b"Transfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    response = client.response()
    assert response.status == 200 and response.body == b"abc" and response.header("transfer-encoding") == "chunked"
    assert rig.pool.count() == 1


def test_empty_lines_before_a_status_line_are_not_forwarded(rig):
    """Found by test_fuzz: httptools skips CRLFs before a status line; the head forwarded was cut
    from the wrong place (the status line went out as a header line)."""
    client = rig.client()
    client.send(GET)
    rig.upstream().send(b"\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert [r.status for r in client.responses()] == [103, 204]
    assert client.received().startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n")
