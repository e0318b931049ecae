"""The request policy (``dataplane.policy.answer_for``): pure, one case per rule, in order."""

from __future__ import annotations

from ingressd.dataplane.policy import answer_for
from unitkit import NGINX, compile_config, ingress, lookup, path, rule, svc_with_endpoints


def decide(config, host="a.com", url="/x?q=1", *, tls=False, body_length=-1, challenges=None, https_port=443):
    route = lookup(config, host, url)
    return answer_for(route, host, route_path(url), url.encode(), tls=tls, scheme="https" if tls else "http",
                      body_length=body_length, challenges=challenges or {}, https_port=https_port)


def route_path(url: str) -> str:
    return url.partition("?")[0]


def web(annotations=None, tls=None):
    return compile_config(ingress("web", rule("a.com", path("/", "web")), annotations=annotations, tls=tls),
                          svc_with_endpoints("web"))


def test_a_routed_request_is_proxied():
    assert decide(web()) is None


def test_body_over_the_limit_is_413_and_closes_before_anything_else():
    answer = decide(web({NGINX + "permanent-redirect": "https://b.com/"}), body_length=2 << 20)
    assert answer.status == 413 and answer.close
    assert decide(web({NGINX + "proxy-body-size": "0"}), body_length=10 << 30) is None  # "0": unlimited


def test_challenge_answer_comes_before_the_https_redirect():
    config = web(tls=[{"hosts": ["a.com"]}])
    answer = decide(config, url="/.well-known/acme-challenge/tok", challenges={"tok": b"tok.key"})
    assert (answer.status, answer.body, answer.hsts) == (200, b"tok.key", False)
    # an unknown token is not redirected either (ingress-nginx exempts the path): it is proxied
    assert decide(config, url="/.well-known/acme-challenge/other") is None


def test_plain_http_to_a_tls_host_is_redirected_with_the_request_target():
    config = web(tls=[{"hosts": ["a.com"]}])
    assert decide(config).location == "https://a.com/x?q=1" and decide(config).status == 308
    assert decide(config, https_port=8443).location == "https://a.com:8443/x?q=1"
    assert decide(config, tls=True) is None


def test_redirect_annotations_render_their_template():
    answer = decide(web({NGINX + "permanent-redirect": "https://b.com$request_uri"}))
    assert (answer.status, answer.location) == (301, "https://b.com/x?q=1")


def test_default_backend_is_404_and_a_service_without_endpoints_503():
    assert decide(web(), host="other.com").status == 404
    config = compile_config(ingress("web", rule("a.com", path("/", "gone"))))
    answer = decide(config)
    assert answer.status == 503 and b"service default/gone not found" in answer.body
