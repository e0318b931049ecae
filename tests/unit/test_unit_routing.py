"""Routing semantics from issue 2, through the translator and the compiled table.

Each test compiles Ingress documents with ``translate`` and asks the route table which Service
answers a (host, path) as the data plane would (path normalized, query string removed).
"""

from __future__ import annotations

import pytest

from ingressd.routing import HostRoutes, Route, RouteTable, normalize_path
from unitkit import compile_config, ingress, lookup, path, rule, served_by

# --- paths ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paths_config():
    return compile_config(ingress(
        "web",
        rule("foo.com",
             path("/exact", "exact", path_type="Exact"),
             path("/exact-slash/", "exact-slash", path_type="Exact"),
             path("/foo", "foo-prefix"),
             path("/foo/bar", "foobar-prefix"),
             path("/trail/", "trail-prefix"),
             path("/impl", "impl", path_type="ImplementationSpecific"),
             path("/same", "same-prefix"),
             path("/same", "same-exact", path_type="Exact"),
             path("/", "root")),
    ))


@pytest.mark.parametrize("request_path, expected", [
    ("/exact", "exact"),
    ("/exact/", "root"),          # Exact: /exact does not match /exact/
    ("/exact/x", "root"),
    ("/EXACT", "root"),           # case-sensitive
    ("/exact-slash/", "exact-slash"),
    ("/exact-slash", "root"),
])
def test_exact_path_matches_only_itself_case_sensitively(paths_config, request_path, expected):
    assert served_by(paths_config, "foo.com", request_path) == expected


@pytest.mark.parametrize("request_path, expected", [
    ("/foo", "foo-prefix"),
    ("/foo/", "foo-prefix"),
    ("/foo/baz", "foo-prefix"),
    ("/foo/baz/qux", "foo-prefix"),
    ("/foobar", "root"),          # element-wise: /foo does not match /foobar
    ("/fo", "root"),
    ("/Foo", "root"),             # prefix matching is case-sensitive too
])
def test_prefix_matches_element_wise(paths_config, request_path, expected):
    assert served_by(paths_config, "foo.com", request_path) == expected


@pytest.mark.parametrize("request_path, expected", [
    ("/foo/bar", "foobar-prefix"),
    ("/foo/bar/", "foobar-prefix"),
    ("/foo/bar/x", "foobar-prefix"),
    ("/foo/barx", "foo-prefix"),
])
def test_longest_matching_prefix_wins(paths_config, request_path, expected):
    assert served_by(paths_config, "foo.com", request_path) == expected


@pytest.mark.parametrize("request_path", ["/trail", "/trail/", "/trail/x"])
def test_trailing_slash_in_prefix_rule_is_ignored(paths_config, request_path):
    assert served_by(paths_config, "foo.com", request_path) == "trail-prefix"


def test_trailing_slash_rule_does_not_match_sibling_with_same_start(paths_config):
    assert served_by(paths_config, "foo.com", "/trailer") == "root"


@pytest.mark.parametrize("request_path, expected", [
    ("/impl", "impl"), ("/impl/", "impl"), ("/impl/x", "impl"), ("/implx", "root"),
])
def test_implementation_specific_behaves_as_prefix(paths_config, request_path, expected):
    assert served_by(paths_config, "foo.com", request_path) == expected


def test_exact_beats_prefix_on_the_same_path(paths_config):
    assert served_by(paths_config, "foo.com", "/same") == "same-exact"
    assert served_by(paths_config, "foo.com", "/same/") == "same-prefix"
    assert served_by(paths_config, "foo.com", "/same/x") == "same-prefix"


def test_exact_beats_prefix_regardless_of_declaration_order():
    config = compile_config(ingress("web", rule("foo.com",
                                                path("/same", "exact", path_type="Exact"),
                                                path("/same", "prefix"))))
    assert served_by(config, "foo.com", "/same") == "exact"
    assert served_by(config, "foo.com", "/same/x") == "prefix"


