"""The translator: classes, TLS per host, default backends, backend resolution, redirect flags and
diagnostics, as issue 2 specifies them."""

from __future__ import annotations

import pytest

from ingressd.config import CONTROLLER_NAME, Settings, Snapshot
from ingressd.translate import translate
from unitkit import (NGINX, backend, cert_for, compile_config, endpoint_slice, ingress, ingress_class, lookup,
                     objects, path, rule, served_by, service, svc_with_endpoints, tls_secret)

# --- classes ----------------------------------------------------------------------------------


def _web(name="web", host="foo.com", **kw):
    return ingress(name, rule(host, path("/", name)), **kw)


def _legacy(name, cls, host="foo.com"):
    return _web(name, host, annotations={"kubernetes.io/ingress.class": cls})


def test_classless_ingress_is_served_without_ingress_classes():
    assert served_by(compile_config(_web()), "foo.com", "/") == "web"


@pytest.mark.parametrize("doc, classes, served", [
    (_web(class_name="ingressd"), ("ingressd",), True),
    (_web(class_name="nginx"), ("ingressd",), False),
    (_web(class_name="nginx"), ("ingressd", "nginx"), True),
    (_web(class_name="nginx"), ("nginx",), True),
    (_web(class_name="ingressd"), ("nginx",), False),
    (_legacy("web", "nginx"), ("ingressd",), False),
    (_legacy("web", "nginx"), ("ingressd", "nginx"), True),
    (_legacy("web", "ingressd"), ("ingressd",), True),
    (_legacy("web", "traefik"), ("ingressd", "nginx"), False),
])
def test_ingress_naming_a_class_is_served_only_for_our_classes(doc, classes, served):
    config = compile_config(doc, ingress_classes=classes)
    assert (served_by(config, "foo.com", "/") == "web") is served
    assert config.ingress_count == (1 if served else 0)


def test_ingress_class_with_our_controller_is_ours_whatever_its_name():
    config = compile_config(ingress_class("custom", CONTROLLER_NAME), _web(class_name="custom"))
    assert served_by(config, "foo.com", "/") == "web"
    config = compile_config(ingress_class("custom", CONTROLLER_NAME), _legacy("web", "custom"))
    assert served_by(config, "foo.com", "/") == "web"


def test_ingress_class_of_another_controller_is_not_ours():
    config = compile_config(ingress_class("custom", "k8s.io/ingress-nginx"), _web(class_name="custom"))
    assert served_by(config, "foo.com", "/") is None


def test_ingress_class_of_another_controller_named_in_flags_is_ours():
    config = compile_config(ingress_class("nginx", "k8s.io/ingress-nginx"), _web(class_name="nginx"),
                            ingress_classes=("ingressd", "nginx"))
    assert served_by(config, "foo.com", "/") == "web"


def test_default_class_of_another_controller_excludes_classless_ingresses():
    config = compile_config(ingress_class("nginx", "k8s.io/ingress-nginx", default=True), _web(),
                            _web("mine", host="mine.com", class_name="ingressd"))
    assert served_by(config, "foo.com", "/") is None
    assert served_by(config, "mine.com", "/") == "mine"


def test_default_class_that_is_ours_keeps_classless_ingresses():
    for cls in (ingress_class("ingressd", "whatever.io/x", default=True),
                ingress_class("custom", CONTROLLER_NAME, default=True)):
        assert served_by(compile_config(cls, _web()), "foo.com", "/") == "web"


def test_default_class_adopted_with_ingress_class_flag_keeps_classless_ingresses():
    config = compile_config(ingress_class("nginx", "k8s.io/ingress-nginx", default=True), _web(),
                            ingress_classes=("ingressd", "nginx"))
    assert served_by(config, "foo.com", "/") == "web"


def test_non_default_class_of_another_controller_does_not_exclude_classless_ingresses():
    config = compile_config(ingress_class("nginx", "k8s.io/ingress-nginx", default=False), _web())
    assert served_by(config, "foo.com", "/") == "web"


