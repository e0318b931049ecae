"""Greedy clients against the real program: the per-worker connection limit and its metric."""

from __future__ import annotations

import socket
import urllib.request

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
