"""ingress-nginx annotations and ConfigMap keys, as the data plane applies them (in process, see dataplanekit)."""

from __future__ import annotations

import pytest

from dataplanekit import Rig
from unitkit import NGINX, compile_config, ingress, path, rule, svc_with_endpoints

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def configmap(**data):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
            "data": {k.replace("_", "-"): v for k, v in data.items()}}


def web(annotations=None, *paths, host="a.com", extra=(), tls=None):
    paths = paths or (path("/", "web"),)
    return compile_config(ingress("web", rule(host, *paths), annotations=annotations, tls=tls),
                          svc_with_endpoints("web"), svc_with_endpoints("api", ("10.0.0.2",)), *extra)


def get(rig, target="/", host="a.com", headers=b"", method=b"GET", scheme="http", peer=("203.0.113.7", 50000)):
    client = rig.client(scheme, peer)
    client.send(method + b" " + target.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + headers + b"\r\n")
    return client


def upstream_request(rig) -> tuple[bytes, dict[str, str]]:
    head = rig.upstream().received().split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return head[0].encode(), {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}


# --- app-root -----------------------------------------------------------------------------------

def test_app_root_redirects_only_the_root():
    rig = Rig(web({NGINX + "app-root": "/hub/"}))
    response = get(rig, "/").response()
    assert (response.status, response.header("location")) == (302, "/hub/")
    get(rig, "/hub/x")
    assert upstream_request(rig)[0] == b"GET /hub/x HTTP/1.1"


# --- source ranges ------------------------------------------------------------------------------

def test_whitelist_source_range_refuses_other_addresses_with_403():
    rig = Rig(web({NGINX + "whitelist-source-range": "10.0.0.0/8, 192.168.1.1"}))
    assert get(rig, peer=("203.0.113.7", 1)).response().status == 403
    assert not rig.upstreams
    get(rig, peer=("10.1.2.3", 1))
    get(rig, peer=("192.168.1.1", 1))
    assert len(rig.upstreams) == 2


def test_denylist_wins_over_whitelist_and_block_cidrs_always_apply():
    rig = Rig(web({NGINX + "whitelist-source-range": "10.0.0.0/8", NGINX + "denylist-source-range": "10.9.0.0/16"}))
    assert get(rig, peer=("10.9.1.1", 1)).response().status == 403
    rig = Rig(web({NGINX + "whitelist-source-range": "0.0.0.0/0"}, extra=[configmap(block_cidrs="198.51.100.0/24")]))
    assert get(rig, peer=("198.51.100.9", 1)).response().status == 403
    assert get(rig, host="unknown.com", peer=("198.51.100.9", 1)).response().status == 403  # the default backend too
    get(rig, peer=("203.0.113.7", 1))
    assert len(rig.upstreams) == 1


def test_configmap_whitelist_is_the_default_and_an_annotation_replaces_it():
    cm = configmap(whitelist_source_range="10.0.0.0/8")
    rig = Rig(web(extra=[cm]))
    assert get(rig).response().status == 403
    rig = Rig(web({NGINX + "whitelist-source-range": "203.0.113.0/24"}, extra=[cm]))
    get(rig)
    assert rig.upstreams


# --- CORS ---------------------------------------------------------------------------------------

def test_cors_preflight_is_answered_and_responses_get_the_origin():
    rig = Rig(web({NGINX + "enable-cors": "true"}))
    preflight = get(rig, "/api", method=b"OPTIONS", headers=b"Origin: https://x.org\r\n").response()
    assert preflight.status == 204 and not rig.upstreams
    assert preflight.header("access-control-allow-origin") == "*"
    assert preflight.header("access-control-allow-methods") == "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    assert preflight.header("access-control-max-age") == "1728000"
    assert preflight.header("access-control-allow-credentials") == "true"
    client = get(rig, "/api", headers=b"Origin: https://x.org\r\n")
    rig.upstream().send(OK)
    response = client.response()
    assert response.status == 200 and response.header("access-control-allow-origin") == "*"
    assert response.header("access-control-allow-methods") is None  # preflight only


