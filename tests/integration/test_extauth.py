"""auth-url (external authentication as nginx's auth_request) with a real auth server and real requests."""

from __future__ import annotations

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)

GOOD = {"Authorization": "Bearer good"}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend, auth):
    headers_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "auth-headers", "namespace": "default"},
                  "data": {"X-Auth-Tenant": "blue"}}
    inst = launch(tmp_path_factory.mktemp("extauth"), {
        "svc.yaml": backend.services("a", "b"),
        "cm.yaml": [headers_cm],
        "ing.yaml": [
            m.ingress("plain", [m.rule("auth.example.com", m.path("/", "svc-a"))], annotations={
                "auth-url": auth.url(),
                "auth-response-headers": "X-Auth-Request-User, X-Auth-Request-Email, X-Absent",
                "auth-proxy-set-headers": "default/auth-headers",
            }),
            m.ingress("signin", [m.rule("signin.example.com", m.path("/", "svc-a"))], annotations={
                "auth-url": f"http://127.0.0.1:{auth.port}/$host/auth",
                "auth-signin": "https://$host/oauth2/start",
                "auth-method": "POST",
                "auth-cache-key": "$http_authorization",
                "auth-cache-duration": "200 1m",
            }),
            m.ingress("broken", [m.rule("broken.example.com", m.path("/", "svc-a"))], annotations={
                "auth-url": f"http://127.0.0.1:{auth.port}/status/502"}),
            m.ingress("slow", [m.rule("slow.example.com", m.path("/", "svc-a"))], annotations={
                "auth-url": f"http://127.0.0.1:{auth.port}/slow", "proxy-read-timeout": "1"}),
            m.ingress("down", [m.rule("down.example.com", m.path("/", "svc-a"))], annotations={
                "auth-url": "http://127.0.0.1:1/auth"}),
            m.ingress("open", [m.rule("open.example.com", m.path("/", "svc-b"))]),
        ],
    }, args=["--workers", "1"])
    yield inst
    inst.stop()


def test_allowed_request_is_proxied_with_auth_response_headers(proxy, auth):
    r = proxy.get("/app/page?x=1", "auth.example.com", headers={**GOOD, "X-Auth-Request-User": "mallory",
                                                                "X-Absent": "forged"})
    assert r.status == 200, r
    seen = r.json()["header_map"]
    assert seen["x-auth-request-user"] == "alice"  # the auth server's, never the client's
    assert seen["x-auth-request-email"] == "alice@example.org"
    assert "x-absent" not in seen
    asked = auth.last()
    assert asked["method"] == "GET" and asked["path"] == "/oauth2/auth"
    hdrs = asked["headers"]
    assert hdrs["x-original-url"] == f"http://auth.example.com/app/page?x=1"
    assert hdrs["x-original-method"] == "GET"
    assert hdrs["x-auth-request-redirect"] == "/app/page?x=1"
    assert hdrs["x-forwarded-for"] == "127.0.0.1" and hdrs["x-real-ip"] == "127.0.0.1"
    assert hdrs["x-forwarded-host"] == "auth.example.com" and hdrs["x-forwarded-proto"] == "http"
    assert hdrs["x-sent-from"] == "nginx-ingress-controller"
    assert hdrs["x-auth-tenant"] == "blue"  # auth-proxy-set-headers
    assert hdrs["authorization"] == "Bearer good"
    assert hdrs["host"] == f"127.0.0.1:{auth.port}"
    assert hdrs["x-request-id"] == seen["x-request-id"]


def test_body_is_not_sent_to_auth_but_reaches_upstream(proxy, auth):
    body = b"y" * 300_000
    r = proxy.get("/upload", "auth.example.com", method="POST", headers=GOOD, body=body)
    assert r.status == 200, r
    assert r.json()["body_len"] == len(body)
    asked = auth.last()
    assert asked["method"] == "POST" and "content-length" not in asked["headers"]


def test_401_and_403_are_passed_to_the_client(proxy):
    r = proxy.get("/", "auth.example.com")
    assert r.status == 401, r
    assert r.header("WWW-Authenticate") == 'Bearer realm="test"'
    assert proxy.get("/", "auth.example.com", headers={"Authorization": "Bearer forbidden"}).status == 403


def test_signin_redirect_with_rd(proxy, auth):
    r = proxy.get("/dash?a=b&c=d", "signin.example.com")
    assert r.status == 302, r
    assert r.header("Location") == ("https://signin.example.com/oauth2/start?rd=http://signin.example.com"
                                    "%2Fdash%3Fa%3Db%26c%3Dd")
    asked = auth.last()
    assert asked["method"] == "POST" and asked["path"] == "/signin.example.com/auth"


def test_auth_cache(proxy, auth):
    before = len(auth.seen)
    headers = {"Authorization": "Bearer good", "X-Unique": "cache"}
    assert proxy.get("/one", "signin.example.com", headers=headers).status == 200
    assert proxy.get("/two", "signin.example.com", headers=headers).status == 200
    assert len(auth.seen) == before + 1  # the second answer came from the cache
    assert proxy.get("/three", "signin.example.com").status == 302  # 401 is not cached here
    assert len(auth.seen) == before + 2


