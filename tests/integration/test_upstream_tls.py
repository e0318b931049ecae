"""backend-protocol: HTTPS through a real TLS upstream (Debian's ``openssl s_server -www``) and curl:
unverified by default as in ingress-nginx, verified with proxy-ssl-verify + proxy-ssl-secret."""

from __future__ import annotations

import base64
import socket
import subprocess

import pytest
import trustme

from support import manifests as m
from support.certs import issue
from support.client import curl
from support.ingressd import free_port, launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

NAME = "secure.default.svc"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory):
    """A real TLS server whose certificate, from ``ca``, names the Service's cluster DNS name."""
    workdir = tmp_path_factory.mktemp("tls-upstream")
    ca = trustme.CA()
    cert_pem, key_pem = issue(ca, NAME, "other.example")
    (workdir / "cert.pem").write_bytes(cert_pem)
    (workdir / "key.pem").write_bytes(key_pem)
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", "cert.pem",
                             "-key", "key.pem", "-www", "-quiet"], cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), 10, message="openssl s_server did not listen")
        yield ca, port
    finally:
        proc.kill()
        proc.wait()


def ca_secret(name: str, ca: trustme.CA) -> dict:
    pem = ca.cert_pem.bytes()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": "default"},
            "data": {"ca.crt": base64.b64encode(pem).decode()}}


@pytest.fixture(scope="module")
def px(tmp_path_factory, tls_upstream):
    ca, port = tls_upstream
    https = {"backend-protocol": "HTTPS"}
    verified = {**https, "proxy-ssl-verify": "on", "proxy-ssl-secret": "default/upstream-ca"}
    inst = launch(tmp_path_factory.mktemp("upstream-tls"), {
        "svc.yaml": [m.service("secure", [m.port_spec(None, 443, port)]),
                     m.endpoint_slice("secure", [(None, port)], ["127.0.0.1"]),
                     ca_secret("upstream-ca", ca), ca_secret("wrong-ca", trustme.CA())],
        "ing.yaml": [
            m.ingress("plain-tls", [m.rule("tls.example.com", m.path("/", "secure", 443))], annotations=https),
            m.ingress("verified", [m.rule("verified.example.com", m.path("/", "secure", 443))],
                      annotations=verified),
            m.ingress("by-name", [m.rule("named.example.com", m.path("/", "secure", 443))],
                      annotations={**verified, "proxy-ssl-name": "other.example", "proxy-ssl-server-name": "on"}),
            m.ingress("wrong", [m.rule("wrong.example.com", m.path("/", "secure", 443))],
                      annotations={**verified, "proxy-ssl-secret": "default/wrong-ca"}),
            m.ingress("http-to-tls", [m.rule("http.example.com", m.path("/", "secure", 443))]),
        ],
    })
    yield inst
    inst.stop()


def fetch(px, host: str) -> tuple[int, bytes]:
    proc = curl("-w", "\n%{http_code}", "--resolve", f"{host}:{px.http_port}:127.0.0.1",
                f"http://{host}:{px.http_port}/", timeout=20)
    body, _, status = proc.stdout.rpartition(b"\n")
    return int(status or b"0"), body


def test_https_backend_without_verification(px):
    status, body = fetch(px, "tls.example.com")
    assert status == 200 and b"s_server" in body, body[:200]


def test_https_backend_verified_against_the_secret_ca(px):
    assert fetch(px, "verified.example.com")[0] == 200
    assert fetch(px, "named.example.com")[0] == 200  # proxy-ssl-name: another name of the certificate


def test_https_backend_with_an_untrusted_certificate_is_502(px):
    assert fetch(px, "wrong.example.com")[0] == 502


def test_plain_http_to_a_tls_port_fails_cleanly(px):
    assert fetch(px, "http.example.com")[0] in (400, 502)  # s_server drops the plaintext request
