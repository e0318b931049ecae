"""Default backends: an Ingress's spec.defaultBackend (oldest wins) and --default-backend-service."""

from __future__ import annotations

import pytest

from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def with_spec_default(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("spec-default"), {
        "svc.yaml": backend.services("a", "b", "c"),
        "ing.yaml": [
            # Newer first in the file, and its name sorts first: only creationTimestamp picks "old".
            m.ingress("ing-a-new", [m.rule("db.example.com", m.path("/only", "svc-b"))],
                      default_backend=m.backend("svc-a"), creation_timestamp="2022-03-01T00:00:00Z"),
            m.ingress("ing-z-old", default_backend=m.backend("svc-c"),
                      creation_timestamp="2019-03-01T00:00:00Z"),
        ],
    })
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def with_flag_default(tmp_path_factory, backend):
    inst = launch(tmp_path_factory.mktemp("flag-default"), {
        "svc.yaml": backend.services("b", "d"),
        "ing.yaml": [m.ingress("ing-x", [m.rule("x.example.com", m.path("/only", "svc-b"))])],
    }, args=["--default-backend-service", "default/svc-d:80"])
    yield inst
    inst.stop()


def test_unmatched_host_goes_to_oldest_spec_default_backend(with_spec_default):
    r = with_spec_default.get("/anything", "unknown.example.org")
    assert r.status == 200, r
    assert r.name == "c"


def test_known_host_unmatched_path_goes_to_spec_default_backend(with_spec_default):
    r = with_spec_default.get("/other", "db.example.com")
    assert r.status == 200, r
    assert r.name == "c"
    assert with_spec_default.get("/only/x", "db.example.com").name == "b"


def test_default_backend_service_flag_for_unmatched_host(with_flag_default):
    r = with_flag_default.get("/whatever?x=1", "unknown.example.org")
    assert r.status == 200, r
    assert r.name == "d"
    assert r.json()["target"] == "/whatever?x=1"


def test_default_backend_service_flag_for_unmatched_path(with_flag_default):
    assert with_flag_default.get("/other", "x.example.com").name == "d"
    assert with_flag_default.get("/only", "x.example.com").name == "b"
