"""Cleartext HTTP/2 with prior knowledge on the HTTP port (``serve --h2c``, off by default):
``curl --http2-prior-knowledge`` through ingressd, HTTP/1.1 on the same port, and the preface
refused when the option is off."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from support import certs
from support import client as h
from support import manifests as m
from support.ingressd import launch, sample_value

pytestmark = pytest.mark.timeout(120)

HOST = "h2c.example.com"
TLS_HOST = "secure.example.com"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def manifests(backend, ca):
    cert = certs.issue(ca, TLS_HOST)
    return {
        "svc.yaml": backend.services("a", "b"),
        "secrets.yaml": [m.tls_secret("secure-tls", *cert)],
        "ing.yaml": [
            m.ingress("ing-h2c", [m.rule(HOST, m.path("/", "svc-a"))]),
            m.ingress("ing-secure", [m.rule(TLS_HOST, m.path("/", "svc-b"))], tls=[([TLS_HOST], "secure-tls")]),
        ],
    }


@pytest.fixture(scope="module")
def h2c(tmp_path_factory, backend, ca):
    inst = launch(tmp_path_factory.mktemp("h2c"), manifests(backend, ca), args=["--h2c", "--workers", "1"])
    yield inst
    inst.stop()


def curl_h2c(inst, path, *args, host=HOST, input=None):
    return h.curl("--http2-prior-knowledge", "--resolve", inst.resolve(host), *args, inst.url(host, path),
                  input=input)


def test_get(h2c):
    proc = curl_h2c(h2c, "/echo?x=1", "-D", "-", "-H", "X-Custom: kept")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), head
    assert b"strict-transport-security" not in head.lower()  # cleartext: no HSTS
    up = json.loads(body)["header_map"]
    assert up["host"] == f"{HOST}:{h2c.http_port}"
    assert up["x-forwarded-proto"] == "http"
    assert up["x-custom"] == "kept"


def test_post(h2c):
    data = bytes(range(256)) * 800
    proc = curl_h2c(h2c, "/echo", "--data-binary", "@-", "-w", "\n%{http_version}", input=data)
    assert proc.returncode == 0, proc.stderr
    body, _, version = proc.stdout.rpartition(b"\n")
    assert version == b"2"
    echoed = json.loads(body)
    assert echoed["method"] == "POST"
    assert echoed["body_len"] == len(data)
    assert echoed["sha256"] == hashlib.sha256(data).hexdigest()


def test_redirect_to_https(h2c):
    proc = curl_h2c(h2c, "/x?y=1", "-D", "-", "-o", "/dev/null", host=TLS_HOST)
    assert proc.stdout.startswith(b"HTTP/2 308"), proc.stdout
    assert f"location: https://{TLS_HOST}:{h2c.https_port}/x?y=1".encode() in proc.stdout.lower(), proc.stdout


def test_default_backend_404(h2c):
    proc = curl_h2c(h2c, "/", "-D", "-", "-o", "/dev/null", host="nothing.example.com")
    assert proc.stdout.startswith(b"HTTP/2 404"), proc.stdout


def test_http11_on_the_same_port(h2c):
    proc = h.curl("--http1.1", "--resolve", h2c.resolve(HOST), "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                  h2c.url(HOST, "/echo"))
    assert proc.stdout == b"1.1 200", proc.stdout
    # a method sharing the preface's first letter, sent a byte at a time
    with socket.create_connection(("127.0.0.1", h2c.http_port), timeout=10) as s:
        request = f"POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode()
        for i in range(len(request)):
            s.sendall(request[i:i + 1])
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_curl_upgrade_h2c_stays_http11(h2c):
    """``curl --http2`` on cleartext asks ``Upgrade: h2c``: not honoured (as nginx), answered in HTTP/1.1."""
    proc = h.curl("--http2", "--resolve", h2c.resolve(HOST), "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                  h2c.url(HOST, "/echo"))
    assert proc.stdout == b"1.1 200", proc.stdout


def test_preface_refused_without_the_option(tmp_path, backend, ca):
    inst = launch(tmp_path, manifests(backend, ca), args=["--workers", "1"])
    try:
        with socket.create_connection(("127.0.0.1", inst.http_port), timeout=10) as s:
            s.sendall(PREFACE)
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"Connection: close" in answer
        proc = h.curl("--http2-prior-knowledge", "--resolve", inst.resolve(HOST), inst.url(HOST, "/echo"))
        assert proc.returncode != 0
    finally:
        inst.stop()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not data:
            break
        out += data
    return out


def test_raw_frames_small_response_is_headers_and_one_data(h2c):
    """h2c with a raw client, which checks every header ingressd sends (h2 validates inbound headers):
    a small response is one HEADERS and one DATA frame carrying END_STREAM (no empty DATA after it)."""
    import h2.events

    from support.h2raw import RawH2

    client = RawH2(h2c.http_port, HOST)
    client.conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", HOST.encode()),
                                 (b":path", b"/status?code=200")], end_stream=True)
    client.send()
    ended = client.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 1)
    assert ended is not None
    stream = [e for e in client.events if getattr(e, "stream_id", None) == 1]
    data = [e for e in stream if isinstance(e, h2.events.DataReceived)]
    assert len(data) == 1 and data[0].data and data[0].stream_ended is not None, stream
    head = [e for e in stream if isinstance(e, h2.events.ResponseReceived)][0]
    assert dict(head.headers)[b":status"] == b"200"
    client.close()


def test_shutdown_lets_http2_streams_finish(tmp_path, backend, ca):
    """SIGTERM (worker-shutdown-timeout): GOAWAY NO_ERROR, a request in flight on an HTTP/2 connection
    still gets its answer, then ingressd exits (HTTP/2 connections used to be cut at once)."""
    import signal
    import subprocess

    from support.wait import wait_until

    inst = launch(tmp_path, manifests(backend, ca), args=["--h2c", "--workers", "1"])
    try:
        curl = subprocess.Popen(["curl", "--noproxy", "*", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                 "-w", "%{http_code} %{http_version}", "--resolve", inst.resolve(HOST),
                                 inst.url(HOST, "/slow?delay=2")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # the request is in flight: counted as writing (the backend answers after 2 s)
        wait_until(lambda: sample_value(inst.metrics(), "nginx_ingress_controller_nginx_process_connections",
                                        state="writing") == 1, 10, message="the request in flight")
        inst.proc.send_signal(signal.SIGTERM)
        out, err = curl.communicate(timeout=30)
        assert out == b"200 2", (out, err)
        assert inst.proc.wait(30) == 0
    finally:
        inst.stop()
