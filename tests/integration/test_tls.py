"""TLS: SNI certificate selection, default certificates, protocol versions, ALPN, HTTPS redirects, HSTS,
certificate rotation without restart."""

from __future__ import annotations

import json
import ssl
import subprocess

import pytest
import trustme
from cryptography import x509

from support import certs
from support import client as h
from support import manifests as m
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

FAKE_CN = "Kubernetes Ingress Controller Fake Certificate"
HSTS = "max-age=31536000; includeSubDomains"


@pytest.fixture(scope="module")
def tls(tmp_path_factory, backend, ca):
    secure = certs.issue(ca, "secure.example.com")
    wild = certs.issue(ca, "*.wild.example.com")
    noredirect = certs.issue(ca, "noredirect.example.com")
    inst = launch(tmp_path_factory.mktemp("tls"), {
        "svc.yaml": backend.services("a", "b", "c", "d", "e"),
        "secrets.yaml": [
            m.tls_secret("secure-tls", *secure),                       # data (base64)
            m.tls_secret("wild-tls", *wild, string_data=True),         # stringData
            m.tls_secret("noredirect-tls", *noredirect),
        ],
        "ing.yaml": [
            m.ingress("ing-secure", [m.rule("secure.example.com", m.path("/", "svc-a"))],
                      tls=[(["secure.example.com"], "secure-tls")]),
            m.ingress("ing-wild", [m.rule("*.wild.example.com", m.path("/", "svc-b"))],
                      tls=[(["*.wild.example.com"], "wild-tls")]),
            m.ingress("ing-noredirect", [m.rule("noredirect.example.com", m.path("/", "svc-c"))],
                      tls=[(["noredirect.example.com"], "noredirect-tls")],
                      annotations={"ssl-redirect": "false"}),
            m.ingress("ing-force", [m.rule("force.example.com", m.path("/", "svc-d"))],
                      annotations={"force-ssl-redirect": "true"}),
            m.ingress("ing-plain", [m.rule("plain.example.com", m.path("/", "svc-e"))]),
        ],
    })
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def tls_default_cert(tmp_path_factory, backend, ca):
    cert = certs.issue(ca, "default.example.com", common_name="ingressd test default certificate")
    inst = launch(tmp_path_factory.mktemp("tls-default"), {
        "svc.yaml": backend.services("a"),
        "secrets.yaml": [m.tls_secret("fallback-cert", *cert, namespace="certs")],
        "ing.yaml": [m.ingress("ing-a", [m.rule("a.example.com", m.path("/", "svc-a"))])],
    }, args=["--default-ssl-certificate", "certs/fallback-cert", "--no-hsts"])
    yield inst
    inst.stop()


# --- certificates ---------------------------------------------------------------------------------


def test_sni_selects_certificate_curl(tls, ca_pem):
    proc = h.curl("--cacert", str(ca_pem), "--resolve", tls.resolve("secure.example.com", https=True),
                  tls.url("secure.example.com", "/echo?via=curl", https=True))
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["name"] == "a"
    assert body["query"] == "via=curl"


def test_sni_selects_certificate_per_host(tls, ca):
    ctx = certs.client_context(ca)  # verifies chain and hostname
    for host in ("secure.example.com", "noredirect.example.com"):
        with certs.handshake(tls.https_port, host, ctx) as s:
            assert host in certs.dns_names(x509.load_der_x509_certificate(s.getpeercert(True)))
    r = tls.get_tls("/", "noredirect.example.com", tls=ctx)
    assert r.status == 200 and r.name == "c"


def test_wildcard_certificate(tls, ca):
    ctx = certs.client_context(ca)
    r = tls.get_tls("/x", "foo.wild.example.com", tls=ctx)
    assert r.status == 200, r
    assert r.name == "b"
    assert "*.wild.example.com" in certs.dns_names(certs.peer_certificate(tls.https_port, "bar.wild.example.com"))


@pytest.mark.parametrize("sni", ["unknown.example.org", None], ids=["unknown-sni", "no-sni"])
def test_unknown_or_missing_sni_gets_fake_certificate(tls, sni):
    cert = certs.peer_certificate(tls.https_port, sni)
    assert certs.common_name(cert) == FAKE_CN


def test_fake_certificate_openssl_s_client(tls):
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls.https_port}",
                           "-servername", "unknown.example.org"],
                          input=b"", capture_output=True, timeout=30)
    assert FAKE_CN in proc.stdout.decode(errors="replace")


def test_unknown_sni_with_default_ssl_certificate_flag(tls_default_cert):
    cert = certs.peer_certificate(tls_default_cert.https_port, "unknown.example.org")
    assert certs.common_name(cert) == "ingressd test default certificate"
    cert = certs.peer_certificate(tls_default_cert.https_port, None)
    assert certs.common_name(cert) == "ingressd test default certificate"


# --- protocol -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version, name", [
    (ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
    (ssl.TLSVersion.TLSv1_3, "TLSv1.3"),
])
def test_tls12_and_tls13_accepted(tls, ca, version, name):
    ctx = certs.client_context(ca, min_version=version, max_version=version)
    with certs.handshake(tls.https_port, "secure.example.com", ctx) as s:
        assert s.version() == name
    r = tls.get_tls("/", "secure.example.com", tls=ctx)
    assert r.status == 200


