"""Redirect annotations: permanent-redirect (+code), temporal-redirect, and mybinder's two forms."""

from __future__ import annotations

import pytest

from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rd(tmp_path_factory, backend):
    # No backend pod is needed: the redirecting Ingresses point at a Service that does not exist.
    def redirector(name, host, **annotations):
        return m.ingress(name, [m.rule(host, m.path("/", "svc-nowhere"))], annotations=annotations)

    inst = launch(tmp_path_factory.mktemp("redirects"), {
        "svc.yaml": backend.services("a"),
        "ing.yaml": [
            redirector("r-fixed", "fixed.example.com", **{"permanent-redirect": "https://example.org/fixed"}),
            redirector("r-308", "code.example.com", **{"permanent-redirect": "https://example.org/code",
                                                        "permanent-redirect-code": "308"}),
            redirector("r-temp", "temp.example.com", **{"temporal-redirect": "https://example.org/temp"}),
            redirector("r-both", "both.example.com", **{"permanent-redirect": "https://example.org/perm",
                                                         "temporal-redirect": "https://example.org/temp"}),
            redirector("r-binder", "docs.mybinder.org",
                       **{"permanent-redirect": "https://mybinder.readthedocs.io$request_uri"}),
            redirector("r-bad-code", "badcode.example.com", **{"permanent-redirect": "https://example.org/bc",
                                                                "permanent-redirect-code": "999"}),
            m.ingress("not-redirected", [m.rule("plain.example.com", m.path("/", "svc-a"))]),
        ],
    })
    yield inst
    inst.stop()


@pytest.mark.parametrize("path", ["/", "/any/path?x=1"])
def test_permanent_redirect_fixed_url(rd, path):
    r = rd.get(path, "fixed.example.com")
    assert r.status == 301, r
    assert r.header("location") == "https://example.org/fixed"


def test_permanent_redirect_code(rd):
    r = rd.get("/x", "code.example.com")
    assert r.status == 308, r
    assert r.header("location") == "https://example.org/code"


def test_permanent_redirect_bad_code_falls_back_to_301(rd):
    r = rd.get("/x", "badcode.example.com")
    assert r.status == 301, r
    assert r.header("location") == "https://example.org/bc"


def test_temporal_redirect(rd):
    r = rd.get("/x", "temp.example.com")
    assert r.status == 302, r
    assert r.header("location") == "https://example.org/temp"


def test_temporal_wins_over_permanent(rd):
    r = rd.get("/x", "both.example.com")
    assert r.status == 302, r
    assert r.header("location") == "https://example.org/temp"


def test_redirect_keeping_path_and_query(rd):
    r = rd.get("/some/path?q=1", "docs.mybinder.org")
    assert r.status == 301, r
    assert r.header("location") == "https://mybinder.readthedocs.io/some/path?q=1"
    r = rd.get("/", "docs.mybinder.org")
    assert r.header("location") == "https://mybinder.readthedocs.io/"


def test_other_hosts_not_redirected(rd):
    r = rd.get("/x", "plain.example.com")
    assert r.status == 200
    assert r.header("location") is None
