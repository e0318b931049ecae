"""``ssl-passthrough`` with ``--enable-ssl-passthrough``: a real ingressd, a real TLS echo backend
(Python's ssl in a thread, its own certificate), real TLS clients (the ssl module and curl).

The passthrough host's connections reach the backend undecrypted (the client sees the backend's
certificate and talks to it end to end, across a configuration change); other hosts are still
terminated by ingressd; without the flag the annotation is ignored, as in ingress-nginx.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
import trustme

from support import manifests as m
from support.certs import handshake, issue
from support.client import curl
from support.ingressd import free_port
from support.wait import wait_until

PASS_HOST = "db.example.org"
TERMINATED_HOST = "www.example.org"


class TLSEcho:
    """A TLS server on 127.0.0.1 that echoes every line, with a certificate only its own CA signs."""

    def __init__(self):
        self.ca = trustme.CA()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(PASS_HOST).configure_cert(self.context)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                while data := tls.recv(65536):
                    if data.startswith(b"GET "):
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbackend tls\n")
                        return
                    tls.sendall(b"echo " + data)
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def echo():
    server = TLSEcho()
    yield server
    server.close()


def files(echo: TLSEcho, backend, ca) -> dict:
    cert, key = issue(ca, TERMINATED_HOST)
    return {
        "svc.yaml": [*m.service_with_endpoints("db", echo.port), *m.service_with_endpoints("web", backend.ports["a"]),
                     m.tls_secret("www-tls", cert, key)],
        "ing.yaml": [
            m.ingress("db", [m.rule(PASS_HOST, m.path("/", "db"))], annotations={"ssl-passthrough": "true"}),
            m.ingress("www", [m.rule(TERMINATED_HOST, m.path("/", "web"))], tls=[([TERMINATED_HOST], "www-tls")]),
        ],
    }


def test_passthrough_host_reaches_its_backend_end_to_end(ingressd_factory, echo, backend, ca, tmp_path):
    inst = ingressd_factory(files(echo, backend, ca), args=["--enable-ssl-passthrough"])
    trusting_backend = ssl.create_default_context(cadata=echo.ca.cert_pem.bytes().decode())
    with handshake(inst.https_port, PASS_HOST, trusting_backend) as tls:  # the backend's certificate verifies
        tls.sendall(b"hello\n")
        assert tls.recv(100) == b"echo hello\n"
        # A configuration change while the stream is open: it is not cut.
        inst.dir.write("more.yaml", [m.ingress("more", [m.rule("more.example.org", m.path("/", "web"))])])
        wait_until(lambda: inst.get("/", "more.example.org").status == 200, timeout=10, message="the new Ingress")
        tls.sendall(b"still here\n")
        assert tls.recv(100) == b"echo still here\n"
    ca_file = tmp_path / "backend-ca.pem"
    echo.ca.cert_pem.write_to_path(str(ca_file))
    proc = curl("--cacert", str(ca_file), "--resolve", f"{PASS_HOST}:{inst.https_port}:127.0.0.1",
                f"https://{PASS_HOST}:{inst.https_port}/")
    assert proc.stdout == b"backend tls\n", proc.stderr

    # Another host is terminated by ingressd as before, on the same port, with ingressd's certificate.
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    status = curl("-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(tmp_path / "ca.pem"),
                  "--resolve", f"{TERMINATED_HOST}:{inst.https_port}:127.0.0.1",
                  f"https://{TERMINATED_HOST}:{inst.https_port}/").stdout
    assert status == b"200"


def test_without_the_flag_the_annotation_is_ignored(ingressd_factory, echo, backend, ca):
    inst = ingressd_factory(files(echo, backend, ca))
    trusting_backend = ssl.create_default_context(cadata=echo.ca.cert_pem.bytes().decode())
    with pytest.raises(ssl.SSLCertVerificationError):  # ingressd's own certificate, not the backend's
        handshake(inst.https_port, PASS_HOST, trusting_backend).close()


def test_backend_down_closes_the_connection(ingressd_factory, echo, backend, ca):
    docs = files(echo, backend, ca)
    docs["svc.yaml"][:2] = m.service_with_endpoints("db", free_port())  # nothing listens there
    inst = ingressd_factory(docs, args=["--enable-ssl-passthrough"])
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        handshake(inst.https_port, PASS_HOST, ssl.create_default_context(), timeout=15).close()
    assert inst.alive()
    wait_until(lambda: "cannot connect" in inst.stderr(), timeout=10, message="the failure logged")
