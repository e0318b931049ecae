"""``ingressd serve --proxy-api``: configurable-http-proxy's REST API beside the Ingresses.

A real ``ingressd serve`` on a manifest directory with an Ingress annotated
``ingressd.io/proxy-api: "true"`` (TLS from a Secret) and one without; routes added through the API
(http.client, as JupyterHub's ConfigurableHTTPProxy does) are served under the handed host only,
over HTTP (redirected) and HTTPS, longest prefix across the Hub's and the Ingress's paths; with
``--workers 2`` the workers' activity reaches ``last_activity``. The Hub itself in this mode is in
test_chp_jupyterhub.py.
"""

from __future__ import annotations

import http.client
import json
import time

import pytest

from support import manifests as m
from support.certs import client_context, issue
from support.client import request as fetch, ws_connect
from support.ingressd import free_port, launch
from support.wait import wait_until

TOKEN = "hub-token"
HUB_HOST = "hub.example.org"


def api(port: int, method: str, path: str, body=None, token: str | None = TOKEN):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                 headers={"Authorization": f"token {token}"} if token else {})
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def hubbed(request, tmp_path, backend, ca, monkeypatch):
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", TOKEN)
    cert, key = issue(ca, HUB_HOST)
    api_port = free_port()
    inst = launch(tmp_path, {
        "svc.yaml": [*m.service_with_endpoints("site", backend.ports["a"]),
                     *m.service_with_endpoints("grafana", backend.ports["c"]),
                     m.tls_secret("hub-tls", cert, key)],
        "ing.yaml": [
            m.ingress("jupyterhub", [m.rule(HUB_HOST, m.path("/", "site"), m.path("/services/grafana", "grafana"))],
                      tls=[([HUB_HOST], "hub-tls")], annotations={"ingressd.io/proxy-api": "true"}),
            m.ingress("other", [m.rule("other.example.org", m.path("/", "site"))]),
        ],
    }, args=["--proxy-api", f"127.0.0.1:{api_port}", "--workers", str(request.param)])
    inst.api_port = api_port
    wait_until(lambda: api(api_port, "GET", "/api/routes")[0] == 200, timeout=20, message="the proxy API")
    yield inst
    inst.stop()


def test_hub_routes_under_the_handed_host_only(hubbed, backend, ca):
    port = hubbed.api_port
    assert api(port, "GET", "/api/routes", token=None)[0] == 403
    assert api(port, "POST", "/api/routes/", {"target": f"http://127.0.0.1:{backend.ports['b']}"})[0] == 201
    assert api(port, "POST", "/api/routes/user/alice", {"target": f"http://127.0.0.1:{backend.ports['d']}",
                                                          "user": "alice"})[0] == 201
    tls = client_context(ca)

    def served(path: str, host: str = HUB_HOST):
        wait_until(lambda: fetch(hubbed.https_port, path, host, tls=tls).status == 200, timeout=10,
                   message=f"{host}{path}")
        return fetch(hubbed.https_port, path, host, tls=tls)

    assert served("/user/alice/lab").name == "d"  # the Hub's route, with the Ingress's certificate
    assert served("/hub/login").name == "b"  # the Hub's / replaces the Ingress's /
    assert served("/services/grafana/d/x").name == "c"  # a longer Ingress path stays the Ingress's
    assert fetch(hubbed.http_port, "/user/alice", "other.example.org").name == "a"  # not handed: no Hub routes
    plain = fetch(hubbed.http_port, "/user/alice/lab", HUB_HOST)
    assert plain.status == 308 and plain.header("Location") == f"https://{HUB_HOST}:{hubbed.https_port}/user/alice/lab"

    routes = json.loads(api(port, "GET", "/api/routes")[1])
    assert routes["/user/alice"]["user"] == "alice"
    before = routes["/user/alice"]["last_activity"]
    time.sleep(0.01)
    fetch(hubbed.https_port, "/user/alice/api", HUB_HOST, tls=tls)  # activity, in whichever worker serves it
    wait_until(lambda: json.loads(api(port, "GET", "/api/routes/user/alice")[1])["last_activity"] > before,
               timeout=10, message="last_activity from the data plane")

    assert api(port, "DELETE", "/api/routes/user/alice")[0] == 204
    wait_until(lambda: fetch(hubbed.https_port, "/user/alice/lab", HUB_HOST, tls=tls).name == "b", timeout=10,
               message="the removed route falling back to the Hub's /")


def test_websocket_traffic_counts_as_activity(hubbed, backend, ca):
    port = hubbed.api_port
    api(port, "POST", "/api/routes/user/ws", {"target": f"http://127.0.0.1:{backend.ports['ws']}"})
    tls = client_context(ca)
    wait_until(lambda: fetch(hubbed.https_port, "/user/ws/x", HUB_HOST, tls=tls).status != 404, timeout=10)
    with ws_connect(hubbed.https_port, HUB_HOST, "/user/ws/ws", tls=tls) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        stamp = json.loads(api(port, "GET", "/api/routes/user/ws")[1])["last_activity"]
        # Another configuration (a route added) while the websocket stays open: it is not cut, and
        # its later traffic still counts.
        api(port, "POST", "/api/routes/user/other", {"target": f"http://127.0.0.1:{backend.ports['a']}"})
        time.sleep(0.01)
        wait_until(lambda: fetch(hubbed.https_port, "/user/other/", HUB_HOST, tls=tls).name == "a", timeout=10)
        ws.send("again")
        assert ws.recv(timeout=5) == "again"
        wait_until(lambda: json.loads(api(port, "GET", "/api/routes/user/ws")[1])["last_activity"] > stamp,
                   timeout=10, message="websocket traffic as last_activity")