def test_longer_prefix_beats_shorter_exact_that_does_not_match():
    config = compile_config(ingress("web", rule("foo.com",
                                                path("/a", "exact-a", path_type="Exact"),
                                                path("/a/b", "prefix-ab"))))
    assert served_by(config, "foo.com", "/a/b/c") == "prefix-ab"
    assert served_by(config, "foo.com", "/a") == "exact-a"


def test_root_prefix_matches_everything():
    config = compile_config(ingress("web", rule("foo.com", path("/", "root"))))
    for p in ("/", "/a", "/a/b/", "/.well-known/x"):
        assert served_by(config, "foo.com", p) == "root"


def test_path_without_path_field_defaults_to_root_for_implementation_specific():
    config = compile_config(ingress("web", rule("foo.com", path(None, "any", path_type=None))))
    assert served_by(config, "foo.com", "/anything/at/all") == "any"


@pytest.mark.parametrize("request_path, expected", [
    ("/x/../foo/bar", "foobar-prefix"),
    ("/foo//bar", "foobar-prefix"),
    ("/foo/./bar", "foobar-prefix"),
    ("/foo/%62ar", "foobar-prefix"),
    ("/%65xact", "exact"),
])
def test_matching_uses_the_normalized_path(paths_config, request_path, expected):
    assert served_by(paths_config, "foo.com", request_path) == expected


# --- hosts ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts_config():
    return compile_config(ingress(
        "web",
        rule("foo.com", path("/", "exact-host")),
        rule("*.foo.com", path("/", "wildcard")),
        rule("special.foo.com", path("/", "special")),
        rule("Mixed.Example.COM", path("/", "mixed")),
        rule(None, path("/", "hostless")),
    ))


@pytest.mark.parametrize("host, expected", [
    ("foo.com", "exact-host"),
    ("bar.foo.com", "wildcard"),
    ("x-1.foo.com", "wildcard"),
    ("special.foo.com", "special"),       # exact beats wildcard
    ("baz.bar.foo.com", "hostless"),      # the wildcard is exactly one label
    ("other.org", "hostless"),            # a rule without host matches any host
    ("", "hostless"),
    ("mixed.example.com", "mixed"),       # rule hosts are case-insensitive
    ("xfoo.com", "hostless"),
])
def test_host_matching(hosts_config, host, expected):
    assert served_by(hosts_config, host, "/") == expected


def test_wildcard_does_not_match_the_bare_domain():
    config = compile_config(ingress("web", rule("*.foo.com", path("/", "wildcard"))))
    assert served_by(config, "foo.com", "/") is None
    assert served_by(config, "a.b.foo.com", "/") is None
    assert served_by(config, "a.foo.com", "/") == "wildcard"


def test_request_host_case_and_port_are_ignored():
    # The data plane lower-cases and strips the port (parse_host); together with it, the lookup
    # must route FOO.com:8080 like foo.com.
    from ingressd.dataplane.forward import parse_host
    config = compile_config(ingress("web", rule("foo.com", path("/", "svc"))))
    for raw in (b"FOO.com", b"foo.com:8080", b"Foo.Com:443", b"foo.com."):
        assert served_by(config, parse_host(raw), "/") == "svc", raw


def test_unknown_host_without_hostless_rules_gets_the_default_backend():
    config = compile_config(ingress("web", rule("foo.com", path("/", "svc"))))
    route = lookup(config, "nope.org", "/")
    assert route.backend is None and route.path_type == "Default"


def test_known_host_with_unmatched_path_gets_the_default_backend_not_hostless_rules():
    config = compile_config(ingress(
        "web",
        rule("foo.com", path("/app", "app")),
        rule(None, path("/", "hostless")),
    ))
    assert served_by(config, "foo.com", "/app/x") == "app"
    assert served_by(config, "foo.com", "/other") is None  # built-in 404
    assert served_by(config, "else.org", "/other") == "hostless"


def test_known_host_with_unmatched_path_gets_the_ingress_default_backend():
    config = compile_config(ingress("web", rule("foo.com", path("/app", "app")),
                                    default_backend={"service": {"name": "fallback", "port": {"number": 80}}}))
    assert served_by(config, "foo.com", "/other") == "fallback"
    assert served_by(config, "unknown.org", "/") == "fallback"


