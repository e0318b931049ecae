"""Route options that check a request before it is proxied, over HTTP/2 (here h2c with prior
knowledge, the same code as over TLS): auth-type basic, auth-url, limit-connections (each stream in
progress counts as one connection, as nginx counts HTTP/2). They used to end the connection with
GOAWAY INTERNAL_ERROR."""

from __future__ import annotations

import base64

import h2.events
import pytest

from support import client as h
from support import manifests as m
from support.h2raw import RawH2
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def h2opts(tmp_path_factory, backend, auth):
    from passlib.hash import bcrypt

    htpasswd = f"ann:{bcrypt.using(rounds=8).hash('s3cret')}\n".encode()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users", "namespace": "default"},
              "type": "Opaque", "data": {"auth": base64.b64encode(htpasswd).decode()}}
    controller = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                  "data": {"limit-conn-status-code": "429"}}
    inst = launch(tmp_path_factory.mktemp("h2opts"), {
        "svc.yaml": backend.services("a"),
        "secret.yaml": [secret],
        "cm.yaml": [controller],
        "ing.yaml": [
            m.ingress("basic", [m.rule("basic.example.com", m.path("/", "svc-a"))],
                      annotations={"auth-type": "basic", "auth-secret": "users"}),
            m.ingress("external", [m.rule("external.example.com", m.path("/", "svc-a"))],
                      annotations={"auth-url": auth.url("/auth")}),
            m.ingress("limited", [m.rule("limited.example.com", m.path("/", "svc-a"))],
                      annotations={"limit-connections": "2"}),
            m.ingress("free", [m.rule("free.example.com", m.path("/", "svc-a"))]),
        ],
    }, args=["--workers", "1", "--h2c"])
    yield inst
    inst.stop()


def status(inst, host, *args, path="/echo") -> str:
    proc = h.curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", *args,
                  "--resolve", inst.resolve(host), inst.url(host, path))
    return proc.stdout.decode()


def test_basic_auth(h2opts):
    assert status(h2opts, "basic.example.com") == "401"
    assert status(h2opts, "basic.example.com", "-u", "ann:wrong") == "401"
    assert status(h2opts, "basic.example.com", "-u", "ann:s3cret") == "200"
    proc = h.curl("--http2-prior-knowledge", "-u", "ann:s3cret", "--data-binary", "@-", "--resolve",
                  h2opts.resolve("basic.example.com"), h2opts.url("basic.example.com", "/echo"), input=b"x" * 100_000)
    assert b'"body_len": 100000' in proc.stdout, proc.stdout[:300]


def test_auth_url(h2opts, auth):
    before = len(auth.seen)
    assert status(h2opts, "external.example.com") == "401"
    assert status(h2opts, "external.example.com", "-H", "Authorization: Bearer forbidden") == "403"
    proc = h.curl("--http2-prior-knowledge", "-H", "Authorization: Bearer good", "--resolve",
                  h2opts.resolve("external.example.com"), h2opts.url("external.example.com", "/echo"))
    assert b'"method": "GET"' in proc.stdout, proc.stdout[:300]
    assert len(auth.seen) == before + 3


def test_limit_connections_counts_streams(h2opts):
    """Two streams held open use the two slots; a third is refused, another connection too; once
    they end, requests pass again."""
    client = RawH2(h2opts.http_port, "limited.example.com")
    token = "h2-limit"
    for stream_id in (1, 3):
        client.conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"),
                                             (b":authority", b"limited.example.com"),
                                             (b":path", f"/stream?chunks=2&hold={token}{stream_id}".encode())],
                                 end_stream=True)
    client.send()
    heads = lambda: {e.stream_id for e in client.events if isinstance(e, h2.events.ResponseReceived)}
    wait_until(lambda: client.read(0.2) is not None and heads() >= {1, 3}, 10, message="both streams held")
    client.conn.send_headers(5, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"limited.example.com"),
                                 (b":path", b"/echo")], end_stream=True)
    client.send()
    third = client.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == 5)
    assert third is not None and dict(third.headers)[b":status"] == b"429"
    assert status(h2opts, "limited.example.com") == "429"
    for stream_id in (1, 3):
        assert status(h2opts, "free.example.com", path=f"/release?token={token}{stream_id}") == "200"
    ended = lambda: {e.stream_id for e in client.events if isinstance(e, h2.events.StreamEnded)}
    wait_until(lambda: client.read(0.2) is not None and ended() >= {1, 3, 5}, 10, message="the held streams end")
    assert status(h2opts, "limited.example.com") == "200"
    client.close()


def test_websocket_over_http2_passes_basic_auth(h2opts):
    """An extended CONNECT (RFC 8441) is checked like any request: wrong credentials get 401, right
    ones the websocket."""
    from support.h2raw import H2WebSocket

    for credentials, expected in ((b"ann:wrong", 401), (b"ann:s3cret", 200)):
        client = RawH2(h2opts.http_port, "basic.example.com")
        ws = H2WebSocket(client, 1, extra=[(b"authorization", b"Basic " + base64.b64encode(credentials))])
        assert ws.handshake() == expected
        if expected == 200:
            ws.send("authorized")
            assert ws.recv() == "authorized"
        client.close()
