"""Controller ConfigMap keys and annotations of issue 12 with real clients: ssl-protocols and
ssl-ciphers (ConfigMap and per-host annotation), log-format-upstream, block-user-agents /
block-referers, add-headers / proxy-set-headers / hide-headers / custom-headers."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from support import certs
from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)

NGINX = "nginx.ingress.kubernetes.io/"


def configmap(name: str, data: dict, namespace: str = "ingress-nginx") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


# --- ssl-protocols, ssl-ciphers ---------------------------------------------------------------

CM_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"  # trustme's keys are ECDSA
HOST_CIPHER = "ECDHE-ECDSA-CHACHA20-POLY1305"


@pytest.fixture(scope="module")
def tls(tmp_path_factory, backend, ca):
    inst = launch(tmp_path_factory.mktemp("edge-tls"), {
        "cm.yaml": [configmap("ingress-nginx-controller", {"ssl-protocols": "TLSv1.2",
                                                           "ssl-ciphers": CM_CIPHER + ":" + "ECDHE-RSA-AES128-GCM-SHA256"})],
        "svc.yaml": backend.services("a", "b"),
        "secrets.yaml": [m.tls_secret("a-tls", *certs.issue(ca, "a.example.com")),
                         m.tls_secret("b-tls", *certs.issue(ca, "b.example.com"))],
        "ing.yaml": [
            m.ingress("ing-a", [m.rule("a.example.com", m.path("/", "svc-a"))], tls=[(["a.example.com"], "a-tls")]),
            m.ingress("ing-b", [m.rule("b.example.com", m.path("/", "svc-b"))], tls=[(["b.example.com"], "b-tls")],
                      annotations={"ssl-ciphers": HOST_CIPHER}),
        ],
    })
    yield inst
    inst.stop()


def _negotiated(port: int, sni: str, ca, ciphers: str | None = None, max_version=None):
    ctx = certs.client_context(ca, max_version=max_version)
    if ciphers:
        ctx.set_ciphers(ciphers)
    with certs.handshake(port, sni, ctx) as conn:
        return conn.version(), conn.cipher()[0]


def test_ssl_protocols_configmap_tls12_only(tls, ca):
    assert _negotiated(tls.https_port, "a.example.com", ca) == ("TLSv1.2", CM_CIPHER)
    ctx = certs.client_context(ca, min_version=ssl.TLSVersion.TLSv1_3)
    with pytest.raises(ssl.SSLError):
        certs.handshake(tls.https_port, "a.example.com", ctx).close()


def test_ssl_ciphers_configmap_refuses_others(tls, ca):
    with pytest.raises(ssl.SSLError):
        _negotiated(tls.https_port, "a.example.com", ca, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")


def test_ssl_ciphers_annotation_per_host(tls, ca):
    assert _negotiated(tls.https_port, "b.example.com", ca) == ("TLSv1.2", HOST_CIPHER)
    with pytest.raises(ssl.SSLError):  # the ConfigMap's list does not apply to this host
        _negotiated(tls.https_port, "b.example.com", ca, ciphers=CM_CIPHER)


def test_ssl_ciphers_openssl_s_client(tls):
    def s_client(name: str, cipher: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls.https_port}", "-servername", name,
                               "-tls1_2", "-cipher", cipher], input=b"", capture_output=True, timeout=30)
    ok = s_client("a.example.com", CM_CIPHER)
    assert ok.returncode == 0 and f"Cipher is {CM_CIPHER}".encode() in ok.stdout, ok.stdout + ok.stderr
    assert s_client("a.example.com", HOST_CIPHER).returncode != 0
    ok = s_client("b.example.com", HOST_CIPHER)
    assert ok.returncode == 0 and f"Cipher is {HOST_CIPHER}".encode() in ok.stdout, ok.stdout + ok.stderr


# --- log-format-upstream ----------------------------------------------------------------------

LOG_TEMPLATE = ('{"addr":"$remote_addr","req":"$request","status":$status,"ua":"$http_user_agent",'
                '"x":"$http_x_custom","ns":"$namespace","ing":"$ingress_name","svc":"$service_name",'
                '"port":"$service_port","up":"$upstream_addr","ups":"$upstream_status","host":"$host",'
                '"uri":"$uri","args":"$args","scheme":"$scheme","nope":"$no_such_variable"}')


@pytest.fixture(scope="module")
def logged(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("edge-log"), {
        "cm.yaml": [configmap("ingress-nginx-controller", {"log-format-upstream": LOG_TEMPLATE,
                                                           "log-format-escape-json": "true"})],
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing-log", [m.rule("log.example.com", m.path("/", "svc-a"))])],
    })
    yield inst
    inst.stop()


def _log_lines(inst) -> list[dict]:
    import json
    lines = []
    for line in inst.stdout_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def test_log_format_upstream_json(logged):
    from support import client as h
    from support.wait import wait_until
    resp = h.request(logged.http_port, "/echo?q=1", host="log.example.com",
                     headers={"User-Agent": 'agent "quoted"', "X-Custom": "back\\slash"})
    assert resp.status == 200
    found = wait_until(lambda: [e for e in _log_lines(logged) if e.get("uri") == "/echo"], timeout=10,
                       message="the access log line")
    entry = found[0]
    assert entry["req"] == "GET /echo?q=1 HTTP/1.1" and entry["status"] == 200 and entry["args"] == "q=1"
    assert entry["ua"] == 'agent "quoted"' and entry["x"] == "back\\slash"
    assert (entry["ns"], entry["ing"], entry["svc"], entry["port"]) == ("default", "ing-log", "svc-a", "80")
    assert entry["ups"] == "200" and entry["up"].startswith("127.0.0.1:") and entry["host"] == "log.example.com"
    assert entry["scheme"] == "http" and entry["nope"] == "-" and entry["addr"] == "127.0.0.1"


def test_log_format_websocket_logged_when_closed(logged):
    from support import client as h
    from support.wait import wait_until
    with h.ws_connect(logged.http_port, "log.example.com", path="/ws") as ws:
        ws.send("hello")
        assert ws.recv() == "hello"
        assert not [e for e in _log_lines(logged) if e.get("uri") == "/ws" and e.get("status") == 101]
    found = wait_until(lambda: [e for e in _log_lines(logged) if e.get("uri") == "/ws"], timeout=10,
                       message="the websocket's line")
    assert found[0]["status"] == 101 and len(found) == 1


def test_log_format_unknown_variable_reported(logged):
    assert "$no_such_variable cannot be filled by ingressd" in logged.logs()


# --- block-user-agents, block-referers, add-headers, proxy-set-headers, hide-headers, custom-headers --


@pytest.fixture(scope="module")
def headers(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("edge-headers"), {
        "cm.yaml": [
            configmap("ingress-nginx-controller", {
                "add-headers": "ingress-nginx/resp-headers", "proxy-set-headers": "ingress-nginx/req-headers",
                "hide-headers": "X-Backend-Name", "global-allowed-response-headers": "X-Custom-Resp,X-Frame-Options",
                "block-user-agents": "~*badbot, EvilScanner/1.0", "block-referers": r"~^https?://spam\.example/"}),
            configmap("resp-headers", {"X-Frame-Options": "DENY", "X-Global": "g"}),
            configmap("req-headers", {"X-Env": "prod", "X-Forwarded-Proto": "https"}),
            configmap("custom-resp", {"X-Custom-Resp": "yes", "X-Frame-Options": "SAMEORIGIN"}, namespace="default"),
            configmap("denied-resp", {"X-Not-Allowed": "1"}, namespace="default"),
        ],
        "svc.yaml": backend.services("a"),
        "ing.yaml": [
            m.ingress("ing-plain", [m.rule("p.example.com", m.path("/", "svc-a"))]),
            m.ingress("ing-custom", [m.rule("c.example.com", m.path("/", "svc-a"))],
                      annotations={"custom-headers": "custom-resp"}),
            m.ingress("ing-denied", [m.rule("d.example.com", m.path("/", "svc-a"))],
                      annotations={"custom-headers": "default/denied-resp"}),
        ],
    })
    yield inst
    inst.stop()


def test_add_hide_and_proxy_set_headers(headers):
    from support import client as h
    resp = h.request(headers.http_port, "/echo", host="p.example.com",
                     headers={"X-Env": "client", "X-Forwarded-Proto": "http"})
    assert resp.status == 200, resp
    assert resp.header("X-Frame-Options") == "DENY" and resp.header("X-Global") == "g"
    assert resp.header("X-Backend-Name") is None  # hide-headers
    sent = resp.json()["headers"]
    assert [v for k, v in sent if k.lower() == "x-env"] == ["prod"]  # the client's is replaced
    assert [v for k, v in sent if k.lower() == "x-forwarded-proto"] == ["https"]  # so is ingressd's own
    local = h.request(headers.http_port, "/", host="unknown.example.com")  # ingressd's own answers too
    assert local.status == 404 and local.header("X-Global") == "g"


def test_custom_headers_annotation_over_add_headers(headers):
    from support import client as h
    resp = h.request(headers.http_port, "/echo", host="c.example.com")
    assert resp.status == 200
    assert resp.header("X-Frame-Options") == "SAMEORIGIN" and resp.header("X-Custom-Resp") == "yes"
    assert resp.header("X-Global") == "g"


def test_custom_headers_not_allowed_is_503(headers):
    from support import client as h
    assert h.request(headers.http_port, "/echo", host="d.example.com").status == 503
    assert "X-Not-Allowed not allowed by the controller ConfigMap's global-allowed-response-headers" in headers.logs()


@pytest.mark.parametrize("agent, referer, status", [
    ("SuperBadBot/2.1", None, 403),        # ~* regex, any case
    ("evilscanner/1.0", None, 403),        # exact, ignoring case
    ("EvilScanner/1.0 (x)", None, 200),    # exact means exact
    ("curl/8", "https://spam.example/page", 403),
    ("curl/8", "https://example.org/?spam.example/", 200),
    (None, None, 200),
])
def test_block_user_agents_and_referers(headers, agent, referer, status):
    from support import client as h
    extra = {}
    if agent:
        extra["User-Agent"] = agent
    if referer:
        extra["Referer"] = referer
    assert h.request(headers.http_port, "/echo", host="p.example.com", headers=extra).status == status
    args = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: p.example.com",
            f"http://127.0.0.1:{headers.http_port}/echo"]
    args += ["-A", agent] if agent else ["-A", ""]
    if referer:
        args += ["-e", referer]
    assert h.curl(*args).stdout == str(status).encode()
