"""``ingressd chp``: configurable-http-proxy's command line and REST API, with real clients
(http.client for the API, curl and the websockets package through the proxy)."""

from __future__ import annotations

import json
import http.client
import socket
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

    def __init__(self, workdir, *args: str, token: str | None = TOKEN, env_extra: dict | None = None,
                 tls: bool = False):
        self.port, self.api_port = free_port(), free_port()
        self.scheme = "https" if tls else "http"
        env = {**subprocess_env(), **(env_extra or {})}
        env.pop("CONFIGPROXY_AUTH_TOKEN", None)
        if token:
            env["CONFIGPROXY_AUTH_TOKEN"] = token
        self.log = open(workdir / f"chp-{self.port}.log", "wb")
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
    proc = subprocess.run([sys.executable, "-m", "ingressd", "chp", "--storage-backend", "x", "--change-origin"],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "not implemented by ingressd: --storage-backend, --change-origin" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--redirect-port", "9"], "--redirect-port needs --ssl-cert"),
    (["--error-target", "http://x", "--error-path", "/tmp"], "both --error-target and --error-path"),
    (["--ssl-request-cert"], "need --ssl-key and --ssl-cert"),
    (["--custom-header", "nocolon"], "a colon was expected in custom header"),
])
def test_flag_combinations_chp_refuses_are_refused(args, message):
    proc = subprocess.run([sys.executable, "-m", "ingressd", "chp", *args], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def echo(proxy, path: str, *headers: str, host: str = "127.0.0.1") -> tuple[int, dict | bytes]:
    args = [a for h in headers for a in ("-H", h)]
    proc = curl("-s", "-H", f"Host: {host}", *args, "-w", "\n%{http_code}", f"http://127.0.0.1:{proxy.port}{path}")
    body, _, status = proc.stdout.rpartition(b"\n")
    try:
        return int(status), json.loads(body)
    except ValueError:
        return int(status), body


def seen(result) -> dict:
    """The request headers the echo backend saw (lower-case names)."""
    return {k.lower(): v for k, v in result[1]["headers"]}


def test_target_paths_prefix_and_prepend(chp, backend):
    a = backend.ports["a"]
    kept = chp()
    kept.api("POST", "/api/routes/user/x", {"target": f"http://127.0.0.1:{a}/base?t=1"})
    status, got = echo(kept, "/user/x/tree?q=2")
    assert status == 200 and got["target"] == "/base/user/x/tree?t=1&q=2"  # CHP's urlJoin
    stripped = chp("--no-include-prefix")
    stripped.api("POST", "/api/routes/user/x", {"target": f"http://127.0.0.1:{a}/base"})
    assert echo(stripped, "/user/x/tree?q=2")[1]["target"] == "/base/tree?q=2"
    assert echo(stripped, "/user/x")[1]["target"] == "/base"
    bare = chp("--no-include-prefix", "--no-prepend-path")
    bare.api("POST", "/api/routes/user/x", {"target": f"http://127.0.0.1:{a}/base"})
    assert echo(bare, "/user/x/tree")[1]["target"] == "/tree"
    assert echo(bare, "/user/x")[1]["target"] == "/"


def test_custom_headers_and_forwarded_headers(chp, backend):
    proxy = chp("--custom-header", "X-Hub: one", "--custom-header", "X-Extra:two", "--default-target",
                f"http://127.0.0.1:{backend.ports['a']}")
    got = seen(echo(proxy, "/", "X-Hub: client", "X-Forwarded-For: 10.0.0.1", "X-Forwarded-Proto: https"))
    assert got["x-hub"] == "one" and got["x-extra"] == "two"  # replaces the client's value
    assert got["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"  # CHP appends (xfwd)
    assert got["x-real-ip"] == "127.0.0.1"  # but the client's claim about its address is not believed
    assert got["x-forwarded-proto"] == "https"  # from the proxy in front of CHP, as z2jh's ingress sends it
    plain = chp("--no-x-forward", "--default-target", f"http://127.0.0.1:{backend.ports['a']}")
    got = seen(echo(plain, "/"))
    assert not any(name.startswith("x-forwarded") or name in ("x-real-ip", "x-request-id") for name in got), got
    got = seen(echo(plain, "/", "X-Forwarded-For: 10.0.0.1", "X-Forwarded-Proto: https", "X-Real-IP: 10.0.0.2"))
    assert (got["x-forwarded-for"], got["x-forwarded-proto"], got["x-real-ip"]) == ("10.0.0.1", "https", "10.0.0.2")


@pytest.fixture(scope="module")
def tls_target(tmp_path_factory):
    """A real TLS server (openssl s_server -www) with a certificate for 127.0.0.1 from its own CA."""
    import trustme

    workdir = tmp_path_factory.mktemp("chp-tls-target")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(workdir / "server.pem"))
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", "server.pem",
                             "-www", "-quiet"], cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: curl("-k", "-o", "/dev/null", f"https://127.0.0.1:{port}/").returncode == 0, timeout=10,
                   message="openssl s_server")
        yield workdir / "ca.pem", port
    finally:
        procs.stop(proc)


def test_https_targets_verified_unless_insecure(chp, tls_target):
    ca_file, port = tls_target
    route = {"target": f"https://127.0.0.1:{port}"}
    trusting = chp(env_extra={"SSL_CERT_FILE": str(ca_file)})  # the system's CAs, with the test CA among them
    trusting.api("POST", "/api/routes/secure", route)
    status, body = echo(trusting, "/secure/x")
    assert status == 200 and b"s_server" in body
    untrusting = chp()
    untrusting.api("POST", "/api/routes/secure", route)
    status, body = echo(untrusting, "/secure/x")
    assert status == 503 and b"<h1>503: Service Unavailable</h1>" in body  # unverifiable: CHP's 503
    insecure = chp("--insecure")
    insecure.api("POST", "/api/routes/secure", route)
    assert echo(insecure, "/secure/x")[0] == 200