def test_default_class_annotation_must_be_true():
    cls = ingress_class("nginx", "k8s.io/ingress-nginx")
    cls["metadata"]["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "false"}
    assert served_by(compile_config(cls, _web()), "foo.com", "/") == "web"


def test_ingress_of_another_class_contributes_nothing():
    secret = tls_secret("cert", *cert_for("foo.com"))
    other = ingress("other", rule("foo.com", path("/", "other")), class_name="nginx", created="2000-01-01T00:00:00Z",
                    tls=[{"hosts": ["foo.com"], "secretName": "cert"}],
                    default_backend=backend("other-default"))
    ours = ingress("ours", rule("foo.com", path("/", "ours")), created="2024-01-01T00:00:00Z")
    config = compile_config(secret, other, ours)
    assert served_by(config, "foo.com", "/") == "ours"  # no conflict with the older foreign Ingress
    assert served_by(config, "unknown.org", "/") is None  # its defaultBackend is not used
    assert config.certificate_for("foo.com") is None  # nor its TLS
    assert lookup(config, "foo.com", "/").https_redirect is False
    assert not [d for d in config.diagnostics if "already" in d.message]


# --- default backends -------------------------------------------------------------------------


def test_without_any_default_the_builtin_404_answers():
    config = compile_config(_web())
    route = lookup(config, "unknown.org", "/")
    assert route.backend is None


def test_ingress_default_backend_serves_unmatched_requests():
    config = compile_config(ingress("dflt", default_backend=backend("fallback")), _web())
    assert served_by(config, "unknown.org", "/x") == "fallback"
    assert served_by(config, "foo.com", "/") == "web"


def test_oldest_ingress_default_backend_wins():
    docs = [ingress("new", default_backend=backend("new"), created="2024-01-01T00:00:00Z"),
            ingress("old", default_backend=backend("old"), created="2023-01-01T00:00:00Z", namespace="zzz")]
    assert served_by(compile_config(*docs), "x.org", "/") == "old"
    assert served_by(compile_config(*reversed(docs)), "x.org", "/") == "old"


def test_ingress_default_backend_resolves_in_its_own_namespace():
    config = compile_config(ingress("dflt", default_backend=backend("fallback"), namespace="team"),
                            svc_with_endpoints("fallback", ("10.1.1.1",), namespace="team"),
                            svc_with_endpoints("fallback", ("10.9.9.9",)))
    route = lookup(config, "x.org", "/")
    assert route.backend.namespace == "team"
    assert route.backend.endpoints == (("10.1.1.1", 8080),)


def test_default_backend_service_flag_is_used_when_no_ingress_defines_one():
    docs = [*svc_with_endpoints("dflt", ("10.0.0.9",), namespace="infra"), _web()]
    config = compile_config(*docs, default_backend_service="infra/dflt:80")
    route = lookup(config, "unknown.org", "/")
    assert route.backend.service == "dflt" and route.backend.endpoints == (("10.0.0.9", 8080),)
    assert lookup(config, "foo.com", "/").backend.service == "web"


def test_default_backend_service_flag_by_port_name():
    docs = [service("dflt", ports=(("http", 80, "http"),), namespace="infra"),
            endpoint_slice("dflt-1", "dflt", ["10.0.0.9"], ports=(("http", 8081),), namespace="infra")]
    config = compile_config(*docs, default_backend_service="infra/dflt:http")
    assert lookup(config, "unknown.org", "/").backend.endpoints == (("10.0.0.9", 8081),)


def test_ingress_default_backend_beats_default_backend_service_flag():
    docs = [*svc_with_endpoints("dflt", namespace="infra"), ingress("d", default_backend=backend("mine"))]
    config = compile_config(*docs, default_backend_service="infra/dflt:80")
    assert served_by(config, "unknown.org", "/") == "mine"


def test_missing_default_backend_service_is_reported():
    config = compile_config(_web(), default_backend_service="infra/nope:80")
    assert any("nope" in d.message for d in config.diagnostics)
    assert lookup(config, "unknown.org", "/").backend.error


def test_default_backend_of_only_defaultbackend_ingress_serves_hostless_requests():
    config = compile_config(ingress("d", default_backend=backend("fallback")))
    assert served_by(config, "", "/") == "fallback"


# --- backends ---------------------------------------------------------------------------------


def test_backend_by_port_number_resolves_to_ready_endpoints():
    config = compile_config(
        _web(),
        service("web", ports=((None, 80, 8080),)),
        endpoint_slice("web-abc", "web", ["10.0.0.1", "10.0.0.2"], not_ready=["10.0.0.3"]),
    )
    b = lookup(config, "foo.com", "/").backend
    assert b.error is None
    assert sorted(b.endpoints) == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]
    assert b.name == "default-web-80"


