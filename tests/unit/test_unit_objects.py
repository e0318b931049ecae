"""Parsing manifest documents into typed objects (issue 2, "Objects read from the directory")."""

from __future__ import annotations

import base64

import pytest

from ingressd.diagnostics import InvalidObject
from ingressd.objects import (EndpointSlice, Ingress, IngressClass, Service, TLSSecret, describe, flatten,
                              parse_object)
from unitkit import backend, cert_for, endpoint_slice, ingress, ingress_class, path, rule, service, tls_secret


def one(doc):
    result = parse_object(doc, "file.yaml")
    assert len(result) == 1, result
    return result[0]


def invalid(doc) -> str:
    with pytest.raises(InvalidObject) as info:
        parse_object(doc, "file.yaml")
    return str(info.value)


# --- Ingress ----------------------------------------------------------------------------------


def test_ingress_fields():
    ing = one(ingress("web", rule("Foo.Example.COM", path("/a", "svc-a", 8080, "Exact"), path("/b", "svc-b", "http")),
                      namespace="prod", created="2024-01-01T00:00:00Z", class_name="ingressd",
                      tls=[{"hosts": ["foo.example.com"], "secretName": "cert"}],
                      default_backend=backend("fallback", 80)))
    assert isinstance(ing, Ingress)
    assert ing.meta.ref == "Ingress prod/web" and ing.meta.origin == "file.yaml"
    assert ing.meta.creation_timestamp == "2024-01-01T00:00:00Z"
    assert ing.class_name == "ingressd"
    assert ing.default_backend.service == "fallback" and ing.default_backend.port_number == 80
    (r,) = ing.rules
    assert r.host == "foo.example.com"  # lower-cased
    a, b = r.paths
    assert (a.path, a.path_type, a.backend.service, a.backend.port_number) == ("/a", "Exact", "svc-a", 8080)
    assert (b.path, b.path_type, b.backend.service, b.backend.port_name) == ("/b", "Prefix", "svc-b", "http")
    assert ing.tls[0].hosts == ("foo.example.com",) and ing.tls[0].secret_name == "cert"


def test_objects_without_namespace_are_in_default():
    assert one(ingress("web", rule("a.com", path("/")))).meta.namespace == "default"
    assert one(service("svc")).meta.namespace == "default"
    assert one(endpoint_slice("s", "svc", ["10.0.0.1"])).meta.namespace == "default"
    assert one(tls_secret("c", *cert_for("a.com"))).meta.namespace == "default"


def test_legacy_class_annotation():
    doc = ingress("web", rule("a.com", path("/")), annotations={"kubernetes.io/ingress.class": "nginx"})
    assert one(doc).class_name == "nginx"
    assert one(ingress("web", rule("a.com", path("/")))).class_name is None


def test_rule_without_host_and_path_type_default():
    ing = one(ingress("web", rule(None, path(None, path_type=None))))
    assert ing.rules[0].host == ""
    assert ing.rules[0].paths[0].path == "/" and ing.rules[0].paths[0].path_type == "ImplementationSpecific"


def test_wildcard_host():
    assert one(ingress("web", rule("*.foo.com", path("/")))).rules[0].host == "*.foo.com"


def test_unquoted_annotation_values_become_strings():
    doc = ingress("web", rule("a.com", path("/")))
    doc["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/ssl-redirect": False,
                                      "nginx.ingress.kubernetes.io/proxy-read-timeout": 120}
    ann = one(doc).meta.annotations
    assert ann["nginx.ingress.kubernetes.io/ssl-redirect"] == "false"
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "120"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["metadata"].pop("name"), "metadata.name"),
    (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name"),
    (lambda d: d["metadata"].update(namespace="Bad NS"), "metadata.namespace"),
    (lambda d: d.update(spec={}), "spec"),
    (lambda d: d.update(spec="nope"), "spec"),
    (lambda d: d["spec"].update(rules="nope"), "spec.rules"),
    (lambda d: d["spec"]["rules"][0].update(host="foo.com:80"), "spec.rules[0].host"),
    (lambda d: d["spec"]["rules"][0].update(host="foo.*.com"), "spec.rules[0].host"),
    (lambda d: d["spec"]["rules"][0].update(host="*"), "spec.rules[0].host"),
    (lambda d: d["spec"]["rules"][0].update(host="bad host.com"), "spec.rules[0].host"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].update(pathType="Regex"),
     "spec.rules[0].http.paths[0].pathType"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].update(path="no-slash"), "spec.rules[0].http.paths[0].path"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].pop("path"), "spec.rules[0].http.paths[0].path"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].update(path="/a b"), "spec.rules[0].http.paths[0].path"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].update(path="/a\nb"), "spec.rules[0].http.paths[0].path"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].pop("backend"), "spec.rules[0].http.paths[0].backend"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].pop("name"),
     "spec.rules[0].http.paths[0].backend.service.name"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(port={}),
     "spec.rules[0].http.paths[0].backend.service.port"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(port={"number": 70000}),
     "spec.rules[0].http.paths[0].backend.service.port.number"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(port={"number": "80"}),
     "spec.rules[0].http.paths[0].backend.service.port.number"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(
        port={"number": 80, "name": "http"}), "spec.rules[0].http.paths[0].backend.service.port"),
    (lambda d: d["spec"]["rules"][0]["http"]["paths"][0].update(backend={"resource": {"kind": "Bucket"}}),
     "spec.rules[0].http.paths[0].backend.resource"),
    (lambda d: d["spec"].update(tls=[{"hosts": ["bad host"]}]), "spec.tls[0].hosts[0]"),
    (lambda d: d["spec"].update(tls=[{"hosts": "a.com"}]), "spec.tls[0].hosts"),
    (lambda d: d["metadata"].update(annotations=["a"]), "metadata.annotations"),
])
def test_invalid_ingress_names_the_field(mutate, field):
    doc = ingress("web", rule("foo.com", path("/", "svc")))
    mutate(doc)
    message = invalid(doc)
    assert field in message, message


