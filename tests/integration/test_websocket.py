"""Websockets through ingressd: HTTP and HTTPS, idle past the read timeout, across configuration changes."""

from __future__ import annotations

import time

import pytest

from support import certs
from support import client as h
from support import manifests as m
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)


def ws_manifests(backend, ca):
    cert, key = certs.issue(ca, "wss.example.com")
    return {
        "svc.yaml": backend.services("ws", "a"),
        "secret.yaml": [m.tls_secret("wss-tls", cert, key)],
        "ing.yaml": [
            m.ingress("ing-ws", [m.rule("ws.example.com", m.path("/", "svc-ws"))],
                      annotations={"proxy-read-timeout": "1"}),
            m.ingress("ing-wss", [m.rule("wss.example.com", m.path("/", "svc-ws"))],
                      tls=[(["wss.example.com"], "wss-tls")], annotations={"proxy-read-timeout": "1"}),
        ],
    }


@pytest.fixture(scope="module")
def wsd(tmp_path_factory, backend, ca):
    inst = launch(tmp_path_factory.mktemp("ws"), ws_manifests(backend, ca))
    yield inst
    inst.stop()


def echo(ws, text: str) -> None:
    ws.send(text)
    assert ws.recv(timeout=5) == text


def test_websocket_echo_over_http(wsd):
    with h.ws_connect(wsd.http_port, "ws.example.com") as ws:
        for i in range(5):
            echo(ws, f"hello {i}")
        ws.send("whoami")
        assert ws.recv(timeout=5) == "ws"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=5) == b"\x00\x01binary"


def test_websocket_echo_over_https(wsd, ca):
    with h.ws_connect(wsd.https_port, "wss.example.com", tls=certs.client_context(ca)) as ws:
        echo(ws, "over tls")
        big = "x" * 200_000
        ws.send(big)
        assert ws.recv(timeout=10) == big


def test_websocket_upgrade_headers_reach_upstream_only_when_asked(wsd):
    r = wsd.get("/echo", "ws.example.com")
    assert r.status == 200
    assert "upgrade" not in r.json()["header_map"]


def test_websocket_outlives_proxy_read_timeout(wsd):
    with h.ws_connect(wsd.http_port, "ws.example.com") as ws:
        echo(ws, "before idle")
        time.sleep(3)  # idle three times the route's proxy-read-timeout: the tunnel must stay open
        echo(ws, "after idle")


def test_websocket_survives_configuration_changes(ingressd_factory, backend, ca):
    inst = ingressd_factory(ws_manifests(backend, ca))
    with h.ws_connect(inst.http_port, "ws.example.com") as ws, \
            h.ws_connect(inst.https_port, "wss.example.com", tls=certs.client_context(ca)) as wss:
        echo(ws, "one")
        echo(wss, "one")
        # Another Ingress appears.
        inst.dir.write("new.yaml", [m.ingress("ing-new", [m.rule("new.example.com", m.path("/", "svc-a"))])])
        wait_until(lambda: inst.get("/", "new.example.com").status == 200, 5, message="new Ingress routes")
        echo(ws, "two")
        echo(wss, "two")
        # The websocket's own Ingress changes.
        docs = ws_manifests(backend, ca)
        docs["ing.yaml"][0]["spec"]["rules"][0]["http"]["paths"].append(m.path("/added", "svc-a"))
        inst.dir.write("ing.yaml", docs["ing.yaml"])
        wait_until(lambda: inst.get("/added", "ws.example.com").name == "a", 5, message="modified Ingress")
        echo(ws, "three")
        echo(wss, "three")
