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
    ws = h.ws_connect(logged.http_port, "log.example.com", path="/ws")
    ws.send("hello")
    assert ws.recv() == "hello"
    assert not [e for e in _log_lines(logged) if e.get("uri") == "/ws" and e.get("status") == 101]
    ws.close()
    found = wait_until(lambda: [e for e in _log_lines(logged) if e.get("uri") == "/ws"], timeout=10,
                       message="the websocket's line")
    assert found[0]["status"] == 101 and len(found) == 1


def test_log_format_unknown_variable_reported(logged):
    assert "$no_such_variable cannot be filled by ingressd" in logged.logs()
