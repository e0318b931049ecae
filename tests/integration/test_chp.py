"""``ingressd chp``: configurable-http-proxy's command line and REST API, with real clients
(http.client for the API, curl and the websockets package through the proxy)."""

from __future__ import annotations

import json
import http.client
import subprocess
import sys
import time

import pytest

from support import procs
from support.client import curl, ws_connect
from support.ingressd import REPO, free_port, subprocess_env
from support.wait import wait_until

TOKEN = "t0ken"


class Chp:
    """``python -m ingressd chp`` on free loopback ports."""

    def __init__(self, workdir, *args: str, token: str | None = TOKEN):
        self.port, self.api_port = free_port(), free_port()
        env = subprocess_env()
        env.pop("CONFIGPROXY_AUTH_TOKEN", None)
        if token:
            env["CONFIGPROXY_AUTH_TOKEN"] = token
        self.log = open(workdir / "chp.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingressd", "chp", "--ip", "127.0.0.1", "--port", str(self.port),
             "--api-ip", "127.0.0.1", "--api-port", str(self.api_port), *args],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.api("GET", "/api/routes")[0] == 200, timeout=20, message="the chp API")

    def api(self, method: str, path: str, body=None, token: str | None = TOKEN):
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10)
        headers = {"Authorization": f"token {token}"} if token else {}
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        result = response.status, response.read(), response.getheader("Content-Type")
        conn.close()
        return result

    def routes(self, query: str = "") -> dict:
        status, body, _ = self.api("GET", "/api/routes" + query)
        assert status == 200
        return json.loads(body)

    def stop(self):
        procs.stop(self.proc)
        self.log.close()


@pytest.fixture
def chp(tmp_path):
    started = []

    def start(*args, **kwargs):
        proxy = Chp(tmp_path, *args, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, dict | bytes]:
    proc = curl("-s", "-H", f"Host: {host}", "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}")
    body, _, status = proc.stdout.rpartition(b"\n")
    try:
        return int(status), json.loads(body)
    except ValueError:
        return int(status), body


def test_routes_added_served_and_removed(chp, backend):
    proxy = chp()
    a, b = backend.ports["a"], backend.ports["b"]
    assert get(proxy.port, "/anything")[0] == 404  # no route, no default target
    assert proxy.api("POST", "/api/routes/", {"target": f"http://127.0.0.1:{a}"})[:2] == (201, b"")
    assert proxy.api("POST", "/api/routes/user/alice/",
                     {"target": f"http://127.0.0.1:{b}", "user": "alice"})[:2] == (201, b"")
    status, echo = get(proxy.port, "/user/alice/tree?x=1")
    assert status == 200 and echo["name"] == "b" and echo["path"] == "/user/alice/tree"  # prefix kept
    assert {k.lower(): v for k, v in echo["headers"]}.get("x-forwarded-for") == "127.0.0.1"
    assert get(proxy.port, "/user/alicex")[1]["name"] == "a"
    assert get(proxy.port, "/hub/login")[1]["name"] == "a"
    routes = proxy.routes()
    assert set(routes) == {"/", "/user/alice"} and routes["/user/alice"]["user"] == "alice"
    assert proxy.api("DELETE", "/api/routes/user/alice")[:2] == (204, b"")
    assert get(proxy.port, "/user/alice/tree")[1]["name"] == "a"


def test_api_errors_and_token(chp):
    proxy = chp()
    assert proxy.api("GET", "/api/routes", token=None)[:2] == (403, b"")
    assert proxy.api("GET", "/api/routes", token="nope")[:2] == (403, b"")
    assert proxy.api("GET", "/api/routes/missing")[:2] == (404, b"")
    assert proxy.api("DELETE", "/api/routes/missing")[:2] == (404, b"")
    assert proxy.api("POST", "/api/routes/x", b"{")[0] == 400
    assert proxy.api("POST", "/api/routes/x", {"nope": 1})[:2] == (400, b"Must specify 'target' as string")
    assert proxy.api("GET", "/api/routes?inactive_since=x")[:2] == (400, b"Invalid datestamp 'x' must be ISO8601.")
    assert proxy.api("GET", "/api/routes")[2] == "application/json"


def test_last_activity_moves_with_requests_and_websocket_traffic(chp, backend):
    proxy = chp()
    proxy.api("POST", "/api/routes/user/a", {"target": f"http://127.0.0.1:{backend.ports['ws']}"})
    added = proxy.routes()["/user/a"]["last_activity"]
    assert added.endswith("Z") and len(added) == len("2026-01-01T00:00:00.000Z")
    time.sleep(0.01)  # last_activity has millisecond resolution: make the next stamp differ
    assert get(proxy.port, "/user/a/x")[0] == 200
    after_request = proxy.routes()["/user/a"]["last_activity"]
    assert after_request > added
    assert proxy.routes("?inactive_since=" + after_request) == {}
    with ws_connect(proxy.port, "127.0.0.1", "/user/a/ws") as ws:
        opened = wait_until(lambda: proxy.routes()["/user/a"]["last_activity"] > after_request and
                            proxy.routes()["/user/a"]["last_activity"])
        time.sleep(1.2)  # more than the sampling interval: idle tunnel, no new activity
        idle = proxy.routes()["/user/a"]["last_activity"]
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        wait_until(lambda: proxy.routes()["/user/a"]["last_activity"] > idle, timeout=5,
                   message="websocket traffic as activity")
    assert opened <= idle


def test_default_target_and_host_routing(chp, backend):
    proxy = chp("--default-target", f"http://127.0.0.1:{backend.ports['a']}", "--host-routing")
    proxy.api("POST", "/api/routes/hub.example.org/user/x", {"target": f"http://127.0.0.1:{backend.ports['b']}"})
    assert proxy.routes()["/hub.example.org/user/x"]["host"] == "hub.example.org"
    assert get(proxy.port, "/user/x/y", host="hub.example.org")[1]["name"] == "b"
    assert get(proxy.port, "/user/x/y", host="other.org")[1]["name"] == "a"


def test_unimplemented_flags_are_refused_by_name():
    proc = subprocess.run([sys.executable, "-m", "ingressd", "chp", "--custom-header", "a:b", "--redirect-to=443"],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--custom-header, --redirect-to" in proc.stderr