def test_ingress_with_only_a_default_backend_is_valid():
    ing = one(ingress("dflt", default_backend=backend("fallback", "http")))
    assert ing.rules == () and ing.default_backend.port_name == "http"


@pytest.mark.parametrize("api_version", ["extensions/v1beta1", "networking.k8s.io/v1beta1"])
def test_old_ingress_api_versions_are_reported(api_version):
    doc = ingress("web", rule("foo.com", path("/", "svc")))
    doc["apiVersion"] = api_version
    assert "networking.k8s.io/v1" in invalid(doc)


# --- other kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cfg"}, "spec": {}},
    {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "le"}, "spec": {}},
    {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "s"}, "data": {"a": "YQ=="}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"password": "x"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}},
])
def test_other_kinds_are_ignored_without_error(doc):
    assert parse_object(doc, "file.yaml") == []


@pytest.mark.parametrize("doc", [None, "text", 42, ["a"], {"kind": "Ingress"}, {"apiVersion": "v1"}])
def test_documents_that_are_not_objects_are_invalid(doc):
    invalid(doc)


def test_ingress_class():
    cls = one(ingress_class("nginx", "k8s.io/ingress-nginx", default=True))
    assert isinstance(cls, IngressClass)
    assert cls.controller == "k8s.io/ingress-nginx" and cls.is_default is True
    assert cls.meta.ref == "IngressClass nginx"
    assert one(ingress_class("x", "a/b")).is_default is False


def test_service_ports_by_number_and_name():
    svc = one(service("web", ports=(("http", 80, "http"), ("metrics", 9100, 9090), (None, 81, None))))
    assert isinstance(svc, Service) and svc.type == "ClusterIP" and svc.external_name is None
    assert [(p.name, p.port, p.target_port) for p in svc.ports] == [
        ("http", 80, "http"), ("metrics", 9100, 9090), ("", 81, None)]


def test_external_name_service():
    svc = one(service("ext", type_="ExternalName", external_name="API.Example.net", ports=()))
    assert svc.type == "ExternalName" and svc.external_name == "api.example.net"


@pytest.mark.parametrize("doc, field", [
    (service("ext", type_="ExternalName", ports=()), "spec.externalName"),
    (service("web", ports=((None, 0, None),)), "spec.ports[0].port"),
    (service("web", ports=((None, 80, 0),)), "spec.ports[0].targetPort"),
])
def test_invalid_service_names_the_field(doc, field):
    assert field in invalid(doc)


def test_endpoint_slice_ready_addresses_and_ports():
    es = one(endpoint_slice("web-abc", "web", ["10.0.0.1", "10.0.0.2"], ports=(("http", 8080), ("m", 9090)),
                            not_ready=["10.0.0.3"]))
    assert isinstance(es, EndpointSlice)
    assert es.service_name == "web"
    assert es.ready_addresses == ("10.0.0.1", "10.0.0.2")
    assert [(p.name, p.port) for p in es.ports] == [("http", 8080), ("m", 9090)]


def test_endpoint_slice_needs_the_service_name_label():
    doc = endpoint_slice("web-abc", "web", ["10.0.0.1"])
    doc["metadata"]["labels"] = {}
    assert "kubernetes.io/service-name" in invalid(doc)


