"""Ingress classes: spec.ingressClassName, the legacy annotation, --ingress-class, IngressClass objects."""

from __future__ import annotations

import pytest

from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(120)


def class_ingresses():
    return [
        m.ingress("c-ingressd", [m.rule("c1.example.com", m.path("/", "svc-a"))], class_name="ingressd"),
        m.ingress("c-nginx", [m.rule("c2.example.com", m.path("/", "svc-a"))], class_name="nginx"),
        m.ingress("c-legacy-nginx", [m.rule("c3.example.com", m.path("/", "svc-a"))], legacy_class="nginx"),
        m.ingress("c-legacy-ingressd", [m.rule("c4.example.com", m.path("/", "svc-a"))], legacy_class="ingressd"),
        m.ingress("c-none", [m.rule("c5.example.com", m.path("/", "svc-a"))]),
        m.ingress("c-custom", [m.rule("c6.example.com", m.path("/", "svc-a"))], class_name="custom"),
    ]


def start(tmp_path_factory, backend, name, extra_docs=(), args=()):
    return launch(tmp_path_factory.mktemp(name), {
        "svc.yaml": backend.services("a"),
        "ing.yaml": class_ingresses(),
        "classes.yaml": list(extra_docs),
    }, args=args)


@pytest.fixture(scope="module")
def default_flags(tmp_path_factory, backend):
    inst = start(tmp_path_factory, backend, "classes-default")
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def nginx_flag(tmp_path_factory, backend):
    inst = start(tmp_path_factory, backend, "classes-nginx", args=["--ingress-class", "nginx"])
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def with_classes(tmp_path_factory, backend):
    inst = start(tmp_path_factory, backend, "classes-objects", extra_docs=[
        m.ingress_class("other", controller="example.com/other-controller", default=True),
        m.ingress_class("custom", controller="ingressd.io/ingress-controller"),
    ])
    yield inst
    inst.stop()


@pytest.mark.parametrize("host, served", [
    ("c1.example.com", True),    # ingressClassName: ingressd (the default --ingress-class)
    ("c2.example.com", False),   # ingressClassName: nginx
    ("c3.example.com", False),   # legacy annotation nginx
    ("c4.example.com", True),    # legacy annotation ingressd
    ("c5.example.com", True),    # no class, no default IngressClass elsewhere
    ("c6.example.com", False),   # unknown class "custom" without an IngressClass
])
def test_default_ingress_class(default_flags, host, served):
    assert default_flags.get("/", host).status == (200 if served else 404)


@pytest.mark.parametrize("host, served", [
    ("c2.example.com", True),    # adopted: ingressClassName nginx
    ("c3.example.com", True),    # adopted: legacy annotation nginx
    ("c5.example.com", True),    # no class
])
def test_ingress_class_flag_adopts_nginx(nginx_flag, host, served):
    assert nginx_flag.get("/", host).status == (200 if served else 404)


@pytest.mark.parametrize("host, served", [
    ("c1.example.com", True),    # its name is one of --ingress-class
    ("c2.example.com", False),
    ("c5.example.com", False),   # class-less, but the default IngressClass is another controller's
    ("c6.example.com", True),    # IngressClass "custom" has spec.controller ingressd.io/ingress-controller
])
def test_ingress_class_objects(with_classes, host, served):
    assert with_classes.get("/", host).status == (200 if served else 404)
