"""HTTP/1.1 proxying: headers, keep-alive on both sides, bodies, HEAD, 100-continue, pipelining,
body size limits, malformed and stalled clients, streamed responses."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)

HOST = "proxy.example.com"


@pytest.fixture(scope="module")
def px(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("proxy"), {
        "svc.yaml": backend.services("a", "reuse", "f"),
        "ing.yaml": [
            m.ingress("ing-proxy", [m.rule(HOST, m.path("/", "svc-a"))]),
            m.ingress("ing-reuse", [m.rule("reuse.example.com", m.path("/", "svc-reuse"))]),
            m.ingress("ing-stale", [m.rule("stale.example.com", m.path("/", "svc-f"))]),
            m.ingress("ing-big", [m.rule("big.example.com", m.path("/", "svc-a"))],
                      annotations={"proxy-body-size": "2m"}),
            m.ingress("ing-lots", [m.rule("lots.example.com", m.path("/", "svc-a"))],
                      annotations={"proxy-body-size": "lots"}),
        ],
    })
    yield inst
    inst.stop()


# --- headers --------------------------------------------------------------------------------------


def test_headers_sent_upstream(px):
    r = px.get("/echo", HOST, headers=[
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Real-IP", "5.6.7.8"),
        ("X-Request-ID", "given-request-id-123"),
        ("Proxy", "http://evil.example:3128"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Custom", "kept"),
    ])
    assert r.status == 200, r
    up = r.json()["header_map"]
    assert up["host"] == HOST
    assert up["x-forwarded-for"] == "127.0.0.1"
    assert up["x-real-ip"] == "127.0.0.1"
    assert up["x-forwarded-host"] == HOST
    assert up["x-forwarded-port"] == str(px.http_port)
    assert up["x-forwarded-proto"] == "http"
    assert up["x-forwarded-scheme"] == "http"
    assert up["x-request-id"] == "given-request-id-123"
    assert up["x-custom"] == "kept"
    for hop in ("x-hop", "keep-alive", "te", "proxy-connection", "proxy", "upgrade"):
        assert hop not in up, (hop, up)
    assert "x-hop" not in up.get("connection", "").lower()


def test_request_id_generated_when_absent(px):
    ids = [px.get("/echo", HOST).json()["header_map"].get("x-request-id", "") for _ in range(2)]
    for rid in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", rid), ids
    assert ids[0] != ids[1]


# --- keep-alive -----------------------------------------------------------------------------------


def test_client_keep_alive_serves_several_requests(px):
    with h.RawConn(px.http_port) as conn:
        for i in range(4):
            conn.send(f"GET /echo?i={i} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            r = conn.read_response()
            assert r.status == 200
            assert r.json()["query"] == f"i={i}"
            assert "close" not in (r.header("connection") or "").lower()
        assert not conn.eof


def test_upstream_connections_are_reused(px):
    # Successive requests of one client connection: one upstream connection.
    conn = h.connection(px.http_port)
    try:
        answers = [h.send(conn, "/echo", "reuse.example.com").json() for _ in range(5)]
    finally:
        conn.close()
    assert len({a["conn_id"] for a in answers}) == 1, answers
    # Fresh client connections take pooled upstream connections too. ingressd may run one data-plane
    # process per CPU, each with its own pool, so allow one upstream connection per process.
    ids = [px.get("/echo", "reuse.example.com").json()["conn_id"] for _ in range(12)]
    assert len(set(ids)) <= min(os.cpu_count() or 1, 4), ids


# --- request and response bodies ------------------------------------------------------------------


def test_chunked_request_body_raw(px):
    chunks = [os.urandom(n) for n in (1, 1000, 65536, 100_000, 7)]
    body = b"".join(chunks)
    wire = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    with h.RawConn(px.http_port) as conn:
        conn.send(f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + wire)
        r = conn.read_response()
        assert r.status == 200, r
        assert r.json()["body_len"] == len(body)
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()
        # The connection stays usable after a chunked body.
        conn.send(f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert conn.read_response().status == 200


def test_chunked_request_body_http_client(px):
    parts = [b"x" * 10_000, b"y" * 20_000, b"z"]
    r = px.get("/upload", HOST, method="PUT", body=iter(parts), encode_chunked=True)
    assert r.status == 200
    assert r.json()["body_len"] == 30_001
    assert r.json()["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_head_has_no_body_and_keeps_connection(px):
    with h.RawConn(px.http_port) as conn:
        conn.send(f"HEAD /download?size=1000 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        r = conn.read_response("HEAD")
        assert r.status == 200
        assert r.header("content-length") == "1000"
        conn.send(f"GET /echo?after=head HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        r2 = conn.read_response()
        assert r2.status == 200, r2
        assert r2.json()["method"] == "GET"
        assert r2.json()["query"] == "after=head"


def test_expect_100_continue(px):
    with h.RawConn(px.http_port) as conn:
        conn.send(f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 11\r\n"
                  "Expect: 100-continue\r\n\r\n".encode())
        interim = conn.read_response()  # must come before we send the body
        assert interim.status == 100
        conn.send(b"hello world")
        r = conn.read_response()
        assert r.status == 200, r
        assert r.json()["body_len"] == 11
        assert r.json()["sha256"] == hashlib.sha256(b"hello world").hexdigest()


def test_pipelined_requests_answered_in_order(px):
    with h.RawConn(px.http_port) as conn:
        conn.send(
            f"GET /slow?delay=0.3&i=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
            f"POST /echo?i=2 HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n\r\nabc"
            f"GET /echo?i=3 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        )
        got = [conn.read_response() for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 200]
    assert [r.json()["query"] for r in got] == ["delay=0.3&i=1", "i=2", "i=3"]
    assert got[1].json()["body_len"] == 3


def test_chunked_response_of_unknown_length_is_streamed(px, backend):
    token = uuid.uuid4().hex
    with h.RawConn(px.http_port, timeout=10) as conn:
        conn.send(f"GET /stream?chunks=5&hold={token} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        # The backend sends chunk 0 and then waits for the release: the client must see it first.
        conn.peek_until(b"chunk 0\n")
        assert b"chunk 4" not in conn.buf
        h.request(backend.port("a"), f"/release?token={token}", "backend")
        r = conn.read_response()
    assert r.status == 200
    assert r.body == b"".join(f"chunk {i}\n".encode() for i in range(5))


def test_slow_chunked_response(px):
    start = time.monotonic()
    r = px.get("/stream?chunks=4&delay=0.1", HOST)
    assert r.status == 200
    assert r.body.count(b"chunk") == 4
    assert time.monotonic() - start < 5


# --- body size ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def body_15m(tmp_path_factory):
    path = tmp_path_factory.mktemp("bodies") / "1.5m.bin"
    path.write_bytes(os.urandom(1_500_000))
    return path


@pytest.mark.parametrize("extra", [
    [],                                      # curl's default: Expect: 100-continue
    ["-H", "Expect:"],                       # body sent at once
    ["-H", "Expect:", "-H", "Transfer-Encoding: chunked"],  # no Content-Length
], ids=["expect", "no-expect", "chunked"])
def test_default_body_limit_1m_gives_413(px, body_15m, extra):
    status = h.curl_status("--data-binary", f"@{body_15m}", "-H", f"Host: {HOST}", *extra,
                           f"http://127.0.0.1:{px.http_port}/upload")
    assert status == 413


def test_body_under_default_limit_passes(px):
    body = os.urandom(1_000_000)
    r = px.get("/upload", HOST, method="POST", body=body)
    assert r.status == 200
    assert r.json()["body_len"] == 1_000_000


def test_body_size_annotation_admits_larger_body(px, body_15m):
    proc = h.curl("--data-binary", f"@{body_15m}", "-H", "Host: big.example.com",
                  f"http://127.0.0.1:{px.http_port}/upload", "-w", "\n%{http_code}")
    body, _, status = proc.stdout.rpartition(b"\n")
    assert status == b"200", proc
    assert json.loads(body)["body_len"] == 1_500_000
    assert json.loads(body)["sha256"] == hashlib.sha256(body_15m.read_bytes()).hexdigest()


def test_bad_body_size_annotation_falls_back_to_default(px, body_15m):
    assert px.get("/echo", "lots.example.com").status == 200
    status = h.curl_status("--data-binary", f"@{body_15m}", "-H", "Host: lots.example.com",
                           f"http://127.0.0.1:{px.http_port}/upload")
    assert status == 413
    # Other routes are unaffected.
    assert px.get("/echo", HOST).status == 200


# --- bad clients ----------------------------------------------------------------------------------


def test_malformed_request_gets_400_and_close(px):
    """One end-to-end case; the request-parsing cases are in-process (tests/unit/test_dataplane_protocol.py)."""
    with h.RawConn(px.http_port) as conn:
        conn.send(b"THIS IS NOT HTTP\r\n\r\n")
        r = conn.read_response()
        assert r.status == 400
        assert conn.closed_by_peer(5)
    assert px.get("/echo", HOST).status == 200


def test_stalled_clients_do_not_block_others(px):
    stalled = []
    try:
        for _ in range(5):
            conn = h.RawConn(px.http_port)
            conn.send(f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\nX-Partial: ".encode())
            stalled.append(conn)
        # Sequential and concurrent requests all succeed while those heads are incomplete.
        for _ in range(5):
            start = time.monotonic()
            assert px.get("/echo", HOST, timeout=5).status == 200
            assert time.monotonic() - start < 2
        results: list[int] = []

        def worker():
            results.append(px.get("/echo", HOST, timeout=5).status)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [200] * 8
    finally:
        for conn in stalled:
            conn.close()


def test_connection_close_from_client_is_honoured(px):
    with h.RawConn(px.http_port) as conn:
        conn.send(f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        r = conn.read_response()
        assert r.status == 200
        assert conn.closed_by_peer(5)


def test_http10_request(px):
    with h.RawConn(px.http_port) as conn:
        conn.send(f"GET /echo HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        r = conn.read_response()
        assert r.status == 200
        assert r.json()["path"] == "/echo"


def test_half_closed_client_socket_does_not_crash(px):
    sock = socket.create_connection(("127.0.0.1", px.http_port), 5)
    sock.sendall(f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n".encode())
    sock.close()
    assert px.get("/echo", HOST).status == 200
    assert px.alive()


def test_upstream_closing_idle_connection_does_not_fail_next_request(px):
    conn = h.connection(px.http_port)
    try:
        for i in range(20):
            assert h.send(conn, f"/closeafter?i={i}", "stale.example.com").status == 200
            r = h.send(conn, f"/echo?i={i}", "stale.example.com")
            assert r.status == 200, (i, r)
            assert r.json()["query"] == f"i={i}"
    finally:
        conn.close()


def test_client_aborting_download_leaves_no_trace(px):
    for _ in range(3):
        with h.RawConn(px.http_port) as conn:
            conn.send(f"GET /download?size={50 * 1024 * 1024} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            conn.peek_until(b"\r\n\r\n")
            conn.read_exactly(len(conn.buf) + 1)
    # The upstream connections of the aborted downloads must not be reused mid-body.
    for i in range(10):
        r = px.get(f"/echo?i={i}", HOST)
        assert r.status == 200, r
        assert r.json()["query"] == f"i={i}"
    assert px.alive()


def test_client_aborting_upload_leaves_no_trace(px):
    for _ in range(3):
        with h.RawConn(px.http_port) as conn:
            conn.send(f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 900000\r\n\r\n".encode()
                      + b"x" * 300_000)
    for i in range(10):
        r = px.get(f"/echo?i={i}", HOST, method="POST", body=b"abc")
        assert r.status == 200, r
        assert r.json()["body_len"] == 3
    assert px.alive()


def test_many_concurrent_keep_alive_clients(px):
    errors: list = []

    def client(n):
        conn = h.connection(px.http_port, timeout=10)
        try:
            for i in range(10):
                r = h.send(conn, f"/echo?c={n}&i={i}", HOST)
                if r.status != 200 or r.json()["query"] != f"c={n}&i={i}":
                    errors.append((n, i, r))
        except Exception as exc:  # noqa: BLE001
            errors.append((n, exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors[:3]
