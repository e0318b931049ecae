"""Routing against a running ingressd: hosts, paths, merging, conflicts, backends and upstream errors.

One ingressd for the whole module; no test here changes its manifests.
"""

from __future__ import annotations

import socket
import time

import pytest

from support import manifests as m
from support.ingressd import free_port, launch

pytestmark = pytest.mark.timeout(120)

OLD = "2020-01-01T00:00:00Z"
NEW = "2021-01-01T00:00:00Z"
TIE = "2020-06-01T00:00:00Z"


@pytest.fixture(scope="module")
def blackhole():
    """A port whose connections never complete: a listener with a full backlog that never accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=2)
    yield listener.getsockname()[1]
    filler.close()
    listener.close()


@pytest.fixture(scope="module")
def rt(tmp_path_factory, backend, blackhole):
    refused_port = free_port()
    services = backend.services("a", "b", "c", "d", "e", "f", "rr")
    services += [
        # One Service, two named ports, each to a different backend listener.
        m.service("svc-multi", [m.port_spec("web", 8080, "web"), m.port_spec("admin", 8081, "admin")]),
        m.endpoint_slice("svc-multi", [("web", backend.port("a")), ("admin", backend.port("b"))], ["127.0.0.1"]),
        m.external_name_service("svc-external", "localhost", backend.port("c")),
        *m.service_with_endpoints("svc-notready", backend.port("a"), ready=False),
        m.service("svc-noslice", [m.port_spec("http", 80, "http")]),
        *m.service_with_endpoints("svc-refused", refused_port),
        *m.service_with_endpoints("svc-blackhole", blackhole),
        # The older v1 Endpoints instead of an EndpointSlice.
        m.service("svc-legacy", [m.port_spec("http", 80, "http")]),
        m.endpoints_v1("svc-legacy", [("http", backend.port("e"))], ["127.0.0.1"]),
        # No namespace: "default".
        *m.service_with_endpoints("svc-nons", backend.port("f"), namespace=None),
        # Namespace "team" has its own Service.
        *m.service_with_endpoints("svc-team", backend.port("d"), namespace="team"),
        # Kinds ingressd does not use are ignored.
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "b"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}},
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": "anything"},
    ]
    hosts = [
        m.ingress("ing-wild", [m.rule("*.wild.example.com", m.path("/", "svc-a"))]),
        m.ingress("ing-exact", [m.rule("exact.wild.example.com", m.path("/", "svc-b"))]),
        m.ingress("ing-anyhost", [m.rule(None, m.path("/anyhost", "svc-c"))]),
    ]
    paths = [
        m.ingress("ing-paths", [m.rule(
            "paths.example.com",
            m.path("/", "svc-c", type="Prefix"),
            m.path("/foo", "svc-a", type="Exact"),
            m.path("/foo", "svc-b", type="Prefix"),
            m.path("/foo/bar/", "svc-d", type="Prefix"),
            m.path("/impl", "svc-e", type="ImplementationSpecific"),
            m.path("/exact", "svc-f", type="Exact"),
        )]),
    ]
    merge = [
        m.ingress("ing-merge-one", [m.rule("merge.example.com", m.path("/one", "svc-a"))]),
        m.ingress("ing-merge-two", [m.rule("merge.example.com", m.path("/two", "svc-b"))]),
    ]
    # Newer first in the file and with a name that sorts first: only the timestamp can pick "old".
    conflict = [
        m.ingress("ing-conflict-new", [m.rule("conflict.example.com", m.path("/same", "svc-a"),
                                              m.path("/typed", "svc-c", type="Exact"))],
                  creation_timestamp=NEW),
        m.ingress("ing-conflict-old", [m.rule("conflict.example.com", m.path("/same", "svc-b"),
                                              m.path("/typed", "svc-d", type="Prefix"))],
                  creation_timestamp=OLD),
        m.ingress("ing-tie-bbb", [m.rule("tie.example.com", m.path("/", "svc-f"))], creation_timestamp=TIE),
        m.ingress("ing-tie-aaa", [m.rule("tie.example.com", m.path("/", "svc-e"))], creation_timestamp=TIE),
    ]
    backends = [
        m.ingress("ing-rr", [m.rule("rr.example.com", m.path("/", "svc-rr"))]),
        m.ingress("ing-ports", [m.rule(
            "ports.example.com",
            m.path("/byname", "svc-multi", "admin"),
            m.path("/bynumber", "svc-multi", 8081),
            m.path("/web", "svc-multi", 8080),
            m.path("/webname", "svc-multi", "web"),
        )]),
        m.ingress("ing-external", [m.rule("external.example.com", m.path("/", "svc-external", backend.port("c")))]),
        m.ingress("ing-errors", [m.rule(
            "errors.example.com",
            m.path("/missing", "svc-missing"),
            m.path("/notready", "svc-notready"),
            m.path("/noslice", "svc-noslice"),
            m.path("/refused", "svc-refused"),
            m.path("/close", "svc-a"),
        )]),
        m.ingress("ing-timeout", [m.rule("timeout.example.com", m.path("/", "svc-a"))],
                  annotations={"proxy-read-timeout": "1"}),
        m.ingress("ing-connect-timeout", [m.rule("ctimeout.example.com", m.path("/", "svc-blackhole"))],
                  annotations={"proxy-connect-timeout": "1"}),
        m.ingress("ing-legacy", [m.rule("legacy.example.com", m.path("/", "svc-legacy"))]),
        m.ingress("ing-nons", [m.rule("nons.example.com", m.path("/", "svc-nons"))], namespace=None),
        m.ingress("ing-team", [m.rule("team.example.com", m.path("/own", "svc-team"), m.path("/other", "svc-a"))],
                  namespace="team"),
    ]
    inst = launch(tmp_path_factory.mktemp("routing"), {
        "services.yaml": services,
        "hosts.yaml": hosts,
        "paths.yml": paths,
        "merge/merge.yaml": merge,
        "conflict.yaml": conflict,
        "backends.yaml": backends,
    })
    yield inst
    inst.stop()


# --- default answers ------------------------------------------------------------------------------


def test_unknown_host_without_default_backend_is_404(rt):
    r = rt.get("/some/where", "nobody.example.org")
    assert r.status == 404
    assert "404" in r.text


def test_known_host_unmatched_path_is_404(rt):
    r = rt.get("/three", "merge.example.com")
    assert r.status == 404
    assert "404" in r.text


# --- hosts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host, expected", [
    ("exact.wild.example.com", "b"),
    ("EXACT.Wild.Example.COM", "b"),                 # case-insensitive
    ("exact.wild.example.com:12345", "b"),           # port in Host ignored
    ("bar.wild.example.com", "a"),                   # wildcard: one extra label
    ("BAR.WILD.example.com:8080", "a"),
])
def test_host_matching(rt, host, expected):
    r = rt.get("/", host)
    assert r.status == 200, r
    assert r.name == expected


@pytest.mark.parametrize("host", ["wild.example.com", "a.bar.wild.example.com"])
def test_wildcard_matches_exactly_one_label(rt, host):
    assert rt.get("/", host).status == 404


def test_rule_without_host_matches_any_host(rt):
    for host in ("random.example.net", "another.test", "127.0.0.1"):
        r = rt.get("/anyhost/x", host)
        assert r.status == 200, (host, r)
        assert r.name == "c"


def test_host_header_is_passed_as_sent(rt):
    r = rt.get("/", "Exact.Wild.Example.com:12345")
    assert r.json()["header_map"]["host"] == "Exact.Wild.Example.com:12345"


# --- paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path, expected", [
    ("/", "c"),
    ("/foo", "a"),            # Exact beats Prefix for the same path
    ("/foo/", "b"),           # Exact does not match a trailing slash; Prefix does
    ("/foo/baz", "b"),
    ("/foobar", "c"),         # Prefix is element-wise
    ("/foo/bar", "d"),        # trailing slash in the rule ignored
    ("/foo/bar/", "d"),
    ("/foo/bar/x", "d"),      # longest wins
    ("/foo/barx", "b"),
    ("/impl", "e"),           # ImplementationSpecific = Prefix
    ("/impl/x/y", "e"),
    ("/implx", "c"),
    ("/exact", "f"),
    ("/exact/", "c"),
    ("/EXACT", "c"),          # case-sensitive
    ("/Foo", "c"),
    ("/foo?x=1", "a"),        # query ignored
    ("/foo/?next=/exact", "b"),
    ("/exact?q=/foo/bar", "f"),
])
def test_path_matching(rt, path, expected):
    r = rt.get(path, "paths.example.com")
    assert r.status == 200, r
    assert r.name == expected, (path, r.json()["path"])


def test_path_and_query_reach_upstream_unchanged(rt):
    r = rt.get("/foo/bar/x%20y?a=1&b=%2F", "paths.example.com")
    assert r.json()["target"] == "/foo/bar/x%20y?a=1&b=%2F"


# --- several Ingresses ----------------------------------------------------------------------------


def test_ingresses_for_one_host_merge(rt):
    assert rt.get("/one", "merge.example.com").name == "a"
    assert rt.get("/two/x", "merge.example.com").name == "b"


def test_conflict_oldest_ingress_wins(rt):
    r = rt.get("/same", "conflict.example.com")
    assert r.status == 200
    assert r.name == "b"


def test_same_path_different_type_both_kept(rt):
    assert rt.get("/typed", "conflict.example.com").name == "c"        # Exact from the newer Ingress
    assert rt.get("/typed/more", "conflict.example.com").name == "d"   # Prefix from the older Ingress


def test_conflict_same_timestamp_namespace_name_order(rt):
    assert rt.get("/", "tie.example.com").name == "e"


# --- backends -------------------------------------------------------------------------------------


def test_round_robin_reaches_all_ten_endpoints(rt, backend):
    seen: set[str] = set()
    for _ in range(100):
        r = rt.get("/", "rr.example.com")
        assert r.status == 200, r
        seen.add(r.json()["addr"])
    assert seen == set(backend.addrs["rr"])


@pytest.mark.parametrize("path, expected", [
    ("/byname", "b"),
    ("/bynumber", "b"),
    ("/web", "a"),
    ("/webname", "a"),
])
def test_service_port_by_name_and_number(rt, path, expected):
    r = rt.get(path, "ports.example.com")
    assert r.status == 200, r
    assert r.name == expected


def test_external_name_service(rt):
    r = rt.get("/ext", "external.example.com")
    assert r.status == 200, r
    assert r.name == "c"


@pytest.mark.parametrize("path, service", [
    ("/missing", "default/svc-missing"),
    ("/notready", "default/svc-notready"),
    ("/noslice", "default/svc-noslice"),
])
def test_no_service_or_no_ready_endpoint_is_503(rt, path, service):
    r = rt.get(path, "errors.example.com")
    assert r.status == 503, r
    assert service in r.text


def test_connection_refused_is_502_fast(rt):
    start = time.monotonic()
    r = rt.get("/refused", "errors.example.com")
    elapsed = time.monotonic() - start
    assert r.status == 502, r
    assert elapsed < 2.0


def test_upstream_closing_without_response_is_502(rt):
    start = time.monotonic()
    r = rt.get("/close", "errors.example.com")
    assert r.status == 502, r
    assert time.monotonic() - start < 2.0


def test_upstream_read_timeout_is_504(rt):
    start = time.monotonic()
    r = rt.get("/slow?delay=4", "timeout.example.com")
    elapsed = time.monotonic() - start
    assert r.status == 504, r
    assert 0.9 <= elapsed < 3.5


def test_read_timeout_does_not_cut_responses_in_time(rt):
    r = rt.get("/slow?delay=0.3", "timeout.example.com")
    assert r.status == 200
    assert r.name == "a"


def test_upstream_connect_timeout_is_504(rt):
    start = time.monotonic()
    r = rt.get("/", "ctimeout.example.com")
    elapsed = time.monotonic() - start
    assert r.status == 504, r
    assert 0.9 <= elapsed < 3.5


# --- objects ----------------------------------------------------------------------------------------


def test_v1_endpoints_are_used(rt):
    r = rt.get("/", "legacy.example.com")
    assert r.status == 200, r
    assert r.name == "e"


def test_objects_without_namespace_are_in_default(rt):
    r = rt.get("/", "nons.example.com")
    assert r.status == 200, r
    assert r.name == "f"


def test_backend_service_resolved_in_the_ingress_namespace(rt):
    assert rt.get("/own", "team.example.com").name == "d"
    r = rt.get("/other", "team.example.com")  # svc-a exists in "default" only
    assert r.status == 503, r
    assert "team/svc-a" in r.text