def test_cors_origin_list_echoes_allowed_origins_and_proxies_other_preflights():
    rig = Rig(web({NGINX + "enable-cors": "true", NGINX + "cors-allow-origin": "https://a.org, https://*.b.org",
                   NGINX + "cors-allow-credentials": "false", NGINX + "cors-expose-headers": "X-Total"}))
    answer = get(rig, method=b"OPTIONS", headers=b"Origin: https://app.b.org\r\n").response()
    assert answer.status == 204 and answer.header("access-control-allow-origin") == "https://app.b.org"
    assert answer.header("access-control-allow-credentials") is None
    assert answer.header("access-control-expose-headers") == "X-Total"
    get(rig, method=b"OPTIONS", headers=b"Origin: https://evil.org\r\n")
    assert len(rig.upstreams) == 1  # not an allowed origin: the upstream answers
    rig.upstream().send(OK)


# --- requests as the upstream gets them -----------------------------------------------------------

def test_upstream_vhost_and_x_forwarded_prefix():
    rig = Rig(web({NGINX + "upstream-vhost": "internal.svc:8080", NGINX + "x-forwarded-prefix": "/api"}))
    get(rig, "/x?y=1")
    line, fields = upstream_request(rig)
    assert line == b"GET /x?y=1 HTTP/1.1"
    assert fields["host"] == "internal.svc:8080" and fields["x-forwarded-host"] == "a.com"
    assert fields["x-forwarded-prefix"] == "/api"


@pytest.mark.parametrize("target, sent", [
    ("/something", b"GET / HTTP/1.1"),
    ("/something/", b"GET / HTTP/1.1"),
    ("/something/new?a=1", b"GET /new?a=1 HTTP/1.1"),
    ("/SomeThing/a%20b", b"GET /a%20b HTTP/1.1"),  # case-insensitive; the decoded path re-quoted
])
def test_rewrite_target_with_capture_groups(target, sent):
    rig = Rig(web({NGINX + "use-regex": "true", NGINX + "rewrite-target": "/$2"},
                  path("/something(/|$)(.*)", "web", path_type="ImplementationSpecific")))
    get(rig, target)
    assert upstream_request(rig)[0] == sent


def test_regex_host_tries_longest_path_first_and_other_ingresses_paths_become_regexes():
    config = compile_config(
        ingress("web", rule("a.com", path("/", "web"), path("/api/v[0-9]+", "api")),
                annotations={NGINX + "use-regex": "true"}),
        ingress("docs", rule("a.com", path("/docs", "api"))),
        svc_with_endpoints("web"), svc_with_endpoints("api", ("10.0.0.2",)))
    rig = Rig(config)
    get(rig, "/api/v2/x")
    get(rig, "/API/v1")
    get(rig, "/api/vx")
    get(rig, "/DOCS/a")  # the other Ingress's path is a case-insensitive regex too, as in ingress-nginx
    assert rig.dialed == [("10.0.0.2", 8080), ("10.0.0.2", 8080), ("10.0.0.1", 8080), ("10.0.0.2", 8080)]


def test_rewrite_without_regex_sends_the_whole_uri_to_the_target():
    rig = Rig(web({NGINX + "rewrite-target": "/"}, path("/app", "web")))
    get(rig, "/app/deep/page?q=1")
    assert upstream_request(rig)[0] == b"GET /?q=1 HTTP/1.1"  # nginx replaces the whole URI


# --- hosts ---------------------------------------------------------------------------------------

def test_from_to_www_redirect_both_ways():
    rig = Rig(web({NGINX + "from-to-www-redirect": "true"}, host="www.a.com"))
    response = get(rig, "/x?y=1", host="a.com").response()
    assert (response.status, response.header("location")) == (308, "http://www.a.com/x?y=1")
    rig = Rig(web({NGINX + "from-to-www-redirect": "true"}, host="a.com"))
    assert get(rig, "/", host="www.a.com").response().header("location") == "http://a.com/"


def test_server_alias_serves_the_rules_of_the_host():
    rig = Rig(web({NGINX + "server-alias": "b.com, *.c.com"}))
    get(rig, "/", host="b.com")
    get(rig, "/", host="x.c.com")
    assert rig.dialed == [("10.0.0.1", 8080)] * 2


# --- ConfigMap ------------------------------------------------------------------------------------

def test_configmap_hsts_keys_shape_the_header():
    rig = Rig(web(extra=[configmap(hsts_max_age="600", hsts_include_subdomains="false", hsts_preload="true")]))
    response = get(rig, "/nothing", host="unknown.com", scheme="https").response()
    assert response.header("strict-transport-security") == "max-age=600; preload"
    rig = Rig(web(extra=[configmap(hsts="false")]))
    client = get(rig, "/", scheme="https")
    rig.upstream().send(OK)
    assert client.response().header("strict-transport-security") is None