def test_auth_failures_are_500(proxy):
    assert proxy.get("/", "broken.example.com", headers=GOOD).status == 500
    assert proxy.get("/", "down.example.com", headers=GOOD).status == 500
    r = proxy.get("/", "slow.example.com", headers=GOOD, timeout=20)
    assert r.status == 500, r


def test_keep_alive_to_auth_server_and_client(proxy, auth):
    conn = h.connection(proxy.http_port)
    try:
        for _ in range(3):
            assert h.send(conn, "/", "auth.example.com", headers=GOOD).status == 200
        assert h.send(conn, "/", "auth.example.com").status == 401  # the connection stays usable
        assert h.send(conn, "/", "auth.example.com", headers=GOOD).status == 200
    finally:
        conn.close()
    recent = {s["conn"] for s in auth.seen[-4:]}
    assert len(recent) == 1, auth.seen[-4:]


def test_routes_without_auth_untouched(proxy, auth):
    before = len(auth.seen)
    assert proxy.get("/", "open.example.com").status == 200
    assert len(auth.seen) == before


@pytest.fixture(scope="module")
def global_proxy(tmp_path_factory, backend, auth):
    controller = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                  "data": {"global-auth-url": auth.url("/global/auth"),
                           "global-auth-signin": "https://login.example.com/start?next=1",
                           "global-auth-signin-redirect-param": "next2",
                           "global-auth-response-headers": "X-Auth-Request-User",
                           "no-auth-locations": "/healthz"}}
    inst = launch(tmp_path_factory.mktemp("globalauth"), {
        "svc.yaml": backend.services("a"),
        "cm.yaml": [controller],
        "ing.yaml": [
            m.ingress("guarded", [m.rule("g.example.com", m.path("/", "svc-a"), m.path("/healthz", "svc-a"))]),
            m.ingress("exempt", [m.rule("e.example.com", m.path("/", "svc-a"))],
                      annotations={"enable-global-auth": "false"}),
        ],
    }, args=["--workers", "2"])  # the configuration pickled to worker processes
    yield inst
    inst.stop()


def test_global_auth(global_proxy, auth):
    r = global_proxy.get("/x", "g.example.com")
    assert r.status == 302, r
    assert r.header("Location") == "https://login.example.com/start?next=1&next2=http://g.example.com%2Fx"
    r = global_proxy.get("/x", "g.example.com", headers=GOOD)
    assert r.status == 200 and r.json()["header_map"]["x-auth-request-user"] == "alice"
    assert auth.last()["path"] == "/global/auth"
    before = len(auth.seen)
    assert global_proxy.get("/healthz", "g.example.com").status == 200  # no-auth-locations
    assert global_proxy.get("/x", "e.example.com").status == 200  # enable-global-auth: "false"
    assert len(auth.seen) == before


@pytest.fixture(scope="module")
def basic_proxy(tmp_path_factory, backend, auth):
    import base64

    from passlib.hash import bcrypt
    htpasswd = f"ann:{bcrypt.using(rounds=8).hash('s3cret')}\n".encode()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "users", "namespace": "default"},
              "type": "Opaque", "data": {"auth": base64.b64encode(htpasswd).decode()}}
    inst = launch(tmp_path_factory.mktemp("basicauth"), {
        "svc.yaml": backend.services("a"),
        "secret.yaml": [secret],
        "ing.yaml": [
            m.ingress("basic", [m.rule("basic.example.com", m.path("/", "svc-a"))], annotations={
                "auth-type": "basic", "auth-secret": "users", "auth-realm": "Team"}),
            m.ingress("both", [m.rule("both.example.com", m.path("/", "svc-a"))], annotations={
                "auth-type": "basic", "auth-secret": "users", "auth-url": auth.url("/status/200")}),
        ],
    }, args=["--workers", "1"])
    yield inst
    inst.stop()


def test_basic_auth_bcrypt_through_the_proxy(basic_proxy, auth):
    import base64

    def creds(user_pass: bytes) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(user_pass).decode()}

    r = basic_proxy.get("/", "basic.example.com")
    assert r.status == 401 and r.header("WWW-Authenticate") == 'Basic realm="Team"'
    assert basic_proxy.get("/", "basic.example.com", headers=creds(b"ann:wrong")).status == 401
    conn = h.connection(basic_proxy.http_port)
    try:
        for _ in range(2):  # the second from the verdict cache
            assert h.send(conn, "/", "basic.example.com", headers=creds(b"ann:s3cret")).status == 200
    finally:
        conn.close()
    before = len(auth.seen)
    assert basic_proxy.get("/", "both.example.com", headers=creds(b"ann:wrong")).status == 401
    assert len(auth.seen) == before  # basic auth first: the auth server is not asked
    assert basic_proxy.get("/", "both.example.com", headers=creds(b"ann:s3cret")).status == 200
    assert len(auth.seen) == before + 1
