"""Real JupyterHub as the client of ingressd's proxy API, in both modes: the Hub starts ``ingressd chp``
as its configurable-http-proxy (``c.ConfigurableHTTPProxy.command``), or talks to an ``ingressd serve
--proxy-api`` with two workers that an Ingress hands its host to (``should_start = False``). The Hub
adds its routes, a user logs in through the proxy, a single-user jupyter_server is spawned and
reached under /user/NAME/ (HTTP and websockets: the server's event stream and a kernel's channels,
idle for over 60 s and still working), the proxy's last_activity reaches the Hub, stopping the
server removes its route, and the Hub's periodic route check (every ``last_activity_interval``)
never finds anything to repair.

Nothing is mocked: JupyterHub's DummyAuthenticator and SimpleLocalProcessSpawner are real
JupyterHub classes, the single-user server is ``jupyterhub-singleuser`` (jupyter_server) with a
real ipykernel.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from support import procs
from support import manifests as m
from support.ingressd import REPO, free_port, launch, subprocess_env
from support.wait import wait_until

pytest.importorskip("jupyterhub")
pytest.importorskip("jupyter_server")
pytest.importorskip("ipykernel")

PROXY_TOKEN = "proxy-token-for-tests"
SERVICE_TOKEN = "service-token-for-tests"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Hub:
    """JupyterHub with ingressd as its proxy: ``mode`` "chp" (the Hub starts ``ingressd chp`` as its
    configurable-http-proxy) or "serve" (``ingressd serve --proxy-api`` started beforehand with an
    Ingress handing its routes to the Hub; ``c.ConfigurableHTTPProxy.should_start = False``)."""

    def __init__(self, workdir, mode: str = "chp"):
        self.dir = workdir
        self.mode = mode
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.ingressd = None
        proxy_config = f"""c.ConfigurableHTTPProxy.command = [sys.executable, "-m", "ingressd", "chp", "--access-log"]"""
        if mode == "serve":
            self.ingressd = launch(workdir / "ingressd", {"hub.yaml": [
                *m.service_with_endpoints("hub", self.hub_port),
                m.ingress("jupyterhub", [m.rule(None, m.path("/", "hub"))],
                          annotations={"ingressd.io/proxy-api": "true"}),
            ]}, args=["--proxy-api", f"127.0.0.1:{self.api_port}", "--workers", "2"])
            self.port = self.ingressd.http_port
            proxy_config = "c.ConfigurableHTTPProxy.should_start = False"
        config = workdir / "jupyterhub_config.py"
        config.write_text(f"""
import sys
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.pid_file = "{workdir}/jupyterhub.pid"
c.JupyterHub.last_activity_interval = 2
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/tree"
c.Spawner.args = ["--allow-root"]  # test machines run as root
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
{proxy_config}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.ConfigurableHTTPProxy.auth_token = "{PROXY_TOKEN}"
c.JupyterHub.services = [{{"name": "tester", "api_token": "{SERVICE_TOKEN}"}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
                            "scopes": ["admin:users", "admin:servers", "access:servers", "read:users:activity"]}}]