def test_endpoint_without_ready_condition_counts_as_ready():
    slice_doc = endpoint_slice("web-abc", "web", [])
    slice_doc["endpoints"] = [{"addresses": ["10.0.0.5"]}, {"addresses": ["10.0.0.6"], "conditions": {}}]
    config = compile_config(_web(), service("web"), slice_doc)
    assert sorted(lookup(config, "foo.com", "/").backend.endpoints) == [("10.0.0.5", 8080), ("10.0.0.6", 8080)]


def test_backend_by_port_name_uses_the_endpoint_slice_port_of_that_name():
    config = compile_config(
        ingress("web", rule("foo.com", path("/", "web", port="http"), path("/metrics", "web", port="metrics"),
                            path("/num", "web", port=9100))),
        service("web", ports=(("http", 80, "http"), ("metrics", 9100, 9090))),
        endpoint_slice("web-abc", "web", ["10.0.0.1"], ports=(("metrics", 9090), ("http", 8080))),
    )
    assert lookup(config, "foo.com", "/").backend.endpoints == (("10.0.0.1", 8080),)
    assert lookup(config, "foo.com", "/metrics").backend.endpoints == (("10.0.0.1", 9090),)
    assert lookup(config, "foo.com", "/num").backend.endpoints == (("10.0.0.1", 9090),)


def test_endpoint_slices_bind_by_service_name_label_not_by_name():
    config = compile_config(
        _web(),
        service("web"),
        endpoint_slice("web", "other", ["10.9.9.9"]),        # named like the service, bound elsewhere
        endpoint_slice("zz-1", "web", ["10.0.0.1"]),
        endpoint_slice("zz-2", "web", ["10.0.0.2", "10.0.0.1"]),
        endpoint_slice("web-x", "web", ["10.7.7.7"], namespace="elsewhere"),
    )
    assert sorted(lookup(config, "foo.com", "/").backend.endpoints) == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]


def test_old_v1_endpoints_object_feeds_the_backend():
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
                 "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                              "notReadyAddresses": [{"ip": "10.0.0.3"}],
                              "ports": [{"port": 8080}]}]}
    config = compile_config(_web(), service("web"), endpoints)
    assert sorted(lookup(config, "foo.com", "/").backend.endpoints) == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]


def test_external_name_service_goes_to_the_dns_name():
    config = compile_config(_web(), service("web", type_="ExternalName", external_name="api.example.net",
                                            ports=((None, 80, None),)))
    b = lookup(config, "foo.com", "/").backend
    assert b.error is None and b.endpoints == (("api.example.net", 80),)


@pytest.mark.parametrize("docs, reason", [
    ([], "not found"),
    ([service("web")], "no ready endpoints"),
    ([service("web"), endpoint_slice("web-1", "web", [], not_ready=["10.0.0.1"])], "no ready endpoints"),
    ([service("web", ports=((None, 81, 8080),)), endpoint_slice("web-1", "web", ["10.0.0.1"])], "port"),
    ([service("web", namespace="other"), endpoint_slice("web-1", "web", ["10.0.0.1"], namespace="other")],
     "not found"),
])
def test_unavailable_backend_has_an_error_and_a_warning_naming_the_ingress(docs, reason):
    config = compile_config(_web(), *docs)
    b = lookup(config, "foo.com", "/").backend
    assert b is not None and b.endpoints == () and reason in b.error
    warnings = [d for d in config.diagnostics if d.severity == "warning" and d.object == "Ingress default/web"]
    assert warnings and "web" in warnings[0].message and warnings[0].origin == "test.yaml"


def test_one_missing_backend_does_not_affect_other_routes():
    config = compile_config(
        ingress("web", rule("foo.com", path("/broken", "nope"), path("/", "web"))),
        *svc_with_endpoints("web"),
    )
    assert lookup(config, "foo.com", "/").backend.endpoints == (("10.0.0.1", 8080),)
    assert lookup(config, "foo.com", "/broken").backend.error


# --- TLS --------------------------------------------------------------------------------------


def _tls(hosts, secret="cert"):
    return [{"hosts": list(hosts), **({"secretName": secret} if secret else {})}]


