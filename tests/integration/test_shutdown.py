"""worker-shutdown-timeout: on SIGTERM ingressd stops accepting, finishes the requests in flight,
closes idle keep-alive connections, keeps websockets until the timeout, then exits (one process
and --workers 2)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 3  # the test ConfigMap's worker-shutdown-timeout


def _configmap(timeout: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
            "data": {"worker-shutdown-timeout": timeout}}


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _writing(inst) -> float:
    status, text = inst.metrics_get("/metrics")
    for line in text.splitlines():
        if line.startswith('nginx_ingress_controller_nginx_process_connections{') and 'state="writing"' in line:
            return float(line.split()[-1])
    return 0.0


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains(tmp_path, backend, workers):
    inst = launch(tmp_path, {
        "cm.yaml": [_configmap(f"{TIMEOUT}s")],
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing", [m.rule("drain.example.com", m.path("/", "svc-a"))])],
    }, args=["--workers", str(workers)] if workers > 1 else [])
    with contextlib.ExitStack() as stack:
        stack.callback(inst.stop)
        # An idle keep-alive connection (one request answered), a websocket, and a slow request.
        idle = h.connection(inst.http_port)
        assert h.send(idle, "/echo", host="drain.example.com").status == 200
        ws = stack.enter_context(h.ws_connect(inst.http_port, "drain.example.com"))
        ws.send("before")
        assert ws.recv() == "before"
        result: dict = {}

        def slow() -> None:
            conn = h.connection(inst.http_port, timeout=30)
            conn.request("GET", "/slow?delay=1.5", headers={"Host": "drain.example.com"})
            response = conn.getresponse()
            result.update(status=response.status, body=response.read(), connection=response.getheader("Connection"))

        thread = threading.Thread(target=slow)
        thread.start()
        wait_until(lambda: _writing(inst) >= 2, timeout=10, message="the slow request and the websocket in flight")
        started = time.monotonic()
        inst.proc.terminate()
        # New connections are refused (the listening sockets are closed), the idle one is closed at once.
        wait_until(lambda: _refused(inst.http_port), timeout=5, message="new connections refused")
        idle.sock.setblocking(False)
        wait_until(lambda: _closed(idle.sock), timeout=5, message="idle keep-alive connection closed")
        thread.join(10)
        assert result["status"] == 200 and result["connection"] == "close", result
        # The websocket still works after the slow request is done, then is closed at the timeout.
        ws.send("during")
        assert ws.recv() == "during"
        wait_until(lambda: inst.proc.poll() is not None, timeout=TIMEOUT + 15, message="ingressd exits")
        elapsed = time.monotonic() - started
        assert TIMEOUT - 0.5 <= elapsed <= TIMEOUT + 8, elapsed
        assert inst.proc.returncode == 0
        with pytest.raises(Exception):  # the websocket was closed at the timeout
            ws.recv(timeout=5)
        print(f"exited {elapsed:.2f}s after SIGTERM (worker-shutdown-timeout {TIMEOUT}s)")