def test_built_in_error_pages_and_health_check(chp, backend):
    proxy = chp()
    proc = curl("-s", "-i", f"http://127.0.0.1:{proxy.port}/_chp_healthz")
    assert b"200 OK" in proc.stdout and b"Content-Type: application/json" in proc.stdout
    assert proc.stdout.endswith(b'{"status": "OK"}')
    proc = curl("-s", "-i", f"http://127.0.0.1:{proxy.port}/nothing")
    assert proc.stdout.startswith(b"HTTP/1.1 404 Not Found") and b"Content-Type: text/html" in proc.stdout
    assert b"<h1>404: Not Found</h1>" in proc.stdout
    proxy.api("POST", "/api/routes/dead", {"target": f"http://127.0.0.1:{free_port()}"})
    status, body = echo(proxy, "/dead/x")
    assert status == 503 and b"<h1>503: Service Unavailable</h1>" in body


def test_error_target_serves_the_pages(chp, backend):
    errors = backend.ports["b"]  # the echo backend: answers GET /404?url=... with what it saw
    proxy = chp("--error-target", f"http://127.0.0.1:{errors}")
    status, page = echo(proxy, "/nothing/here?x=1")
    assert status == 404 and page["path"] == "/404" and page["query"] == "url=/nothing/here%3Fx%3D1"
    proxy.api("POST", "/api/routes/dead", {"target": f"http://127.0.0.1:{free_port()}"})
    status, page = echo(proxy, "/dead")
    assert status == 503 and page["path"] == "/503"
    gone = chp("--error-target", f"http://127.0.0.1:{free_port()}")  # the error server is down: built-in pages
    assert echo(gone, "/nothing") == (404, b"Not Found")


def test_error_path_serves_files(chp, tmp_path):
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "404.html").write_text("<h1>no such server</h1>")
    (pages / "error.html").write_text("<h1>something broke</h1>")
    proxy = chp("--error-path", str(pages))
    proc = curl("-s", "-i", f"http://127.0.0.1:{proxy.port}/nothing")
    assert b"404 Not Found" in proc.stdout and b"Content-Type: text/html" in proc.stdout
    assert proc.stdout.endswith(b"<h1>no such server</h1>")
    proxy.api("POST", "/api/routes/dead", {"target": f"http://127.0.0.1:{free_port()}"})
    assert echo(proxy, "/dead") == (503, b"<h1>something broke</h1>")


def read_response(sock) -> bytes:
    """One whole response with a Content-Length (it may arrive in several segments)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_keep_alive_timeout_and_timeout(chp, backend):
    proxy = chp("--keep-alive-timeout", "500", "--timeout", "700", "--default-target",
                f"http://127.0.0.1:{backend.ports['a']}")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by ingressd after the keep-alive timeout
        assert 0.3 < time.monotonic() - started < 5
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # an unfinished head: --timeout applies
        started = time.monotonic()
        data = sock.recv(65536)
        assert data == b"" or data.startswith(b"HTTP/1.1 408")
        assert 0.5 < time.monotonic() - started < 5
    status, _ = echo(proxy, "/slow?delay=2")  # no reply within --timeout: CHP's 503
    assert status == 503


def test_redirect_port_sends_plain_http_to_https(chp, tmp_path, ca):
    cert = ca.issue_cert("127.0.0.1", "hub.example.org")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    redirect = free_port()
    proxy = chp("--ssl-key", str(tmp_path / "key.pem"), "--ssl-cert", str(tmp_path / "cert.pem"),
                "--redirect-port", str(redirect), "--redirect-to", "8443")
    wait_until(lambda: curl("-o", "/dev/null", f"http://127.0.0.1:{redirect}/").returncode == 0, timeout=10,
               message="the redirect port")
    proc = curl("-s", "-i", "-H", "Host: hub.example.org:80", f"http://127.0.0.1:{redirect}/hub/login?next=%2F")
    assert proc.stdout.startswith(b"HTTP/1.1 301")
    assert b"Location: https://hub.example.org:8443/hub/login?next=%2F\r\n" in proc.stdout
    with socket.create_connection(("127.0.0.1", redirect), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # no Host: CHP's 400 and its message
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") and b"host could not be determined" in answer


def test_client_certificates_requested_and_required(chp, tmp_path, ca, ca_pem, backend):
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    client = ca.issue_cert("alice@example.org")
    client.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    tls = ["--ssl-key", str(tmp_path / "key.pem"), "--ssl-cert", str(tmp_path / "cert.pem"), "--ssl-ca", str(ca_pem),
           "--default-target", f"http://127.0.0.1:{backend.ports['a']}"]

    def status(proxy, *args):
        return curl("-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca_pem), *args,
                    f"https://127.0.0.1:{proxy.port}/").stdout

    optional = chp(*tls, "--ssl-request-cert", tls=True)
    wait_until(lambda: status(optional) == b"200", timeout=10, message="the HTTPS port")
    assert status(optional, "--cert", str(tmp_path / "client.pem")) == b"200"
    required = chp(*tls, "--ssl-request-cert", "--ssl-reject-unauthorized", tls=True)
    wait_until(lambda: status(required, "--cert", str(tmp_path / "client.pem")) == b"200", timeout=10,
               message="the HTTPS port")
    assert status(required) == b"000"  # no certificate: the handshake is refused
