"""The controller ConfigMap (ingress-nginx's keys) and the annotation/ConfigMap catalogue."""

from __future__ import annotations

from pathlib import Path

from ingressd import catalog
from ingressd.annotations import DEFAULT_OPTIONS
from ingressd.config import ClientTrust
from ingressd.controller_config import DEFAULT_HSTS, parse_controller_configmap
from unitkit import NGINX, compile_config, ingress, messages, path, rule, svc_with_endpoints

ROOT = Path(__file__).resolve().parents[2]


def parse(**data):
    return parse_controller_configmap({k.replace("_", "-"): v for k, v in data.items()}, ClientTrust())


def configmap(name="ingress-nginx-controller", namespace="ingress-nginx", **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {k.replace("_", "-"): v for k, v in data.items()}}


def test_empty_configmap_is_ingress_nginx_defaults():
    settings, warnings = parse()
    assert warnings == [] and settings.defaults.options == DEFAULT_OPTIONS and settings.hsts == DEFAULT_HSTS
    assert settings.trust is None


def test_route_defaults_and_hsts():
    settings, warnings = parse(proxy_body_size="50m", proxy_read_timeout="3600", ssl_redirect="false",
                               hsts_max_age="100", hsts_preload="true")
    assert warnings == []
    options = settings.defaults.options
    assert (options.body_size_limit, options.read_timeout, options.ssl_redirect) == (50 << 20, 3600, False)
    assert settings.hsts == b"Strict-Transport-Security: max-age=100; includeSubDomains; preload\r\n"
    assert parse(hsts="false")[0].hsts == b""


def test_bad_values_are_reported_and_the_default_kept():
    settings, warnings = parse(proxy_body_size="lots", hsts_max_age="-1", block_cidrs="10.0.0.0/33")
    assert settings.defaults.options.body_size_limit == DEFAULT_OPTIONS.body_size_limit
    assert len(warnings) == 3 and "proxy-body-size: 'lots' is invalid" in warnings[0]


def test_trust_keys_map_onto_client_trust_and_override_the_command_line():
    settings, warnings = parse(use_forwarded_headers="true", proxy_real_ip_cidr="10.0.0.0/8, 192.168.0.0/16",
                               forwarded_for_header="X-Real-Client", compute_full_forwarded_for="true",
                               enable_real_ip="true", use_proxy_protocol="false")
    assert warnings == []
    assert settings.trust == ClientTrust(True, "X-Real-Client", True, True, ("10.0.0.0/8", "192.168.0.0/16"), False)


def test_unknown_unsupported_and_accepted_keys():
    _, warnings = parse(server_snippet="x", use_gzip="true", no_such_key="1", allow_snippet_annotations="true",
                        worker_processes="4")
    text = "\n".join(warnings)
    assert "server-snippet is not supported: raw nginx configuration is never executed" in text
    assert "use-gzip is not supported" in text and "no-such-key is not an ingress-nginx" in text
    assert "allow-snippet-annotations" not in text  # accepted: always effectively false


def test_translator_reads_the_named_configmap_and_annotations_win():
    docs = [ingress("a", rule("a.com", path("/", "web"))),
            ingress("b", rule("b.com", path("/", "web")), annotations={NGINX + "proxy-read-timeout": "5"}),
            svc_with_endpoints("web"), configmap(proxy_read_timeout="120", gzip_level="5")]
    config = compile_config(*docs)
    assert config.table.lookup("a.com", "/").options.read_timeout == 120
    assert config.table.lookup("b.com", "/").options.read_timeout == 5
    assert config.table.default.options.read_timeout == 120
    assert any("ConfigMap ingress-nginx/ingress-nginx-controller: ConfigMap key gzip-level is not supported" in m
               for m in messages(config))
    other = compile_config(*docs[:3], configmap(name="mine", namespace="infra", proxy_read_timeout="7"),
                           configmap=("infra/mine"))
    assert other.table.lookup("a.com", "/").options.read_timeout == 7
    assert compile_config(*docs, configmap="").table.lookup("a.com", "/").options.read_timeout == 60


