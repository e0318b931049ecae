"""limit-connections (+ limit-whitelist): concurrent connections with a request in progress, per client address."""

from __future__ import annotations

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    controller = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                  "data": {"limit-conn-status-code": "429"}}
    inst = launch(tmp_path_factory.mktemp("limitconn"), {
        "svc.yaml": backend.services("a", "ws"),
        "cm.yaml": [controller],
        "ing.yaml": [
            m.ingress("limited", [m.rule("limited.example.com", m.path("/", "svc-a"))],
                      annotations={"limit-connections": "2"}),
            m.ingress("exempt", [m.rule("exempt.example.com", m.path("/", "svc-a"))],
                      annotations={"limit-connections": "1", "limit-whitelist": "127.0.0.0/8"}),
            m.ingress("free", [m.rule("free.example.com", m.path("/", "svc-a"))]),
            m.ingress("ws", [m.rule("ws.example.com", m.path("/", "svc-ws"))], annotations={"limit-connections": "1"}),
        ],
    }, args=["--workers", "1"])
    yield inst
    inst.stop()


def _hold(proxy, host: str, token: str) -> h.RawConn:
    conn = h.RawConn(proxy.http_port)
    conn.send(f"GET /stream?chunks=2&hold={token} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    conn.peek_until(b"chunk 0\n")  # the request is in progress (its response held by the backend)
    return conn


def _release(proxy, token: str) -> None:
    assert proxy.get(f"/release?token={token}", "free.example.com").status == 200


def test_connections_over_the_limit_are_refused(proxy):
    held = [_hold(proxy, "limited.example.com", f"lc{i}") for i in range(2)]
    try:
        r = proxy.get("/", "limited.example.com")
        assert r.status == 429, r  # limit-conn-status-code
        assert proxy.get("/", "free.example.com").status == 200  # other Ingresses are not limited
    finally:
        for i, conn in enumerate(held):
            _release(proxy, f"lc{i}")
            assert conn.read_response().status == 200
            conn.close()
    assert proxy.get("/", "limited.example.com").status == 200


def test_idle_keep_alive_connections_do_not_count(proxy):
    idle = [h.connection(proxy.http_port) for _ in range(3)]
    try:
        for conn in idle:
            assert h.send(conn, "/", "limited.example.com").status == 200  # then idle, kept open
        assert proxy.get("/", "limited.example.com").status == 200
    finally:
        for conn in idle:
            conn.close()


def test_limit_whitelist_exempts(proxy):
    held = _hold(proxy, "exempt.example.com", "ex0")
    try:
        assert proxy.get("/", "exempt.example.com").status == 200
    finally:
        _release(proxy, "ex0")
        held.read_response()
        held.close()


def test_websocket_counts_until_closed(proxy):
    with h.ws_connect(proxy.http_port, "ws.example.com") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        assert proxy.get("/ws", "ws.example.com").status == 429  # the open websocket holds the one slot
    wait_until(lambda: proxy.get("/ws", "ws.example.com").status != 429, timeout=10,
               message="slot released when the websocket closed")