def test_tls_secret_gives_the_host_its_certificate_and_redirect():
    config = compile_config(
        tls_secret("cert", *cert_for("foo.com")),
        ingress("web", rule("foo.com", path("/", "web")), rule("plain.com", path("/", "web")),
                tls=_tls(["foo.com"])),
    )
    cert = config.certificate_for("foo.com")
    assert cert is not None and cert.names == ("foo.com",) and cert.source == "default/cert"
    assert config.certificate_for("plain.com") is None
    assert lookup(config, "foo.com", "/").https_redirect is True
    assert lookup(config, "plain.com", "/").https_redirect is False
    assert not config.errors


def test_tls_secret_from_string_data():
    config = compile_config(tls_secret("cert", *cert_for("foo.com"), string_data=True),
                            _web(tls=_tls(["foo.com"])))
    assert config.certificate_for("foo.com").names == ("foo.com",)


def test_wildcard_tls_certificate():
    config = compile_config(
        tls_secret("wild", *cert_for("*.foo.com")),
        ingress("web", rule("*.foo.com", path("/", "web")), tls=_tls(["*.foo.com"], "wild")),
    )
    assert config.certificate_for("a.foo.com") is not None
    assert config.certificate_for("a.foo.com").names == ("*.foo.com",)
    assert config.certificate_for("foo.com") is None
    assert config.certificate_for("a.b.foo.com") is None
    assert lookup(config, "a.foo.com", "/").https_redirect is True
    assert not [d for d in config.diagnostics if "does not cover" in d.message]


def test_exact_tls_host_certificate_beats_wildcard():
    config = compile_config(
        tls_secret("wild", *cert_for("*.foo.com")),
        tls_secret("exact", *cert_for("a.foo.com")),
        ingress("web", rule("a.foo.com", path("/", "web")),
                tls=[{"hosts": ["*.foo.com"], "secretName": "wild"}, {"hosts": ["a.foo.com"], "secretName": "exact"}]),
    )
    assert config.certificate_for("a.foo.com").names == ("a.foo.com",)
    assert config.certificate_for("b.foo.com").names == ("*.foo.com",)


def test_rule_host_covered_by_wildcard_tls_entry_is_redirected():
    config = compile_config(
        tls_secret("wild", *cert_for("*.foo.com")),
        ingress("web", rule("a.foo.com", path("/", "web")), rule("foo.com", path("/", "web")),
                tls=_tls(["*.foo.com"], "wild")),
    )
    assert lookup(config, "a.foo.com", "/").https_redirect is True
    assert lookup(config, "foo.com", "/").https_redirect is False


def test_tls_entry_without_secret_still_means_https_redirect():
    config = compile_config(_web(tls=_tls(["foo.com"], secret=None)))
    assert lookup(config, "foo.com", "/").https_redirect is True
    assert config.certificate_for("foo.com") is None


def test_missing_tls_secret_is_a_warning_naming_ingress_and_secret():
    config = compile_config(_web(tls=_tls(["foo.com"], "nope")))
    assert config.certificate_for("foo.com") is None
    assert any(d.object == "Ingress default/web" and "default/nope" in d.message for d in config.diagnostics)
    assert lookup(config, "foo.com", "/").https_redirect is True


def test_tls_secret_is_looked_up_in_the_ingress_namespace():
    config = compile_config(tls_secret("cert", *cert_for("foo.com"), namespace="other"),
                            _web(tls=_tls(["foo.com"])))
    assert config.certificate_for("foo.com") is None


def test_tls_secret_with_a_key_of_another_certificate_is_an_error_naming_the_secret():
    cert_pem, _ = cert_for("foo.com")
    _, other_key = cert_for("bar.com")
    config = compile_config(tls_secret("cert", cert_pem, other_key), _web(tls=_tls(["foo.com"])))
    assert config.certificate_for("foo.com") is None
    errors = config.errors
    assert errors and errors[0].object == "Secret default/cert" and "tls.key" in errors[0].message
    assert served_by(config, "foo.com", "/") == "web"  # the route itself still works


def test_certificate_not_covering_the_host_is_reported():
    config = compile_config(tls_secret("cert", *cert_for("other.com")), _web(tls=_tls(["foo.com"])))
    assert any("does not cover" in d.message and "foo.com" in d.message and d.object == "Ingress default/web"
               for d in config.diagnostics)