def test_annotation_report_names_the_ingress_and_the_difference():
    config = compile_config(ingress("web", rule("a.com", path("/", "web")), annotations={
        NGINX + "configuration-snippet": "more_set_headers x", NGINX + "mirror-target": "http://m",
        NGINX + "proxy-buffer-size": "16k", NGINX + "typo-annotation": "1"}), svc_with_endpoints("web"))
    text = "\n".join(messages(config))
    assert "Ingress default/web: annotation nginx.ingress.kubernetes.io/configuration-snippet is not supported" in text
    assert "mirror-target is not supported" in text and "typo-annotation is not an ingress-nginx annotation" in text
    assert "proxy-buffer-size" not in text


def test_unusable_regex_is_reported_and_served_as_a_prefix():
    config = compile_config(ingress("web", rule("a.com", path("/(a)\\1", "web")), annotations={
        NGINX + "use-regex": "true"}), svc_with_endpoints("web"))
    assert any("is not a regex RE2 can run" in m for m in messages(config))
    assert config.table.lookup("a.com", "/(a)\\1/x").backend.service == "web"


def test_rewrite_target_naming_a_missing_group_is_reported():
    config = compile_config(ingress("web", rule("a.com", path("/app(/|$)", "web")), annotations={
        NGINX + "rewrite-target": "/$2"}), svc_with_endpoints("web"))
    assert any("rewrite-target uses $2" in m for m in messages(config))


def test_migration_table_is_generated_from_the_catalogue():
    assert (ROOT / "deploy" / "migration.md").read_text() == catalog.markdown(), \
        "regenerate: python -m ingressd.catalog > deploy/migration.md"


def test_every_parsed_annotation_is_in_the_catalogue():
    source = (ROOT / "ingressd" / "annotations.py").read_text()
    import re
    for name in re.findall(r'take\("([a-z0-9-]+)"', source):
        assert catalog.ANNOTATIONS[name].status in (catalog.YES, catalog.ACCEPTED, catalog.PARTIAL), name


def test_backend_protocol_https_builds_one_context_per_setting_and_grpc_speaks_h2():
    docs = [ingress(name, rule(f"{name}.com", path("/", "web")), annotations={
        NGINX + "backend-protocol": protocol}) for name, protocol in (("a", "HTTPS"), ("b", "https"), ("c", "GRPC"),
                                                                      ("d", "GRPCS"))]
    config = compile_config(*docs, svc_with_endpoints("web"))
    a, b = (config.table.lookup(h, "/").options.upstream_tls for h in ("a.com", "b.com"))
    assert a is b and a.server_name is None and a.context.verify_mode.name == "CERT_NONE"
    assert not config.table.lookup("a.com", "/").options.grpc
    c, d = (config.table.lookup(h, "/").options for h in ("c.com", "d.com"))
    assert c.grpc and c.upstream_tls is None  # cleartext h2 with prior knowledge
    assert d.grpc and d.upstream_tls is not a and d.upstream_tls.describe() == "h2s"  # TLS, ALPN h2
    assert not any("GRPC" in m for m in messages(config))


def test_proxy_ssl_verify_without_a_ca_fails_closed():
    config = compile_config(ingress("a", rule("a.com", path("/", "web")), annotations={
        NGINX + "backend-protocol": "HTTPS", NGINX + "proxy-ssl-verify": "on",
        NGINX + "proxy-ssl-secret": "default/missing"}), svc_with_endpoints("web"))
    text = "\n".join(messages(config))
    assert "proxy-ssl-secret default/missing not found" in text and "requests to this backend get 502" in text
    tls = config.table.lookup("a.com", "/").options.upstream_tls
    assert tls.context.verify_mode.name == "CERT_REQUIRED" and tls.server_name == "web.default.svc"


def test_config_names_the_objects_a_source_must_read():
    config = compile_config(
        ingress("a", rule("a.com", path("/", "web")), namespace="team", annotations={
            NGINX + "auth-type": "basic", NGINX + "auth-secret": "users",
            NGINX + "backend-protocol": "HTTPS", NGINX + "proxy-ssl-secret": "infra/ca"}),
        svc_with_endpoints("web", namespace="team"))
    assert config.required == {("ConfigMap", "ingress-nginx", "ingress-nginx-controller"),
                               ("Secret", "team", "users"), ("Secret", "infra", "ca")}