def test_wildcard_host_with_unmatched_path_gets_the_default_backend():
    config = compile_config(ingress("web", rule("*.foo.com", path("/app", "app")),
                                    rule(None, path("/", "hostless"))))
    assert served_by(config, "a.foo.com", "/other") is None


# --- merging and conflicts -------------------------------------------------------------------


def test_rules_for_one_host_merge_across_ingresses():
    config = compile_config(
        ingress("a", rule("foo.com", path("/a", "svc-a")), created="2024-01-01T00:00:00Z"),
        ingress("b", rule("foo.com", path("/b", "svc-b")), namespace="other", created="2024-01-02T00:00:00Z"),
        ingress("c", rule("foo.com", path("/", "svc-c"), path("/a", "svc-c", path_type="Exact")),
                created="2024-01-03T00:00:00Z"),
    )
    assert served_by(config, "foo.com", "/a/x") == "svc-a"
    assert served_by(config, "foo.com", "/b") == "svc-b"
    assert served_by(config, "foo.com", "/") == "svc-c"
    assert served_by(config, "foo.com", "/a") == "svc-c"  # Exact and Prefix on one path: both kept
    assert lookup(config, "foo.com", "/b").namespace == "other"
    assert not [d for d in config.diagnostics if "already" in d.message]


def test_conflict_oldest_creation_timestamp_wins_and_warns_naming_both():
    older = ingress("zzz-old", rule("foo.com", path("/api", "old")), namespace="zz",
                    created="2023-05-01T10:00:00Z")
    newer = ingress("aaa-new", rule("foo.com", path("/api", "new")), namespace="aa",
                    created="2024-05-01T10:00:00Z")
    for docs in ((older, newer), (newer, older)):  # declaration order does not matter
        config = compile_config(*docs)
        assert served_by(config, "foo.com", "/api") == "old"
        warnings = [d for d in config.diagnostics if d.severity == "warning" and "/api" in d.message]
        assert len(warnings) == 1, config.diagnostics
        text = str(warnings[0])
        assert "zz/zzz-old" in text and "aa/aaa-new" in text


def test_conflict_same_timestamp_falls_back_to_namespace_then_name():
    ts = "2024-01-01T00:00:00Z"
    docs = [
        ingress("b", rule("foo.com", path("/p", "ns-a-b")), namespace="a", created=ts),
        ingress("a", rule("foo.com", path("/p", "ns-b-a")), namespace="b", created=ts),
        ingress("a", rule("foo.com", path("/p", "ns-a-a")), namespace="a", created=ts),
    ]
    config = compile_config(*docs)
    assert served_by(config, "foo.com", "/p") == "ns-a-a"
    config = compile_config(*reversed(docs))
    assert served_by(config, "foo.com", "/p") == "ns-a-a"


def test_conflict_on_exact_paths_and_on_hostless_rules():
    config = compile_config(
        ingress("old", rule(None, path("/x", "old", path_type="Exact")), created="2020-01-01T00:00:00Z"),
        ingress("new", rule(None, path("/x", "new", path_type="Exact")), created="2021-01-01T00:00:00Z"),
    )
    assert served_by(config, "any.host", "/x") == "old"
    assert any("default/old" in str(d) and "default/new" in str(d) for d in config.diagnostics)


def test_conflict_compares_timestamps_as_instants_not_strings():
    # 10:00+05:00 is 05:00Z: older than 06:00Z although it sorts after it as text.
    config = compile_config(
        ingress("east", rule("foo.com", path("/p", "east")), created="2024-01-01T10:00:00+05:00"),
        ingress("utc", rule("foo.com", path("/p", "utc")), created="2024-01-01T06:00:00Z"),
    )
    assert served_by(config, "foo.com", "/p") == "east"


