"""Upstreams that answer in unusual but legal (or hostile) ways, served by a raw socket upstream."""

from __future__ import annotations

import socket
import threading

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(60)

RESPONSES = {
    # A body delimited by the end of the connection (no Content-Length, not chunked).
    b"/until-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close\n",
    # An interim 103 Early Hints before the response.
    b"/early-hints": b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    # A response head far beyond any sane size.
    b"/huge-head": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))
                   + b"Content-Length: 2\r\n\r\nok",
    # Hop-by-hop fields the client must not see, an HTTP/1.0 status line, and a field split oddly.
    b"/hop-by-hop": b"HTTP/1.0 200 Fine\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                    b"Proxy-Connection: keep-alive\r\nTrailer: X-T\r\nX-Kept: yes\r\n"
                    b"content-length: 2\r\nX-Connection-Like: stays\r\n\r\nok",
    # Not HTTP at all.
    b"/garbage": b"\x00\x01\x02 this is not a response\r\n\r\n",
}


class RawUpstream:
    """Answers each connection's first request with a canned response, then closes."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                path = data.split(b" ", 2)[1] if data.count(b" ") >= 2 else b""
                conn.sendall(RESPONSES.get(path.split(b"?")[0], b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    upstream = RawUpstream()
    inst = launch(tmp_path_factory.mktemp("edges"), {
        "svc.yaml": m.service_with_endpoints("svc-raw", upstream.port),
        "ing.yaml": [m.ingress("ing-raw", [m.rule("raw.example.com", m.path("/", "svc-raw"))])],
    })
    yield inst
    inst.stop()
    upstream.close()


def test_body_delimited_by_close_is_rechunked_for_http11(edge):
    with h.RawConn(edge.http_port) as conn:
        conn.send(b"GET /until-close HTTP/1.1\r\nHost: raw.example.com\r\n\r\n")
        response = conn.read_response()
        assert response.status == 200
        assert response.header("transfer-encoding") == "chunked"
        assert response.body == b"body until close\n"
        # The client's connection stays usable: the end of the upstream's body is not its end.
        conn.send(b"GET /until-close HTTP/1.1\r\nHost: raw.example.com\r\n\r\n")
        assert conn.read_response().body == b"body until close\n"


def test_body_delimited_by_close_for_http10(edge):
    response = h.curl("-s", "-0", "--resolve", edge.resolve("raw.example.com"),
                      edge.url("raw.example.com", "/until-close"))
    assert response.stdout == b"body until close\n"


def test_response_hop_by_hop_fields_are_removed(edge):
    with h.RawConn(edge.http_port) as conn:
        conn.send(b"GET /hop-by-hop HTTP/1.1\r\nHost: raw.example.com\r\n\r\n")
        head = conn.read_until(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 Fine"  # ingressd speaks HTTP/1.1 to its client
    names = {line.split(b":")[0].lower() for line in lines[1:] if line}
    assert not names & {b"connection", b"keep-alive", b"proxy-connection", b"trailer"}, head
    assert {b"x-kept", b"content-length", b"x-connection-like"} <= names, head


def test_response_head_split_across_reads(tmp_path):
    """An upstream that trickles its head byte by byte still gets its response through."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def serve():
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: 1\r\nContent-Length: 5\r\n\r\n":
                conn.sendall(bytes([byte]))
            conn.sendall(b"hello")
            conn.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    inst = launch(tmp_path, {
        "svc.yaml": m.service_with_endpoints("svc-slow", port),
        "ing.yaml": [m.ingress("ing-slow", [m.rule("slow.example.com", m.path("/", "svc-slow"))])],
    }, args=["--workers", "1"])
    try:
        response = inst.get("/", "slow.example.com")
        assert response.status == 200 and response.body == b"hello" and response.header("x-slow") == "1"
    finally:
        inst.stop()
        sock.close()


def test_interim_response_is_forwarded(edge):
    with h.RawConn(edge.http_port) as conn:
        conn.send(b"GET /early-hints HTTP/1.1\r\nHost: raw.example.com\r\n\r\n")
        data = b""
        while not data.endswith(b"ok"):
            chunk = conn.sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 103 ")
    assert b"Link: </style.css>; rel=preload" in data
    assert b"HTTP/1.1 200 OK" in data


@pytest.mark.parametrize("path", ["/huge-head", "/garbage"])
def test_hostile_upstream_gets_502(edge, path):
    response = edge.get(path, "raw.example.com")
    assert response.status == 502
    assert "svc-raw" in response.text


def test_client_half_close_still_gets_its_response(edge):
    sock = socket.create_connection(("127.0.0.1", edge.http_port), timeout=10)
    try:
        sock.sendall(b"GET /until-close HTTP/1.1\r\nHost: raw.example.com\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break  # ingressd closes after answering a client that half-closed
            data += chunk
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and b"body until close" in data