def test_service_upstream_uses_the_cluster_ip_and_next_upstream_tries():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080}]}}
    from unitkit import endpoint_slice
    config = compile_config(
        ingress("a", rule("a.com", path("/", "web")), annotations={
            NGINX + "service-upstream": "true", NGINX + "proxy-next-upstream-tries": "0",
            NGINX + "proxy-next-upstream": "error timeout http_502"}),
        ingress("b", rule("b.com", path("/", "web"))), svc, endpoint_slice("web-x", "web", ["10.0.0.1", "10.0.0.2"]))
    a, b = config.table.lookup("a.com", "/"), config.table.lookup("b.com", "/")
    assert a.backend.endpoints == (("10.96.0.10", 80),) and a.options.next_upstream_tries > 100
    assert b.backend.endpoints == (("10.0.0.1", 8080), ("10.0.0.2", 8080)) and b.options.next_upstream_tries == 3
    assert any("proxy-next-upstream is supported in part" in m for m in messages(config))


def test_ssl_protocols_and_ciphers():
    from ingressd.config import DEFAULT_CIPHERS, TLSSettings
    settings, warnings = parse()
    assert settings.tls == TLSSettings() and settings.tls.ciphers == DEFAULT_CIPHERS
    settings, warnings = parse(ssl_protocols="TLSv1.3", ssl_ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    assert warnings == [] and settings.tls == TLSSettings(("TLSv1.3",), "ECDHE-RSA-AES128-GCM-SHA256")
    settings, warnings = parse(ssl_protocols="TLSv1 TLSv1.1 TLSv1.2")
    assert settings.tls.protocols == ("TLSv1.2",)
    assert warnings == ["ConfigMap key ssl-protocols: TLSv1 TLSv1.1 not offered (ingressd speaks TLSv1.2 and "
                        "TLSv1.3 only); using TLSv1.2"]
    for key, bad in (("ssl_protocols", "TLSv9"), ("ssl_protocols", "SSLv3"), ("ssl_ciphers", "NOT-A-CIPHER"),
                     ("ssl_ciphers", "")):
        settings, warnings = parse(**{key: bad})
        assert settings.tls == TLSSettings() and len(warnings) == 1 and "using the default" in warnings[0], warnings


def test_ssl_ciphers_annotation_sets_the_host_oldest_wins():
    from ingressd.annotations import parse_route_options
    options, warnings = parse_route_options({NGINX + "ssl-ciphers": "ECDHE-RSA-AES256-GCM-SHA384"})
    assert options.ssl_ciphers == "ECDHE-RSA-AES256-GCM-SHA384" and warnings == []
    options, warnings = parse_route_options({NGINX + "ssl-ciphers": "bogus"})
    assert options.ssl_ciphers is None and "is invalid" in warnings[0]


def test_worker_shutdown_timeout():
    assert parse()[0].shutdown_timeout == 240.0
    assert parse(worker_shutdown_timeout="600s")[0].shutdown_timeout == 600.0
    assert parse(worker_shutdown_timeout="5m")[0].shutdown_timeout == 300.0
    settings, warnings = parse(worker_shutdown_timeout="soon")
    assert settings.shutdown_timeout == 240.0 and "using the default" in warnings[0]


def test_block_lists_parse_and_match():
    settings, warnings = parse(block_user_agents="~*bot, Exact/1.0", block_referers=r"~^https://spam\.")
    assert warnings == []
    blocked = settings.blocked
    assert blocked.refuses(b"GoogleBot", b"") and blocked.refuses(b"exact/1.0", b"")
    assert not blocked.refuses(b"Exact/1.0 more", b"") and not blocked.refuses(b"", b"")
    assert blocked.refuses(b"curl", b"https://spam.example/") and not blocked.refuses(b"curl", b"HTTPS://SPAM.x")
    settings, warnings = parse(block_user_agents="~(unclosed")
    assert settings.blocked is None and "is invalid" in warnings[0] and "using the default" in warnings[0]
    assert parse()[0].blocked is None


def test_header_configmaps_resolved_and_required():
    docs = [ingress("a", rule("a.com", path("/", "web"))),
            ingress("c", rule("c.com", path("/", "web")), annotations={NGINX + "custom-headers": "mine"}),
            ingress("d", rule("d.com", path("/", "web")), annotations={NGINX + "custom-headers": "nope"}),
            svc_with_endpoints("web"),
            configmap(add_headers="ingress-nginx/add", proxy_set_headers="req", hide_headers="Server, X-Powered-By",
                      global_allowed_response_headers="X-Mine"),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "add", "namespace": "ingress-nginx"},
             "data": {"X-Global": "1", "Bad Name": "x", "X-Var": "$host"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "req", "namespace": "ingress-nginx"},
             "data": {"X-Env": "prod"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine", "namespace": "default"},
             "data": {"X-Mine": "yes"}}]
    config = compile_config(*docs)
    a = config.table.lookup("a.com", "/").options
    assert a.response_headers.lines == b"X-Global: 1\r\nX-Var: $host\r\n"
    assert a.response_headers.strip.sub(b"", b"Server: x\r\nX-Keep: 1\r\nx-powered-by: php\r\nX-Global: up\r\n") == \
        b"X-Keep: 1\r\n"
    assert a.request_headers == ((b"x-env", b"X-Env: prod\r\n"),)
    assert config.table.default.options.response_headers is a.response_headers
    c = config.table.lookup("c.com", "/").options
    assert c.response_headers.lines == b"X-Global: 1\r\nX-Var: $host\r\nX-Mine: yes\r\n" and c.refused is None
    assert "custom-headers: ConfigMap default/nope not found" in config.table.lookup("d.com", "/").options.refused
    text = "\n".join(messages(config))
    assert "'Bad Name' is not a header name" in text and "X-Var is sent literally" in text
    assert {("ConfigMap", "ingress-nginx", "add"), ("ConfigMap", "ingress-nginx", "req"),
            ("ConfigMap", "default", "mine"), ("ConfigMap", "default", "nope")} <= config.required


