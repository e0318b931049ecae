"""The demo's backend (examples/demo_backend.py) behind ingressd: JSON for requests, websocket echo.

The README's demo shows a websocket through ingressd with this backend, so it is tested as the demo
runs it: a real process, a real websockets client, ingressd between them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import REPO, free_port, launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    port = free_port()
    backend = subprocess.Popen([sys.executable, str(REPO / "examples" / "demo_backend.py"),
                                "--port", str(port), "--name", "echo"])
    inst = launch(tmp_path_factory.mktemp("demo"), {
        "svc.yaml": m.service_with_endpoints("echo", port),
        "ing.yaml": [m.ingress("plain", [m.rule("plain.localhost", m.path("/", "echo"))])],
    })
    try:
        wait_until(lambda: inst.get("/", "plain.localhost").status == 200, timeout=20)
        yield inst
    finally:
        inst.stop()
        backend.terminate()
        backend.wait(timeout=10)


def test_requests_get_what_the_backend_received(demo):
    r = demo.get("/some/path?x=1", "plain.localhost")
    assert r.json()["backend"] == "echo"
    assert r.json()["path"] == "/some/path?x=1"


@pytest.mark.parametrize("size", [5, 200, 70_000])  # the three websocket length encodings
def test_websocket_frames_are_echoed(demo, size):
    with h.ws_connect(demo.http_port, "plain.localhost", path="/") as ws:
        ws.send("t" * size)
        assert ws.recv(timeout=5) == "t" * size
        ws.send(b"\x00\xff" * size)
        assert ws.recv(timeout=5) == b"\x00\xff" * size


def test_websocket_ping_is_answered_and_close_is_echoed(demo):
    with h.ws_connect(demo.http_port, "plain.localhost", path="/") as ws:
        assert ws.ping(b"hi").wait(timeout=5)
        ws.send("still open")
        assert ws.recv(timeout=5) == "still open"
    assert ws.close_code == 1000


def test_the_demo_websocket_client_prints_the_echo(demo):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "demo_websocket.py"), "--port",
                           str(demo.http_port), "hello", "w" * 300], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["HTTP/1.1 101 Switching Protocols", "echo: hello", "echo: " + "w" * 300]


def test_the_demo_websocket_client_says_when_there_is_no_websocket(demo):
    done = subprocess.run([sys.executable, str(REPO / "examples" / "demo_websocket.py"), "--port",
                           str(demo.http_port), "--host", "unknown.localhost", "hi"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "no websocket: HTTP/1.1 404" in done.stderr