def test_tls11_refused(tls):
    ctx = certs.client_context(None, min_version=ssl.TLSVersion.TLSv1_1, max_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with certs.handshake(tls.https_port, "secure.example.com", ctx):
            pass


def test_alpn_h2_preferred(tls, ca):
    ctx = certs.client_context(ca, alpn=["http/1.1", "h2"])
    with certs.handshake(tls.https_port, "secure.example.com", ctx) as s:
        assert s.selected_alpn_protocol() == "h2"  # HTTP/2 by default (--no-http2: see test_http2.py)


def test_alpn_http11(tls, ca):
    ctx = certs.client_context(ca, alpn=["http/1.1"])
    with certs.handshake(tls.https_port, "secure.example.com", ctx) as s:
        assert s.selected_alpn_protocol() == "http/1.1"


# --- redirects and headers ------------------------------------------------------------------------


@pytest.mark.parametrize("host_header", ["secure.example.com", "secure.example.com:{http}"])
def test_http_on_tls_host_redirects_308(tls, host_header):
    r = tls.get("/some/path?x=1&y=2", host_header.format(http=tls.http_port))
    assert r.status == 308, r
    assert r.header("location") == f"https://secure.example.com:{tls.https_port}/some/path?x=1&y=2"


def test_http_on_wildcard_tls_host_redirects(tls):
    r = tls.get("/p", "foo.wild.example.com")
    assert r.status == 308
    assert r.header("location") == f"https://foo.wild.example.com:{tls.https_port}/p"


def test_ssl_redirect_false_opts_out(tls):
    r = tls.get("/p", "noredirect.example.com")
    assert r.status == 200, r
    assert r.name == "c"


def test_force_ssl_redirect_without_tls(tls):
    r = tls.get("/p?q=1", "force.example.com")
    assert r.status == 308, r
    assert r.header("location") == f"https://force.example.com:{tls.https_port}/p?q=1"


def test_plain_host_is_not_redirected(tls):
    r = tls.get("/p", "plain.example.com")
    assert r.status == 200
    assert r.name == "e"


@pytest.mark.parametrize("host", ["secure.example.com", "force.example.com"])
def test_acme_challenge_never_redirected(tls, host):
    r = tls.get("/.well-known/acme-challenge/x", host)
    assert r.status == 200, r
    assert r.json()["path"] == "/.well-known/acme-challenge/x"


def test_https_responses_carry_hsts(tls, ca):
    r = tls.get_tls("/", "secure.example.com", tls=certs.client_context(ca))
    assert r.status == 200
    assert r.header("strict-transport-security") == HSTS


def test_hsts_disabled_by_flag(tls_default_cert):
    r = tls_default_cert.get_tls("/", "a.example.com", tls=certs.client_context())
    assert r.status == 200, r
    assert r.header("strict-transport-security") is None


def test_https_forwarded_headers(tls, ca):
    r = tls.get_tls("/echo", "secure.example.com", tls=certs.client_context(ca),
                    headers={"X-Forwarded-Proto": "http"})
    up = r.json()["header_map"]
    assert up["x-forwarded-proto"] == "https"
    assert up["x-forwarded-scheme"] == "https"
    assert up["x-forwarded-port"] == str(tls.https_port)
    assert up["x-forwarded-host"] == "secure.example.com"
    assert up["host"] == "secure.example.com"


def test_https_keep_alive(tls, ca):
    with h.RawConn(tls.https_port, tls=certs.client_context(ca), sni="secure.example.com") as conn:
        for i in range(3):
            conn.send(f"GET /echo?i={i} HTTP/1.1\r\nHost: secure.example.com\r\n\r\n".encode())
            r = conn.read_response()
            assert r.status == 200
            assert r.json()["query"] == f"i={i}"


# --- rotation -------------------------------------------------------------------------------------


def test_secret_change_applies_without_closing_connections(ingressd_factory, backend, ca):
    inst = ingressd_factory({
        "svc.yaml": backend.services("a"),
        "secret.yaml": [m.tls_secret("rot-tls", *certs.issue(ca, "rot.example.com"))],
        "ing.yaml": [m.ingress("ing-rot", [m.rule("rot.example.com", m.path("/", "svc-a"))],
                               tls=[(["rot.example.com"], "rot-tls")])],
    })
    old_ctx = certs.client_context(ca)
    conn = h.RawConn(inst.https_port, tls=old_ctx, sni="rot.example.com")
    try:
        conn.send(b"GET /echo?n=1 HTTP/1.1\r\nHost: rot.example.com\r\n\r\n")
        assert conn.read_response().status == 200

        ca2 = trustme.CA()
        inst.dir.write("secret.yaml", [m.tls_secret("rot-tls", *certs.issue(ca2, "rot.example.com"))])
        new_ctx = certs.client_context(ca2)

        def new_cert_served():
            with certs.handshake(inst.https_port, "rot.example.com", new_ctx):
                return True
        wait_until(new_cert_served, 5, message="new certificate served")
        with pytest.raises(ssl.SSLError):
            certs.handshake(inst.https_port, "rot.example.com", old_ctx).close()

        # The connection opened with the old certificate is still open and serving.
        for n in (2, 3):
            conn.send(f"GET /echo?n={n} HTTP/1.1\r\nHost: rot.example.com\r\n\r\n".encode())
            r = conn.read_response()
            assert r.status == 200
            assert r.json()["query"] == f"n={n}"
    finally:
        conn.close()