def test_http2_keys_defaults_as_ingress_nginx():
    from ingressd.config import ClientLimits, TLSSettings
    settings, warnings = parse()
    assert settings.tls.http2 is True and settings.client.http2_max_concurrent_streams == 128
    assert settings.client.http2_requests == 1000 == ClientLimits().keepalive_requests  # keep-alive-requests
    assert TLSSettings().http2 and ClientLimits().http2_max_requests == 0


def test_use_http2():
    settings, warnings = parse(use_http2="false")
    assert settings.tls.http2 is False and warnings == []  # supported: no longer reported
    assert parse(use_http2="true")[0].tls.http2 is True
    settings, warnings = parse(use_http2="maybe")
    assert settings.tls.http2 is True and len(warnings) == 1 and "use-http2: 'maybe' is invalid" in warnings[0]


def test_http2_max_concurrent_streams():
    settings, warnings = parse(http2_max_concurrent_streams="4")
    assert warnings == [] and settings.client.http2_max_concurrent_streams == 4
    for bad in ("0", "-1", "many", "4294967296"):
        settings, warnings = parse(http2_max_concurrent_streams=bad)
        assert settings.client.http2_max_concurrent_streams == 128 and "using the default" in warnings[0], bad


def test_http2_max_requests_else_keep_alive_requests():
    settings, warnings = parse(keep_alive_requests="10")
    assert warnings == [] and settings.client.http2_requests == 10
    settings, warnings = parse(keep_alive_requests="10", http2_max_requests="3")
    assert settings.client.http2_requests == 3 and settings.client.keepalive_requests == 10
    assert warnings == ["ConfigMap key http2-max-requests is supported in part: " + catalog.CONFIGMAP[
        "http2-max-requests"].note]  # honoured where ingress-nginx's nginx ignores it: say so
    settings, warnings = parse(http2_max_requests="0")  # ingress-nginx's default: keep-alive-requests
    assert warnings == [] and settings.client.http2_requests == 1000
    settings, warnings = parse(http2_max_requests="lots")
    assert settings.client.http2_requests == 1000 and "using the default" in warnings[0]


def test_http2_field_and_header_sizes_are_accepted_and_ignored_as_by_nginx():
    """Obsolete in nginx since 1.19.7 (ingress-nginx writes them, nginx warns and ignores them):
    large-client-header-buffers bounds HTTP/2 headers."""
    settings, warnings = parse(http2_max_field_size="1k", http2_max_header_size="2k")
    assert warnings == [] and settings.client == parse()[0].client
    assert catalog.CONFIGMAP["http2-max-field-size"].status == catalog.ACCEPTED
    assert "large-client-header-buffers" in catalog.CONFIGMAP["http2-max-header-size"].note
    assert parse(large_client_header_buffers="2 1k")[0].client.max_head_bytes == 2048
