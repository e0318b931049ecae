"""ingress-nginx annotations parsed into typed route options (issue 2, "Limits and timeouts" and
"Redirects")."""

from __future__ import annotations

import pytest

from ingressd.annotations import DEFAULT_OPTIONS, parse_route_options

N = "nginx.ingress.kubernetes.io/"
MIB = 1 << 20


def options(**annotations):
    return parse_route_options({N + k.replace("_", "-"): v for k, v in annotations.items()})


def test_defaults_are_ingress_nginx_defaults():
    opts, warnings = parse_route_options({})
    assert warnings == []
    assert opts.body_size_limit == MIB
    assert (opts.connect_timeout, opts.read_timeout, opts.send_timeout) == (5, 60, 60)
    assert opts.ssl_redirect is True and opts.force_ssl_redirect is False
    assert opts.redirect is None
    assert opts == DEFAULT_OPTIONS


def test_unrelated_annotations_are_ignored_silently():
    opts, warnings = parse_route_options({"kubernetes.io/ingress.class": "nginx", "example.com/x": "y",
                                          "cert-manager.io/cluster-issuer": "letsencrypt"})
    assert opts == DEFAULT_OPTIONS and warnings == []


# --- proxy-body-size ----------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("1m", MIB),
    ("8m", 8 * MIB),
    ("512k", 512 * 1024),
    ("2g", 2 << 30),
    ("1000", 1000),
    ("1000b", 1000),
    ("0", None),         # unlimited
    ("0m", None),
    (" 10m ", 10 * MIB),
    ("10M", 10 * MIB),   # nginx sizes are case-insensitive
])
def test_proxy_body_size_units(value, expected):
    opts, warnings = options(proxy_body_size=value)
    assert warnings == []
    assert opts.body_size_limit == expected


@pytest.mark.parametrize("value", ["", "lots", "1.5m", "-1", "10mb", "1t", "m", "1 m"])
def test_proxy_body_size_invalid_warns_and_keeps_default(value):
    opts, warnings = options(proxy_body_size=value)
    assert opts.body_size_limit == MIB
    assert len(warnings) == 1
    assert N + "proxy-body-size" in warnings[0] and repr(value) in warnings[0]
    assert "default" in warnings[0]


# --- timeouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, field", [
    ("proxy-connect-timeout", "connect_timeout"),
    ("proxy-read-timeout", "read_timeout"),
    ("proxy-send-timeout", "send_timeout"),
])
def test_timeouts_in_seconds(name, field):
    opts, warnings = parse_route_options({N + name: "3600"})
    assert warnings == [] and getattr(opts, field) == 3600.0
    opts, warnings = parse_route_options({N + name: "7"})
    assert getattr(opts, field) == 7.0
    # the other two keep their defaults
    others = {"connect_timeout": 5.0, "read_timeout": 60.0, "send_timeout": 60.0}
    del others[field]
    assert all(getattr(opts, f) == v for f, v in others.items())


@pytest.mark.parametrize("name, field, default", [
    ("proxy-connect-timeout", "connect_timeout", 5.0),
    ("proxy-read-timeout", "read_timeout", 60.0),
    ("proxy-send-timeout", "send_timeout", 60.0),
])
@pytest.mark.parametrize("value", ["soon", "", "-5", "1.5", "1m", "ten"])
def test_timeouts_invalid_warn_and_keep_default(name, field, default, value):
    opts, warnings = parse_route_options({N + name: value})
    assert getattr(opts, field) == default
    assert len(warnings) == 1 and N + name in warnings[0]


def test_one_bad_annotation_does_not_disturb_the_others():
    opts, warnings = options(proxy_body_size="huge", proxy_read_timeout="120", ssl_redirect="false")
    assert opts.body_size_limit == MIB
    assert opts.read_timeout == 120.0 and opts.ssl_redirect is False
    assert len(warnings) == 1 and "proxy-body-size" in warnings[0]


# --- ssl-redirect / force-ssl-redirect ----------------------------------------------------------


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ("True", True), ("FALSE", False)])
def test_ssl_redirect_flag(value, expected):
    opts, warnings = options(ssl_redirect=value)
    assert warnings == [] and opts.ssl_redirect is expected
    opts, warnings = options(force_ssl_redirect=value)
    assert warnings == [] and opts.force_ssl_redirect is expected


def test_ssl_redirect_garbage_warns_and_keeps_default():
    opts, warnings = options(ssl_redirect="maybe", force_ssl_redirect="perhaps")
    assert opts.ssl_redirect is True and opts.force_ssl_redirect is False
    assert len(warnings) == 2
    assert any("/ssl-redirect" in w for w in warnings) and any("force-ssl-redirect" in w for w in warnings)


