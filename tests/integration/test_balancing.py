"""Upstream selection against a running ingressd: load-balance ewma (and over the ConfigMap),
upstream-hash-by, affinity: cookie, canary Ingresses (with affinity).

One ingressd for the module; the 'rr' backend is ten loopback addresses sharing one port, the echo
JSON's ``addr`` says which one answered. A slow endpoint for EWMA is a small threaded HTTP server
here that answers after a fixed latency.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import sleep as _latency

import pytest

from support import client as h
from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)

OLD, NEW = "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z"
SLOW_LATENCY = 0.15  # seconds the slow endpoint takes to answer


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        _latency(SLOW_LATENCY)  # the endpoint's latency, not a wait of the test
        body = json.dumps({"name": "slow", "addr": "slow"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def rr_service(backend, name: str) -> list[dict]:
    return m.service_with_endpoints(name, backend.port("rr"), backend.addrs["rr"])


@pytest.fixture(scope="module")
def lb(tmp_path_factory, backend, slow_server):
    services = rr_service(backend, "svc-rr") + backend.services("b") + [
        # One Service, two endpoints: the fast backend "a" and the slow server (two slices, two ports).
        m.service("svc-mixed", [m.port_spec("http", 80, "http")]),
        m.endpoint_slice("svc-mixed", [("http", backend.port("a"))], ["127.0.0.1"], name="svc-mixed-fast"),
        m.endpoint_slice("svc-mixed", [("http", slow_server)], ["127.0.0.1"], name="svc-mixed-slow"),
    ]
    ingresses = [
        m.ingress("ewma", [m.rule("ewma.example.com", m.path("/", "svc-mixed"))],
                  annotations={"load-balance": "ewma"}),
        m.ingress("rr-over-configmap", [m.rule("rr.example.com", m.path("/", "svc-mixed"))],
                  annotations={"load-balance": "round_robin"}),
        m.ingress("inherits-configmap", [m.rule("inherit.example.com", m.path("/", "svc-mixed"))]),
        m.ingress("hash-user", [m.rule("hash.example.com", m.path("/", "svc-rr"))],
                  annotations={"upstream-hash-by": "$http_x_user"}),
        m.ingress("hash-uri", [m.rule("uri.example.com", m.path("/", "svc-rr"))],
                  annotations={"upstream-hash-by": "$request_uri", "load-balance": "ewma"}),
        m.ingress("sticky", [m.rule("sticky.example.com", m.path("/app", "svc-rr"))],
                  annotations={"affinity": "cookie", "session-cookie-name": "SERVERID",
                               "session-cookie-max-age": "172800", "session-cookie-samesite": "Lax"}),
        m.ingress("sticky-persistent", [m.rule("persistent.example.com", m.path("/", "svc-rr"))],
                  annotations={"affinity": "cookie", "affinity-mode": "persistent"}),
        # Canaries: main Ingresses on svc-rr, canary Ingresses (newer) on svc-b for the same paths.
        m.ingress("shop", [m.rule("shop.example.com", m.path("/", "svc-rr"))], creation_timestamp=OLD),
        m.ingress("shop-canary", [m.rule("shop.example.com", m.path("/", "svc-b"))], creation_timestamp=NEW,
                  annotations={"canary": "true", "canary-by-header": "X-Canary", "canary-by-cookie": "canary",
                               "canary-weight": "20"}),
        m.ingress("app", [m.rule("app.example.com", m.path("/", "svc-rr"))], creation_timestamp=OLD,
                  annotations={"affinity": "cookie", "session-cookie-name": "route"}),
        m.ingress("app-canary", [m.rule("app.example.com", m.path("/", "svc-b"))], creation_timestamp=NEW,
                  annotations={"canary": "true", "canary-weight": "50"}),
    ]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                 "data": {"load-balance": "ewma"}}
    inst = launch(tmp_path_factory.mktemp("balancing"), {"services.yaml": services, "ingresses.yaml": ingresses,
                                                         "configmap.yaml": [configmap]})
    yield inst
    inst.stop()


def addrs(lb, host: str, count: int, path: str = "/", **kw) -> Counter:
    return names(lb, host, count, path, field="addr", **kw)


def names(lb, host: str, count: int, path: str = "/", field: str = "name", **kw) -> Counter:
    seen = Counter()
    conn = h.connection(lb.http_port)
    try:
        for _ in range(count):
            response = h.send(conn, path, host, **kw)
            assert response.status == 200, response
            seen[response.json()[field]] += 1
    finally:
        conn.close()
    return seen


@pytest.mark.parametrize("host", ["ewma.example.com", "inherit.example.com"])
def test_ewma_prefers_the_fast_endpoint(lb, host):
    seen = names(lb, host, 30)
    # Round robin would be 15/15. (The scores are per endpoint, shared by the routes of a worker.)
    assert seen["a"] >= 24, seen


def test_round_robin_annotation_wins_over_the_configmap(lb):
    seen = names(lb, "rr.example.com", 10)
    assert seen == {"a": 5, "slow": 5}, seen


def test_upstream_hash_by_header_keeps_each_user_on_one_endpoint(lb):
    chosen = {}
    for user in ("ann", "bob", "cy", "dee", "eve", "fay"):
        seen = addrs(lb, "hash.example.com", 5, headers={"X-User": user})
        assert len(seen) == 1, (user, seen)
        chosen[user] = next(iter(seen))
    assert len(set(chosen.values())) >= 3, chosen  # six users over ten endpoints
    assert len(addrs(lb, "hash.example.com", 20)) == 1  # no header: one (empty) key


def test_upstream_hash_by_request_uri_wins_over_ewma(lb):
    for target in ("/a", "/b/c?d=1", "/e"):
        assert len(addrs(lb, "uri.example.com", 6, target)) == 1
    spread = Counter()
    for i in range(30):
        spread.update(addrs(lb, "uri.example.com", 1, f"/page/{i}"))
    assert len(spread) >= 6, spread


@pytest.mark.parametrize("host, path, name", [("sticky.example.com", "/app/x", "SERVERID"),
                                              ("persistent.example.com", "/", "INGRESSCOOKIE")])
def test_affinity_cookie_keeps_a_client_on_its_endpoint(lb, host, path, name):
    first = lb.get(path, host)
    assert first.status == 200, first
    set_cookie = first.header("set-cookie")
    assert set_cookie.startswith(name + "=") and "HttpOnly" in set_cookie, set_cookie
    if name == "SERVERID":
        assert "; Max-Age=172800; Path=/app; HttpOnly; SameSite=Lax" in set_cookie
    cookie = set_cookie.split(";", 1)[0]
    addr = first.json()["addr"]
    for _ in range(12):  # fresh connections: whichever worker process takes them
        again = lb.get(path, host, headers={"Cookie": cookie})
        assert again.json()["addr"] == addr and again.header("set-cookie") is None
    seen = {lb.get(path, host).json()["addr"] for _ in range(20)}  # new clients: spread over the endpoints
    assert len(seen) >= 3, seen


def side(response) -> str:
    assert response.status == 200, response
    return "canary" if response.json()["name"] == "b" else "main"


def test_canary_by_header_then_cookie_then_weight(lb):
    host = "shop.example.com"
    assert {side(lb.get("/", host, headers={"X-Canary": "always"})) for _ in range(5)} == {"canary"}
    assert {side(lb.get("/", host, headers={"X-Canary": "never", "Cookie": "canary=always"}))
            for _ in range(10)} == {"main"}  # the header wins over the cookie
    assert {side(lb.get("/", host, headers={"Cookie": "canary=always"})) for _ in range(5)} == {"canary"}
    assert {side(lb.get("/", host, headers={"Cookie": "canary=never"})) for _ in range(10)} == {"main"}
    sides = Counter(side(lb.get("/", host)) for _ in range(100))  # canary-weight 20
    assert 5 <= sides["canary"] <= 40, sides


def test_canary_with_affinity_keeps_each_session_on_its_side(lb):
    host = "app.example.com"
    cookies = {}
    for _ in range(40):
        response = lb.get("/", host)
        cookies.setdefault(side(response), (response.header("set-cookie") or "").split(";", 1)[0])
        if len(cookies) == 2:
            break
    assert set(cookies) == {"main", "canary"} and all(c.startswith("route=") for c in cookies.values()), cookies
    for which, cookie in cookies.items():
        responses = [lb.get("/", host, headers={"Cookie": cookie}) for _ in range(10)]
        assert {side(r) for r in responses} == {which}
        if which == "main":
            assert len({r.json()["addr"] for r in responses}) == 1  # and on one endpoint of the main side


def test_requests_served_by_a_canary_carry_its_name_in_the_canary_label(lb):
    assert side(lb.get("/", "shop.example.com", headers={"X-Canary": "always"})) == "canary"

    def counted():
        lines = [line for line in lb.metrics().splitlines()
                 if line.startswith("nginx_ingress_controller_requests{") and 'ingress="shop"' in line]
        return [line for line in lines if 'canary="default-svc-b-80"' in line] and \
            [line for line in lines if 'canary=""' in line]
    from support.wait import wait_until
    wait_until(counted, timeout=10, message="requests counted with and without the canary label")


def test_check_reports_no_conflict_for_canaries(lb):
    assert "already defined" not in lb.logs()