def test_tls_for_a_shared_host_oldest_wins_with_a_warning():
    config = compile_config(
        tls_secret("old-cert", *cert_for("foo.com")),
        tls_secret("new-cert", *cert_for("foo.com", "www.foo.com")),
        ingress("new", rule("foo.com", path("/new", "new")), tls=_tls(["foo.com"], "new-cert"),
                created="2024-01-01T00:00:00Z"),
        ingress("old", rule("foo.com", path("/old", "old")), tls=_tls(["foo.com"], "old-cert"),
                created="2023-01-01T00:00:00Z"),
    )
    assert config.certificate_for("foo.com").source == "default/old-cert"
    assert any(d.object == "Ingress default/new" and "default/old" in d.message for d in config.diagnostics)


def test_tls_declared_in_one_ingress_redirects_the_hosts_routes_of_another():
    config = compile_config(
        tls_secret("cert", *cert_for("foo.com")),
        ingress("tls-only", rule("foo.com", path("/a", "a")), tls=_tls(["foo.com"])),
        ingress("plain", rule("foo.com", path("/b", "b"))),
    )
    assert lookup(config, "foo.com", "/b").https_redirect is True


def test_unmatched_path_of_a_tls_host_is_redirected_too():
    config = compile_config(_web(tls=_tls(["foo.com"], secret=None)))
    config2 = compile_config(ingress("web", rule("foo.com", path("/app", "web")), tls=_tls(["foo.com"], None)))
    assert lookup(config2, "foo.com", "/elsewhere").https_redirect is True
    assert lookup(config, "unknown.org", "/").https_redirect is False


def test_hostless_rules_are_not_redirected():
    config = compile_config(ingress("web", rule(None, path("/", "web")), tls=_tls(["foo.com"], None)))
    assert lookup(config, "x.org", "/").https_redirect is False


def test_ssl_redirect_false_opts_out():
    config = compile_config(_web(tls=_tls(["foo.com"], None), annotations={NGINX + "ssl-redirect": "false"}))
    assert lookup(config, "foo.com", "/").https_redirect is False


def test_ssl_redirect_false_opts_out_for_unmatched_paths_of_the_host_too():
    # The host's only Ingress opts out: HTTP requests to paths it does not define get the default
    # backend, not a 308 (ingress-nginx applies the host's Ingress annotations to its implicit "/").
    config = compile_config(ingress("web", rule("foo.com", path("/app", "web")), tls=_tls(["foo.com"], None),
                                    annotations={NGINX + "ssl-redirect": "false"}))
    assert lookup(config, "foo.com", "/app").https_redirect is False
    assert lookup(config, "foo.com", "/elsewhere").https_redirect is False


def test_force_ssl_redirect_redirects_without_tls():
    config = compile_config(
        ingress("web", rule("foo.com", path("/", "web")), rule(None, path("/", "web")),
                annotations={NGINX + "force-ssl-redirect": "true"}),
        ingress("other", rule("bar.com", path("/", "other"))),
    )
    assert lookup(config, "foo.com", "/").https_redirect is True
    assert lookup(config, "x.org", "/").https_redirect is True
    assert lookup(config, "bar.com", "/").https_redirect is False


def test_default_ssl_certificate_setting():
    config = compile_config(tls_secret("fallback", *cert_for("fallback.example"), namespace="infra"), _web(),
                            default_ssl_certificate="infra/fallback")
    assert config.default_certificate is not None and config.default_certificate.names == ("fallback.example",)
    assert not config.errors
    config = compile_config(_web(), default_ssl_certificate="infra/missing")
    assert config.default_certificate is None
    assert any("infra/missing" in d.message for d in config.errors)


# --- annotations through the translator -------------------------------------------------------


def test_annotations_apply_per_ingress_on_a_shared_host():
    config = compile_config(
        ingress("big", rule("foo.com", path("/upload", "up")), annotations={NGINX + "proxy-body-size": "0"}),
        ingress("small", rule("foo.com", path("/", "web"))),
    )
    assert lookup(config, "foo.com", "/upload").options.body_size_limit is None
    assert lookup(config, "foo.com", "/").options.body_size_limit == 1 << 20