# --- redirects ----------------------------------------------------------------------------------


def test_permanent_redirect_defaults_to_301():
    opts, warnings = options(permanent_redirect="https://mybinder.readthedocs.io")
    assert warnings == []
    assert opts.redirect.code == 301
    assert opts.redirect.render("http", "docs.mybinder.org", "/a?b=c") == "https://mybinder.readthedocs.io"


@pytest.mark.parametrize("code", ["300", "301", "302", "307", "308"])
def test_permanent_redirect_code(code):
    opts, warnings = options(permanent_redirect="https://x.org/", permanent_redirect_code=code)
    assert warnings == [] and opts.redirect.code == int(code)


@pytest.mark.parametrize("code", ["200", "404", "309", "abc", "", "-301"])
def test_permanent_redirect_code_out_of_range_warns_and_uses_301(code):
    opts, warnings = options(permanent_redirect="https://x.org/", permanent_redirect_code=code)
    assert opts.redirect.code == 301
    assert len(warnings) == 1 and "permanent-redirect-code" in warnings[0]


def test_temporal_redirect_defaults_to_302():
    opts, warnings = options(temporal_redirect="https://x.org/maintenance")
    assert warnings == [] and opts.redirect.code == 302
    assert opts.redirect.render("https", "a.org", "/") == "https://x.org/maintenance"


def test_temporal_redirect_code():
    opts, warnings = options(temporal_redirect="https://x.org/", temporal_redirect_code="307")
    assert warnings == [] and opts.redirect.code == 307


def test_temporal_redirect_wins_over_permanent():
    opts, warnings = options(permanent_redirect="https://perm.org/", temporal_redirect="https://temp.org/")
    assert opts.redirect.code == 302
    assert opts.redirect.render("http", "h", "/") == "https://temp.org/"


def test_invalid_temporal_redirect_falls_back_to_permanent():
    opts, warnings = options(permanent_redirect="https://perm.org/", temporal_redirect="not a url")
    assert opts.redirect.code == 301 and opts.redirect.render("http", "h", "/") == "https://perm.org/"
    assert len(warnings) == 1 and "temporal-redirect" in warnings[0]


@pytest.mark.parametrize("template, scheme, host, target, expected", [
    ("https://mybinder.readthedocs.io$request_uri", "http", "docs.mybinder.org", "/a/b?x=1&y=2",
     "https://mybinder.readthedocs.io/a/b?x=1&y=2"),
    ("https://mybinder.readthedocs.io$request_uri", "http", "docs.mybinder.org", "/",
     "https://mybinder.readthedocs.io/"),
    ("https://new.org${request_uri}", "http", "h", "/p", "https://new.org/p"),
    ("https://new.org$uri", "http", "h", "/p?q=1", "https://new.org/p"),
    ("https://new.org$uri$is_args$args", "http", "h", "/p?q=1", "https://new.org/p?q=1"),
    ("https://new.org$uri$is_args$args", "http", "h", "/p", "https://new.org/p"),
    ("https://new.org/x?$query_string", "http", "h", "/p?a=b", "https://new.org/x?a=b"),
    ("https://www.$host$request_uri", "https", "example.com", "/r", "https://www.example.com/r"),
    ("https://x.org/from-$scheme", "https", "example.com", "/r", "https://x.org/from-https"),
    ("https://$http_host/moved$request_uri", "http", "a.org", "/r", "https://a.org/moved/r"),
    ("https://$server_name/", "http", "a.org", "/r", "https://a.org/"),
    ("/new-home", "http", "a.org", "/old", "/new-home"),
])
def test_redirect_template_rendering(template, scheme, host, target, expected):
    opts, warnings = options(permanent_redirect=template)
    assert warnings == []
    assert opts.redirect.render(scheme, host, target) == expected


@pytest.mark.parametrize("value", [
    "https://x.org/\r\nSet-Cookie: a=b",
    "https://x.org/\nX: y",
    "https://x.org/\rX",
    "https://x.org/a b",
    "https://x.org/$evil",
    "https://x.org/${nope}",
    "https://x.org/$request_uri_extra",
    "javascript:alert(1)",
    "ftp://x.org/",
    "x.org/path",
    "",
    "https://x.org/\x00",
    "https://x.org/a\tb",
])
def test_redirect_rejects_unsafe_or_unknown_targets(value):
    opts, warnings = options(permanent_redirect=value)
    assert opts.redirect is None
    assert len(warnings) == 1 and N + "permanent-redirect" in warnings[0]