""")
        env = subprocess_env()
        self.log = open(workdir / "jupyterhub.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=workdir, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hub_api(self, method: str, path: str, body=None):
        request = urllib.request.Request(self.url("/hub/api" + path), method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"token {SERVICE_TOKEN}"})
        with urllib.request.urlopen(request, timeout=20) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None

    def proxy_routes(self) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/api/routes",
                                         headers={"Authorization": f"token {PROXY_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def text(self) -> str:
        return (self.dir / "jupyterhub.log").read_text(errors="replace")

    def stop(self):
        proxy_pid = None
        pid_file = self.dir / "jupyterhub-proxy.pid"
        if pid_file.exists():
            proxy_pid = int(pid_file.read_text().strip() or 0) or None
        procs.stop(self.proc, timeout=20)
        self.log.close()
        if proxy_pid:  # the Hub stops the proxy it started; make sure of it by its pid
            try:
                os.kill(proxy_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.ingressd is not None:
            self.ingressd.stop()


@pytest.fixture(params=["chp", "serve"])
def hub(request, tmp_path, monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", PROXY_TOKEN)  # for ingressd serve --proxy-api
    started = Hub(tmp_path, request.param)
    yield started
    started.stop()


def login(hub: Hub, name: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(hub.url("/hub/login"), timeout=20).read().decode()
    xsrf = re.search(r'name="_xsrf"\s+value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": name, "password": "any", "_xsrf": xsrf}).encode()
    try:
        opener.open(hub.url("/hub/login?next="), data=form, timeout=20)
    except urllib.error.HTTPError as error:  # the redirect after a successful login
        assert error.code == 302, error.read()
    assert any(cookie.name.startswith("jupyterhub-session") or cookie.name == "jupyterhub-hub-login"
               for cookie in jar), list(jar)
    return opener


def test_jupyterhub_through_ingressd(hub):
    # The Hub added its own route to ingressd (which it started, in chp mode); the login page comes through it.
    wait_until(lambda: urllib.request.urlopen(hub.url("/hub/login"), timeout=5).status == 200, timeout=90,
               interval=0.5, message="the Hub's login page through ingressd chp")
    assert "/" in hub.proxy_routes()
    login(hub, "alice")

    status, _ = hub.hub_api("POST", "/users/alice/server")
    assert status in (201, 202)
    wait_until(lambda: hub.hub_api("GET", "/users/alice")[1]["servers"].get("", {}).get("ready"), timeout=90,
               interval=0.5, message="alice's server ready")
    routes = hub.proxy_routes()
    assert routes["/user/alice"]["user"] == "alice"  # the Hub's own data, kept and returned

    # The single-user server under /user/alice/, through ingressd, with the Hub's token.
    request = urllib.request.Request(hub.url("/user/alice/api/status"),
                                     headers={"Authorization": f"token {SERVICE_TOKEN}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200 and "started" in json.loads(response.read())

    # last_activity: a request through the proxy moves the user's activity in the Hub's API.
    before = hub.hub_api("GET", "/users/alice")[1]["servers"][""]["last_activity"]
    time.sleep(1.1)
    with urllib.request.urlopen(request, timeout=20) as response:
        response.read()
    wait_until(lambda: hub.hub_api("GET", "/users/alice")[1]["servers"][""]["last_activity"] > before,
               timeout=30, interval=0.5, message="the proxy's last_activity reaching the Hub")

    # A websocket through the proxy to the single-user server (jupyter_server's event stream).
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{hub.port}/user/alice/api/events/subscribe", proxy=None, open_timeout=20,
                 additional_headers={"Authorization": f"token {SERVICE_TOKEN}"}, ping_interval=None) as ws:
        ws.ping().wait(10)

    # A kernel's websocket through the proxy stays open past 60 s of silence and still executes.
    kernel = _api(hub, "POST", "/user/alice/api/kernels", {"name": "python3"})
    with connect(f"ws://127.0.0.1:{hub.port}/user/alice/api/kernels/{kernel['id']}/channels", proxy=None,
                 open_timeout=30, additional_headers={"Authorization": f"token {SERVICE_TOKEN}"},
                 ping_interval=None) as ws:
        assert _execute(ws, "1 + 1") == "2"
        _drain(ws)  # the kernel's trailing status messages
        idle_since = time.monotonic()
        with pytest.raises(TimeoutError):  # nothing at all on the socket for 61 s: no pings either side
            ws.recv(timeout=61)
        assert time.monotonic() - idle_since >= 61
        assert _execute(ws, "6 * 7") == "42"
    assert hub.proxy_routes()["/user/alice"]["last_activity"] >= routes["/user/alice"]["last_activity"]

    # Stopping the server removes its route.
    status, _ = hub.hub_api("DELETE", "/users/alice/server")
    assert status in (202, 204)
    wait_until(lambda: "/user/alice" not in hub.proxy_routes(), timeout=60, interval=0.5,
               message="alice's route removed")
    log = hub.text()
    for repair in ("Adding missing route", "Updating route", "Deleting stale route"):
        assert repair not in log, repair


def _api(hub: Hub, method: str, path: str, body=None):
    request = urllib.request.Request(hub.url(path), method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"token {SERVICE_TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _execute(ws, code: str) -> str:
    """Run ``code`` in the kernel over its websocket (Jupyter's JSON message protocol): the result's text."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "alice", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False},
    }))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=60))
        if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_result":
            return message["content"]["data"]["text/plain"]
    raise AssertionError(f"no result for {code!r}")


def _drain(ws, quiet: float = 3.0) -> None:
    """Read until nothing has arrived for ``quiet`` seconds."""
    while True:
        try:
            ws.recv(timeout=quiet)
        except TimeoutError:
            return