def test_conflict_timestamp_tie_between_yaml_datetime_and_string_uses_names():
    # The same instant, once unquoted in YAML (decoded to a datetime) and once quoted: a tie, so
    # namespace/name decides ("a" before "b").
    import yaml
    as_datetime = ingress("b", rule("foo.com", path("/p", "b")))
    as_datetime["metadata"]["creationTimestamp"] = yaml.safe_load("t: 2024-01-01T00:00:00Z")["t"]
    as_string = ingress("a", rule("foo.com", path("/p", "a")), created="2024-01-01T00:00:00Z")
    config = compile_config(as_datetime, as_string)
    assert served_by(config, "foo.com", "/p") == "a"


def test_prefix_rules_differing_only_by_trailing_slash_are_the_same_rule():
    config = compile_config(
        ingress("old", rule("foo.com", path("/api/", "old")), created="2020-01-01T00:00:00Z"),
        ingress("new", rule("foo.com", path("/api", "new")), created="2021-01-01T00:00:00Z"),
    )
    assert served_by(config, "foo.com", "/api") == "old"


def test_a_conflict_does_not_drop_the_rest_of_the_newer_ingress():
    config = compile_config(
        ingress("old", rule("foo.com", path("/api", "old")), created="2020-01-01T00:00:00Z"),
        ingress("new", rule("foo.com", path("/api", "new"), path("/web", "new-web")),
                created="2021-01-01T00:00:00Z"),
    )
    assert served_by(config, "foo.com", "/web") == "new-web"
    assert served_by(config, "foo.com", "/api") == "old"


def test_route_records_its_ingress_and_rule_path():
    config = compile_config(ingress("web", rule("foo.com", path("/app/", "svc")), namespace="prod"))
    route = lookup(config, "foo.com", "/app/x")
    assert (route.namespace, route.ingress, route.host, route.path, route.path_type) == (
        "prod", "web", "foo.com", "/app/", "Prefix")


# --- the table itself, without the translator -----------------------------------------------


def _route(name: str) -> Route:
    return Route("h", name, "Prefix")


def test_host_routes_match_directly():
    routes = HostRoutes(exact={"/a": _route("exact-a")}, prefix={"": _route("root"), "/a/b": _route("ab")})
    assert routes.match("/a").path == "exact-a"
    assert routes.match("/a/b/c").path == "ab"
    assert routes.match("/a/bc").path == "root"
    assert routes.match("/").path == "root"


def test_host_routes_without_root_return_none_for_unmatched():
    routes = HostRoutes(prefix={"/a": _route("a")})
    assert routes.match("/b") is None
    assert routes.match("/") is None
    assert routes.match("/ab") is None


def test_route_table_fallback_and_default():
    default = Route("", "", "Default")
    fallback = Route("foo.com", "", "Default")
    table = RouteTable(hosts={"foo.com": HostRoutes(prefix={"/a": _route("a")}, fallback=fallback)},
                       default=default)
    assert table.lookup("foo.com", "/a").path == "a"
    assert table.lookup("foo.com", "/b") is fallback
    assert table.lookup("bar.com", "/a") is default


# --- normalize_path ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("/", "/"),
    ("/a/b", "/a/b"),
    ("/a/b/", "/a/b/"),
    ("//a///b", "/a/b"),
    ("/a/./b", "/a/b"),
    ("/a/b/.", "/a/b/"),
    ("/a/../b", "/b"),
    ("/a/b/..", "/a/"),
    ("/a/..", "/"),
    ("/./", "/"),
    ("/%61%62c", "/abc"),
    ("/a%2Fb", "/a/b"),
    ("/a/%2e%2e/b", "/b"),
    ("/a/%2E/b", "/a/b"),
    ("/caf%C3%A9", "/café"),
    ("/.well-known/acme-challenge/tok", "/.well-known/acme-challenge/tok"),
    ("/..hidden/x", "/..hidden/x"),
    ("/a.b/c..d", "/a.b/c..d"),
])
def test_normalize_path(raw, expected):
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", ["/..", "/../", "/a/../..", "/../a", "/%2e%2e/etc/passwd", "/a/%2E%2E/%2e%2e/x",
                                 "/a%2F..%2F..%2Fetc"])
def test_normalize_path_above_root_is_none(raw):
    assert normalize_path(raw) is None