def test_redirect_literal_dollar_not_followed_by_a_name_is_kept():
    opts, warnings = options(permanent_redirect="https://x.org/price$")
    assert warnings == [] and opts.redirect.render("http", "h", "/") == "https://x.org/price$"


# --- unsupported annotations ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rewrite-target", "configuration-snippet", "affinity", "mirror-target"])
def test_known_unsupported_annotations_are_reported_not_silent(name):
    opts, warnings = parse_route_options({N + name: "x"})
    assert opts == DEFAULT_OPTIONS
    assert len(warnings) == 1 and N + name in warnings[0]


@pytest.mark.parametrize("annotations", [{N + "auth-url": "ftp://oauth2-proxy/oauth2/auth"},
                                         {N + "auth-type": "digest", N + "auth-secret": "s"},
                                         {N + "auth-tls-secret": "default/ca"}])
def test_authentication_ingressd_cannot_do_refuses_requests_instead_of_serving_them(annotations):
    opts, warnings = parse_route_options(annotations)
    assert opts.refused and any("get 503 instead of being served unauthenticated" in w for w in warnings)


def test_describe_lists_only_differences():
    assert DEFAULT_OPTIONS.describe() == "-"
    opts, _ = options(proxy_body_size="0", permanent_redirect="https://x.org$request_uri")
    text = opts.describe()
    assert "body_size_limit=unlimited" in text and "301" in text and "https://x.org$request_uri" in text


def test_auth_url_annotations():
    from ingressd.options.extauth import AuthRequest
    opts, warnings = parse_route_options({
        N + "auth-url": "https://$host/oauth2/auth", N + "auth-signin": "https://$host/oauth2/start?rd=$escaped_request_uri",
        N + "auth-response-headers": "X-Auth-Request-User, X-Auth-Request-Email", N + "auth-method": "post",
        N + "auth-cache-key": "$remote_user$http_authorization", N + "auth-cache-duration": "200 202 10m, 401 30s"})
    assert len(warnings) == 1 and "auth-cache-key is supported in part" in warnings[0] and opts.refused is None
    auth = opts.ext_auth
    assert auth.method == b"POST" and auth.response_headers == ("X-Auth-Request-User", "X-Auth-Request-Email")
    assert auth.cache_duration == ((frozenset({200, 202}), 600.0), (frozenset({401}), 30.0))
    request = AuthRequest(b"GET", "https", "a.org", b"a.org:8443", b"/p?q=1&r", "192.0.2.1",
                          [(b"Authorization", b"Basic dTpw")], b"id")
    assert auth.url.render(request) == "https://a.org/oauth2/auth"
    assert auth.cache_key.render(request) == "uBasic dTpw"
    assert auth.signin_url(request) == "https://a.org/oauth2/start?rd=%2Fp%3Fq%3D1%26r"  # rd given: kept
    opts, _ = parse_route_options({N + "auth-url": "http://auth/", N + "auth-signin": "https://login/start",
                                   N + "auth-signin-redirect-param": "next"})
    assert opts.ext_auth.signin_url(request) == "https://login/start?next=https://a.org:8443%2Fp%3Fq%3D1%26r"


@pytest.mark.parametrize("value", ["http://a/$evil", "http://a b/", "/relative", "http://a/\"x", "gopher://a/"])
def test_bad_auth_urls_refuse_requests(value):
    opts, warnings = parse_route_options({N + "auth-url": value})
    assert opts.ext_auth is None and opts.refused
    assert any("auth-url" in w for w in warnings)


def test_set_headers_replaces_client_headers():
    from ingressd.options.extauth import set_headers
    head = b"GET / HTTP/1.1\r\nHost: a\r\nx-auth-request-user: mallory\r\nX-Other: 1\r\n\r\n"
    out = set_headers(head, ("X-Auth-Request-User",), b"X-Auth-Request-User: alice\r\n")
    assert out == b"GET / HTTP/1.1\r\nHost: a\r\nX-Other: 1\r\nX-Auth-Request-User: alice\r\n\r\n"


def test_limit_connections():
    opts, warnings = parse_route_options({N + "limit-connections": "3", N + "limit-whitelist": "10.0.0.0/8"})
    limit = opts.conn_limit
    assert limit.limit == 3 and limit.status == 503 and limit.exempts("10.1.2.3") and not limit.exempts("192.0.2.1")
    assert [limit.acquire("192.0.2.1") for _ in range(4)] == [True, True, True, False]
    limit.release("192.0.2.1")
    assert limit.acquire("192.0.2.1")
    assert any("counted per worker" in w for w in warnings)
    assert parse_route_options({N + "limit-connections": "0"})[0].conn_limit is None