def test_configmap_body_size_is_the_default_and_an_annotation_wins():
    cm = configmap(proxy_body_size="10")
    rig = Rig(web(extra=[cm]))
    assert get(rig, method=b"POST", headers=b"Content-Length: 11\r\n").response().status == 413
    rig = Rig(web({NGINX + "proxy-body-size": "1m"}, extra=[cm]))
    get(rig, method=b"POST", headers=b"Content-Length: 11\r\n")
    assert rig.upstreams


# --- rate limits ----------------------------------------------------------------------------------

def status_of(rig, **request) -> int:
    """Send one request; an upstream that got it answers 200 (requests run one after another)."""
    client = get(rig, **request)
    if not client.received():
        rig.upstream().send(OK)
    return client.response().status


def test_limit_rps_allows_the_burst_then_refuses_until_the_bucket_drains():
    rig = Rig(web({NGINX + "limit-rps": "1", NGINX + "limit-burst-multiplier": "2"}))
    assert [status_of(rig) for _ in range(4)] == [200, 200, 200, 503]  # 1 + burst 2 at once
    assert status_of(rig, peer=("203.0.113.8", 1)) == 200  # another address: its own bucket
    rig.advance(1.0)
    assert [status_of(rig) for _ in range(2)] == [200, 503]  # one more after a second


def test_limit_whitelist_and_the_configmap_status_code():
    rig = Rig(web({NGINX + "limit-rpm": "1", NGINX + "limit-whitelist": "10.0.0.0/8"},
                  extra=[configmap(limit_req_status_code="429")]))
    assert [status_of(rig) for _ in range(7)] == [200] * 6 + [429]
    assert {status_of(rig, peer=("10.0.0.5", 1)) for _ in range(10)} == {200}


# --- access log -----------------------------------------------------------------------------------

def logged_targets(access_log) -> list[str]:
    return [line.split('"')[1].split(" ")[1] for line in access_log.lines]


def test_access_log_skips_urls_and_the_default_backend_as_ingress_nginx():
    from ingressd.dataplane.stats import AccessLog

    log = AccessLog(fd=-1)
    rig = Rig(web({NGINX + "app-root": "/app"}, extra=[configmap(skip_access_log_urls="/healthz,/x?y=1")]),
              access_log=log)
    for target, host in (("/healthz", "a.com"), ("/x?y=1", "a.com"), ("/x?y=2", "a.com"), ("/", "a.com"),
                         ("/nothing", "unknown.com")):
        status_of(rig, target=target, host=host)
    assert logged_targets(log) == ["/x?y=2", "/"]  # skipped exactly; undefined host not logged by default
    log = AccessLog(fd=-1)
    rig = Rig(web({NGINX + "enable-access-log": "false"}, extra=[configmap(enable_access_log_for_default_backend="true")]),
              access_log=log)
    status_of(rig)
    status_of(rig, host="unknown.com")
    assert logged_targets(log) == ["/"] and len(log.lines) == 1


# --- ConfigMap: connection limits -------------------------------------------------------------------

def test_keep_alive_requests_closes_after_the_nth_request_and_keep_alive_0_disables_it():
    rig = Rig(web(extra=[configmap(keep_alive_requests="2")]))
    client = rig.client()
    for _ in range(2):
        client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
        rig.upstream().send(OK)
    assert [r.header("connection") for r in client.responses()] == [None, "close"] and client.closed
    rig = Rig(web(extra=[configmap(keep_alive="0")]))
    client = get(rig)
    rig.upstream().send(OK)
    assert client.response().header("connection") == "close"


def test_client_header_timeout_and_large_client_header_buffers():
    rig = Rig(web(extra=[configmap(client_header_timeout="5s", large_client_header_buffers="2 1k")]))
    slow = rig.client()
    slow.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n")
    rig.advance(7)
    assert slow.closed
    big = rig.client()
    big.send(b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Big: " + b"x" * 2100 + b"\r\n\r\n")
    assert big.response().status == 431


def test_http_redirect_code_and_upstream_keepalive_requests():
    rig = Rig(web(tls=[{"hosts": ["a.com"]}], extra=[configmap(http_redirect_code="301",
                                                                upstream_keepalive_requests="1")]))
    assert get(rig).response().status == 301
    for _ in range(2):
        status_of(rig, scheme="https")
    assert len(rig.dialed) == 2  # one request per upstream connection