def test_endpoint_slice_udp_ports_are_ignored():
    doc = endpoint_slice("dns", "dns", ["10.0.0.1"], ports=(("dns", 53),))
    doc["ports"][0]["protocol"] = "UDP"
    assert one(doc).ports == ()


def test_old_endpoints_become_slices_with_ready_addresses_only():
    doc = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "prod"},
           "subsets": [
               {"addresses": [{"ip": "10.0.0.1"}], "notReadyAddresses": [{"ip": "10.0.0.9"}],
                "ports": [{"name": "http", "port": 8080}]},
               {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "http", "port": 8081}]},
           ]}
    (endpoints,) = parse_object(doc, "file.yaml")  # one object (keys are unique), each subset one part
    slices = endpoints.parts()
    assert len(slices) == 2
    assert all(isinstance(s, EndpointSlice) for s in slices)
    assert all(s.service_name == "web" and s.meta.namespace == "prod" for s in slices)
    assert sorted(a for s in slices for a in s.ready_addresses) == ["10.0.0.1", "10.0.0.2"]
    assert sorted(p.port for s in slices for p in s.ports) == [8080, 8081]


def test_old_endpoints_without_subsets():
    doc = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"}}
    slices = parse_object(doc, "file.yaml")
    assert all(s.ready_addresses == () for s in slices)


# --- TLS Secret -------------------------------------------------------------------------------


@pytest.mark.parametrize("string_data", [False, True])
def test_tls_secret_from_data_or_string_data(string_data):
    cert_pem, key_pem = cert_for("a.com")
    secret = one(tls_secret("cert", cert_pem, key_pem, namespace="team", string_data=string_data))
    assert isinstance(secret, TLSSecret)
    assert secret.cert_pem == cert_pem and secret.key_pem == key_pem
    assert secret.meta.ref == "Secret team/cert"


def test_tls_secret_data_accepts_line_wrapped_base64():
    # `base64 cert.pem` wraps at 76 columns; Kubernetes (Go's base64 decoder) ignores the newlines,
    # so such manifests apply fine in a cluster and must load here too.
    import textwrap
    cert_pem, key_pem = cert_for("a.com")
    doc = tls_secret("cert", cert_pem, key_pem)
    for key in ("tls.crt", "tls.key"):
        doc["data"][key] = "\n".join(textwrap.wrap(doc["data"][key], 76)) + "\n"
    secret = one(doc)
    assert secret.cert_pem == cert_pem and secret.key_pem == key_pem


def test_tls_secret_string_data_overrides_data():
    cert_pem, key_pem = cert_for("a.com")
    doc = tls_secret("cert", b"old", b"old")
    doc["stringData"] = {"tls.crt": cert_pem.decode(), "tls.key": key_pem.decode()}
    secret = one(doc)
    assert secret.cert_pem == cert_pem


@pytest.mark.parametrize("data, needle", [
    ({"tls.crt": "!!!not base64!!!", "tls.key": base64.b64encode(b"k").decode()}, "tls.crt"),
    ({"tls.crt": base64.b64encode(b"c").decode()}, "tls.key"),
    ({}, "tls.crt"),
    ({"tls.crt": 5, "tls.key": "eA=="}, "tls.crt"),
])
def test_invalid_tls_secret_names_the_key(data, needle):
    doc = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "s"}, "data": data}
    assert needle in invalid(doc)


# --- describe and flatten ---------------------------------------------------------------------


def test_describe():
    assert describe(ingress("web", rule("a.com", path("/")), namespace="prod")) == "Ingress prod/web"
    assert describe(ingress("web", rule("a.com", path("/")))) == "Ingress default/web"
    assert describe(ingress_class("nginx", "x/y")) == "IngressClass nginx"
    assert describe({"kind": "Service", "metadata": {"name": 5}}) == "Service"
    assert describe("garbage") is None


def test_flatten_list_kinds():
    a = ingress("a", rule("a.com", path("/")))
    b = service("b")
    assert flatten({"apiVersion": "v1", "kind": "List", "items": [a, b]}) == [a, b]
    assert flatten({"apiVersion": "networking.k8s.io/v1", "kind": "IngressList", "items": [a]}) == [a]
    assert flatten({"apiVersion": "v1", "kind": "List",
                    "items": [{"apiVersion": "v1", "kind": "List", "items": [a]}, b]}) == [a, b]
    assert flatten(a) == [a]
    assert flatten("text") == ["text"]


def test_objects_are_immutable():
    ing = one(ingress("web", rule("a.com", path("/"))))
    with pytest.raises(AttributeError):
        ing.rules = ()  # type: ignore[misc]
