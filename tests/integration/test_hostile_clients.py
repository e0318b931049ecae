"""Greedy clients against the real program: the per-worker connection limit and its metric; the
PROXY protocol on both ports (before TLS on the HTTPS one)."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request

from support import certs

import pytest

from support import manifests as m
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(60)


def test_connections_over_the_limit_are_closed_and_counted(tmp_path, backend):
    inst = launch(tmp_path, {
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing-limit", [m.rule("limit.example.com", m.path("/", "svc-a"))])],
    }, args=["--workers", "1", "--max-worker-connections", "3"])
    held = []
    try:
        for _ in range(3):
            held.append(socket.create_connection(("127.0.0.1", inst.http_port), timeout=5))
            held[-1].sendall(b"GET / HTTP/1.1\r\nHo")  # slow clients, holding their connections
        wait_until(lambda: _metric(inst, 'nginx_ingress_controller_nginx_process_connections{') is not None)
        extra = socket.create_connection(("127.0.0.1", inst.http_port), timeout=5)
        try:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: limit.example.com\r\n\r\n")
            assert extra.recv(100) == b""  # closed without an answer
        except ConnectionResetError:
            pass  # closed by a reset: the same
        finally:
            extra.close()
        assert _metric(inst, 'ingressd_connections_refused_total{reason="limit"}') == 1.0
        for sock in held:
            sock.close()
        # with the slow clients gone, requests are served again
        def served():
            with socket.create_connection(("127.0.0.1", inst.http_port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: limit.example.com\r\nConnection: close\r\n\r\n")
                return sock.recv(100).startswith(b"HTTP/1.1 200 ")
        wait_until(served)
    finally:
        for sock in held:
            sock.close()
        inst.stop()


def _metric(inst, prefix: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{inst.metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def _response(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            data.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]):
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def test_proxy_protocol_on_both_ports(tmp_path, backend, ca):
    host = "proxied.example.com"
    inst = launch(tmp_path, {
        "svc.yaml": backend.services("a"),
        "secret.yaml": [m.tls_secret("proxied-tls", *certs.issue(ca, host))],
        "ing.yaml": [m.ingress("ing-proxied", [m.rule(host, m.path("/", "svc-a"))], tls=[([host], "proxied-tls")])],
    }, args=["--workers", "1", "--use-proxy-protocol", "--proxy-real-ip-cidr", "127.0.0.0/8"])
    request = f"GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    try:
        # HTTP: a v1 header, then the request
        with socket.create_connection(("127.0.0.1", inst.http_port), timeout=10) as sock:
            sock.sendall(b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 80\r\n")
            sock.sendall(request)
            raw = _response(sock)
        assert raw.startswith(b"HTTP/1.1 308 "), raw[:100]  # the host has TLS: redirected, answered
        # HTTPS: the header before the TLS handshake, then TLS with SNI
        raw_sock = socket.create_connection(("127.0.0.1", inst.https_port), timeout=10)
        raw_sock.sendall(b"PROXY TCP4 198.51.100.8 10.0.0.1 40000 443\r\n")
        with certs.client_context(ca).wrap_socket(raw_sock, server_hostname=host) as tls:
            tls.sendall(request)
            raw = _response(tls)
        assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
        echoed = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        headers = {k.lower(): v for k, v in echoed["headers"]}
        assert headers["x-forwarded-for"] == headers["x-real-ip"] == "198.51.100.8"
        assert headers["x-forwarded-proto"] == "https"
        # without a PROXY header, HTTPS is closed (the ClientHello is not a header)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with certs.handshake(inst.https_port, host, certs.client_context(ca)) as tls:
                tls.sendall(request)
                assert tls.recv(100) == b""
                raise ConnectionError("closed")
    finally:
        inst.stop()
