"""custom-http-errors + default-backend: upstream error answers replaced by the error backend's, real requests."""

from __future__ import annotations

import pytest

from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    controller = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                  "data": {"custom-http-errors": "418"}}
    empty = m.service("svc-empty", [m.port_spec("http", 80)])  # no EndpointSlice: no ready endpoints
    inst = launch(tmp_path_factory.mktemp("customerrors"), {
        "svc.yaml": backend.services("a") + backend.service("b", "svc-errors") + backend.service("c", "svc-global")
        + [empty],
        "cm.yaml": [controller],
        "ing.yaml": [
            m.ingress("app", [m.rule("app.example.com", m.path("/", "svc-a"))], annotations={
                "custom-http-errors": "404,503,502", "default-backend": "svc-errors"}),
            m.ingress("empty", [m.rule("empty.example.com", m.path("/", "svc-empty"))], annotations={
                "default-backend": "svc-errors"}),
            m.ingress("global", [m.rule("global.example.com", m.path("/", "svc-a"))]),  # the ConfigMap's 418
            m.ingress("optout", [m.rule("optout.example.com", m.path("/", "svc-a"))], annotations={
                "disable-proxy-intercept-errors": "true"}),
        ],
    }, args=["--workers", "1", "--default-backend-service", "default/svc-global:80"])
    yield inst
    inst.stop()


def test_upstream_error_replaced_by_default_backend(proxy):
    r = proxy.get("/status?code=404", "app.example.com", headers={"Accept": "application/json"})
    assert r.status == 200, r  # the error backend's answer, its status included (backend.py echoes)
    seen = r.json()
    assert r.name == "b"
    assert seen["method"] == "GET" and seen["target"] == "/"
    hdrs = seen["header_map"]
    assert hdrs["x-code"] == "404" and hdrs["x-format"] == "application/json"
    assert hdrs["x-original-uri"] == "/status?code=404"
    assert (hdrs["x-namespace"], hdrs["x-ingress-name"], hdrs["x-service-name"], hdrs["x-service-port"]) == (
        "default", "app", "svc-a", "80")
    assert hdrs["x-request-id"] and hdrs["host"] == "app.example.com"


def test_other_codes_pass_through(proxy):
    r = proxy.get("/status?code=500", "app.example.com")
    assert r.status == 500 and r.header("X-Backend-Name") == "a"
    assert proxy.get("/echo", "app.example.com").name == "a"


def test_keep_alive_after_intercept(proxy):
    from support import client as h
    conn = h.connection(proxy.http_port)
    try:
        for _ in range(3):
            r = h.send(conn, "/status?code=503", "app.example.com")
            assert r.status == 200 and r.name == "b"
        assert h.send(conn, "/echo", "app.example.com").name == "a"
    finally:
        conn.close()


def test_ingressd_own_errors_are_intercepted(proxy):
    r = proxy.get("/close", "app.example.com")  # the upstream closes without answering: 502
    assert r.status == 200 and r.name == "b" and r.json()["header_map"]["x-code"] == "502"


def test_default_backend_serves_service_without_endpoints(proxy):
    r = proxy.get("/x", "empty.example.com")
    assert r.status == 200 and r.name == "b"


def test_configmap_codes_go_to_the_controller_default_backend(proxy):
    r = proxy.get("/status?code=418", "global.example.com")
    assert r.status == 200 and r.name == "c" and r.json()["header_map"]["x-code"] == "418"
    assert proxy.get("/status?code=418", "optout.example.com").status == 418