def test_bad_annotation_is_a_warning_naming_ingress_and_annotation_and_route_still_served():
    config = compile_config(
        _web(annotations={NGINX + "proxy-read-timeout": "soon", NGINX + "proxy-body-size": "8m"}),
        ingress("other", rule("bar.com", path("/", "other"))),
    )
    route = lookup(config, "foo.com", "/")
    assert route.backend.service == "web"
    assert route.options.read_timeout == 60.0
    assert route.options.body_size_limit == 8 << 20
    warnings = [d for d in config.diagnostics if "proxy-read-timeout" in d.message]
    assert len(warnings) == 1
    assert warnings[0].severity == "warning" and warnings[0].object == "Ingress default/web"
    assert not config.errors
    assert served_by(config, "bar.com", "/") == "other"


def test_redirect_annotation_reaches_every_route_of_the_ingress():
    config = compile_config(ingress("redir", rule("docs.mybinder.org", path("/", "unused"), path("/x", "unused")),
                                    annotations={NGINX + "permanent-redirect": "https://mybinder.readthedocs.io"}))
    for p in ("/", "/x/y"):
        redirect = lookup(config, "docs.mybinder.org", p).options.redirect
        assert redirect is not None and redirect.code == 301
        assert redirect.render("http", "docs.mybinder.org", p) == "https://mybinder.readthedocs.io"


# --- purity and diagnostics -------------------------------------------------------------------


def test_translate_is_deterministic_and_does_not_mutate_the_snapshot():
    objs = objects(_web(), *svc_with_endpoints("web"))
    snapshot = Snapshot(objs)
    a = translate(snapshot, Settings())
    b = translate(snapshot, Settings())
    assert snapshot.objects == objs
    assert [(r.host, r.path, r.path_type, r.backend.endpoints) for r in a.table.routes()] == \
           [(r.host, r.path, r.path_type, r.backend.endpoints) for r in b.table.routes()]
    assert a.diagnostics == b.diagnostics


def test_snapshot_diagnostics_are_carried_into_the_config():
    from ingressd.diagnostics import ERROR, Diagnostic
    d = Diagnostic(ERROR, "cannot parse file: boom", "bad.yaml")
    config = translate(Snapshot(objects(_web()), (d,)), Settings())
    assert d in config.diagnostics


def test_routes_listing_contains_every_rule():
    config = compile_config(ingress("web", rule("b.com", path("/", "b")), rule("a.com", path("/x", "a"),
                                                                                path("/x", "a", path_type="Exact")),
                                    rule("*.w.com", path("/", "w")), rule(None, path("/any", "n"))))
    listed = [(r.host, r.path, r.path_type) for r in config.table.routes()]
    assert set(listed) == {("a.com", "/x", "Exact"), ("a.com", "/x", "Prefix"), ("b.com", "/", "Prefix"),
                           ("*.w.com", "/", "Prefix"), ("", "/any", "Prefix")}


def test_rewrite_target_keeps_the_other_per_route_options():
    """rewrite-target used to rebuild the options from the Ingress's, dropping basic auth and auth-url."""
    from unitkit import svc_with_endpoints as swe
    config = compile_config(*swe("web"), ingress("web", rule("foo.com", path("/app", "web")), annotations={
        NGINX + "rewrite-target": "/", NGINX + "auth-url": "http://auth.example/check",
        NGINX + "custom-http-errors": "404"}))
    options = lookup(config, "foo.com", "/app/x").options
    assert options.rewrite is not None and options.ext_auth is not None and options.custom_errors is not None


def test_default_backend_annotation_serves_services_without_endpoints_and_errors():
    from unitkit import svc_with_endpoints as swe
    config = compile_config(service("empty"), *swe("errors"), ingress(
        "web", rule("foo.com", path("/", "empty")), annotations={NGINX + "default-backend": "errors",
                                                                  NGINX + "custom-http-errors": "404, 503"}))
    route = lookup(config, "foo.com", "/")
    assert route.backend.service == "errors" and not route.backend.error
    errors = route.options.custom_errors
    assert errors.codes == {404, 503} and errors.route.backend.service == "errors"
    assert errors.route.labels[:3] == ("default", "web", "errors")


def test_auth_url_from_the_host_header_is_reported_on_any_host_rules():
    from unitkit import svc_with_endpoints as swe
    ann = {NGINX + "auth-url": "https://$host/oauth2/auth"}
    config = compile_config(*swe("web"), ingress("any", rule(None, path("/", "web")), annotations=ann),
                            ingress("named", rule("foo.com", path("/", "web")), annotations=ann))
    warned = [d.message for d in config.diagnostics if "choose the server that authorizes it" in d.message]
    assert len(warned) == 1 and "(any)" in warned[0]
