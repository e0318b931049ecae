"""Issuer parsing and which certificates a snapshot asks for: pure, no IO."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from certmanager_kit import CM, acme_spec, ca_pair, cluster_issuer, ingress, issuer, parse, snapshot, tls_secret
from ingressd.certmanager.issuers import LETSENCRYPT_PRODUCTION, IssuerRef
from ingressd.certmanager.keys import KeySpec
from ingressd.certmanager.plan import CertSettings, plan
from ingressd.config import Settings
from ingressd.diagnostics import InvalidObject


def messages(result, severity: str | None = None) -> list[str]:
    return [f"{d.object}: {d.message}" for d in result.diagnostics if severity is None or d.severity == severity]


# --- issuers ----------------------------------------------------------------------------------------


def test_cluster_issuer_parses_acme_fields():
    bundle = base64.b64encode(ca_pair()[0]).decode()
    [obj] = parse(cluster_issuer("le", acme_spec(caBundle=bundle, profile="shortlived",
                                                        skipTLSVerify=False)))
    assert obj.ref == IssuerRef("ClusterIssuer", "", "le") and obj.type == "acme"
    assert obj.acme.email == "ops@example.com" and obj.acme.private_key_secret == "acct"
    assert obj.acme.profile == "shortlived" and obj.acme.ca_bundle.startswith(b"-----BEGIN CERTIFICATE")
    assert obj.resource_namespace == "cert-manager" and not obj.problems and not obj.warnings


def test_issuer_is_namespaced_and_ca_and_self_signed_parse():
    [ca] = parse(issuer("ca", "team", {"ca": {"secretName": "team-ca"}}))
    assert ca.ref == IssuerRef("Issuer", "team", "ca") and ca.ca_secret == "team-ca" and ca.resource_namespace == "team"
    [selfsigned] = parse(cluster_issuer("s", {"selfSigned": {}}))
    assert selfsigned.type == "selfSigned"


def test_unknown_fields_warn_and_dns01_is_a_problem():
    spec = acme_spec(solvers=[{"dns01": {"route53": {}}}], preferredChain="ISRG Root X1", foo=1)
    spec["bar"] = {}
    [obj] = parse(cluster_issuer("dns", spec))
    assert any("spec.acme.foo is not a cert-manager field" in w for w in obj.warnings)
    assert any("spec.bar" in w for w in obj.warnings)
    assert any("preferredChain is not supported" in w for w in obj.warnings)
    assert any("dns01 is not supported" in w for w in obj.warnings)
    assert obj.problems == ("no usable solver: ingressd answers HTTP-01 challenges only (dns01 is not supported)",)
    [mixed] = parse(cluster_issuer("mixed", acme_spec(solvers=[{"dns01": {}}, {"http01": {}}])))
    assert not mixed.problems


@pytest.mark.parametrize("spec,message", [
    ({}, "exactly one of acme, ca, selfSigned"),
    ({"ca": {}, "selfSigned": {}}, "exactly one"),
    ({"acme": {"email": "x"}}, "spec.acme.server is required"),
    ({"acme": {"server": "ftp://x", "privateKeySecretRef": {"name": "k"}}}, "is not an http(s) URL"),
    ({"acme": {"server": "https://x", "privateKeySecretRef": {}}}, "privateKeySecretRef.name is required"),
    ({"acme": {"server": "https://x", "privateKeySecretRef": {"name": "k"}, "caBundle": "!!"}}, "not valid base64"),
    ({"ca": {}}, "spec.ca.secretName is required"),
])
def test_invalid_issuers(spec, message):
    with pytest.raises(InvalidObject, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(cluster_issuer("bad", spec))


# --- planning ----------------------------------------------------------------------------------------


def test_one_certificate_per_tls_entry_with_a_secret_name():
    result = plan(snapshot(
        cluster_issuer("le"),
        ingress("web", [(["a.example.com", "b.example.com"], "ab-tls"), (["c.example.com"], "c-tls"),
                        (["d.example.com"], None)], {CM + "cluster-issuer": "le"}),
        ingress("unmanaged", [(["e.example.com"], "e-tls")]),
    ))
    certs = {c.secret_name: c for c in result.certificates}
    assert set(certs) == {"ab-tls", "c-tls"}
    ab = certs["ab-tls"]
    assert ab.hosts == ("a.example.com", "b.example.com") and ab.namespace == "default"
    assert ab.issuer_ref == IssuerRef("ClusterIssuer", "", "le") and ab.problem is None
    assert ab.common_name == "a.example.com" and ab.key == KeySpec("ECDSA", 256) and ab.ingress == "default/web"
    assert any("spec.tls[2] has no secretName" in m for m in messages(result, "warning"))


def test_namespaced_issuer_and_issuer_kind():
    result = plan(snapshot(
        issuer("team", "apps"), cluster_issuer("global"),
        ingress("a", [(["a.example.com"], "a-tls")], {CM + "issuer": "team"}, namespace="apps"),
        ingress("b", [(["b.example.com"], "b-tls")], {CM + "issuer": "global", CM + "issuer-kind": "ClusterIssuer"},
                namespace="apps"),
        ingress("c", [(["c.example.com"], "c-tls")], {CM + "issuer": "team"}, namespace="other"),
    ))
    refs = {c.secret_name: (c.issuer_ref, c.problem) for c in result.certificates}
    assert refs["a-tls"] == (IssuerRef("Issuer", "apps", "team"), None)
    assert refs["b-tls"] == (IssuerRef("ClusterIssuer", "", "global"), None)
    assert refs["c-tls"][1] == "cert-manager.io/issuer: Issuer other/team not found"
    assert "Ingress other/c: cert-manager.io/issuer: Issuer other/team not found; no certificate is issued for it" \
        in messages(result, "error")


def test_tls_acme_uses_the_default_issuer():
    doc = ingress("lego", [(["l.example.com"], "l-tls")], {"kubernetes.io/tls-acme": "true"})
    none = plan(snapshot(doc))
    assert none.certificates[0].problem.startswith("kubernetes.io/tls-acme needs a default issuer")
    flagged = plan(snapshot(cluster_issuer("le"), doc), cert_settings=CertSettings(default_issuer="le"))
    assert flagged.certificates[0].issuer_ref == IssuerRef("ClusterIssuer", "", "le")
    missing = plan(snapshot(doc), cert_settings=CertSettings(default_issuer="le"))
    assert missing.certificates[0].problem == "--default-issuer: ClusterIssuer le not found"
    assert "None: --default-issuer le: ClusterIssuer not found" in messages(missing, "error")
    implicit = plan(snapshot(doc), cert_settings=CertSettings(acme_email="me@example.com"))
    cert = implicit.certificates[0]
    assert cert.problem is None and cert.issuer_ref == IssuerRef("ClusterIssuer", "", "ingressd-acme")
    assert cert.issuer.acme.server == LETSENCRYPT_PRODUCTION and cert.issuer.acme.email == "me@example.com"
    assert cert.issuer.acme.private_key_secret == "ingressd-acme-account-key"
    off = plan(snapshot(ingress("x", [(["x.example.com"], "x-tls")], {"kubernetes.io/tls-acme": "false"})))
    assert off.certificates == ()


def test_bad_references_and_annotations_are_diagnostics_not_exceptions():
    result = plan(snapshot(
        cluster_issuer("dns", acme_spec(solvers=[{"dns01": {}}])),
        cluster_issuer("ca", {"ca": {"secretName": "missing-ca"}}),
        ingress("both", [(["b.example.com"], "b-tls")], {CM + "cluster-issuer": "x", CM + "issuer": "y"}),
        ingress("dns", [(["d.example.com"], "d-tls")], {CM + "cluster-issuer": "dns"}),
        ingress("ca", [(["c.example.com"], "c-tls")], {CM + "cluster-issuer": "ca"}),
        ingress("group", [(["g.example.com"], "g-tls")], {CM + "issuer": "x", CM + "issuer-group": "example.io"}),
        ingress("wild", [(["*.w.example.com"], "w-tls")], {CM + "cluster-issuer": "le"}),
        cluster_issuer("le"),
        ingress("opts", [(["o.example.com"], "o-tls")], {CM + "cluster-issuer": "le", CM + "duration": "soon",
                                                         CM + "renew-before": "x", CM + "private-key-algorithm": "DSA",
                                                         CM + "common-name": "other.example.com"}),
    ))
    problems = {c.secret_name: c.problem for c in result.certificates}
    assert problems["b-tls"].startswith("both cert-manager.io/cluster-issuer and cert-manager.io/issuer are set")
    assert problems["d-tls"].startswith("ClusterIssuer dns cannot issue: no usable solver")
    assert problems["c-tls"] == "ClusterIssuer ca cannot issue: CA Secret cert-manager/missing-ca not found"
    assert "external issuers are not supported" in problems["g-tls"]
    assert "*.w.example.com needs a DNS-01 challenge" in problems["w-tls"]
    assert problems["o-tls"] is None
    errors = messages(result, "error")
    assert "ClusterIssuer ca: CA Secret cert-manager/missing-ca not found (a kubernetes.io/tls Secret holding " \
           "the CA certificate and key)" in errors
    assert any(e.startswith("ClusterIssuer dns: no usable solver") for e in errors)
    warnings = messages(result, "warning")
    for text in ("cert-manager.io/duration: 'soon' is not a duration", "cert-manager.io/renew-before: 'x' is not",
                 "cert-manager.io/private-key-algorithm: 'DSA' is not supported",
                 "cert-manager.io/common-name: 'other.example.com' is not one of"):
        assert any(w.startswith("Ingress default/opts: " + text) for w in warnings), text
    opts = next(c for c in result.certificates if c.secret_name == "o-tls")
    assert (opts.duration, opts.renew_before, opts.key, opts.common_name) == (None, None, KeySpec(), "o.example.com")


def test_key_and_lifetime_annotations():
    result = plan(snapshot(cluster_issuer("le"), ingress("k", [(["k.example.com", "kk.example.com"], "k-tls")], {
        CM + "cluster-issuer": "le", CM + "private-key-algorithm": "RSA", CM + "private-key-size": "4096",
        CM + "duration": "2160h", CM + "renew-before": "360h", CM + "common-name": "kk.example.com"})))
    cert = result.certificates[0]
    assert cert.key == KeySpec("RSA", 4096) and cert.duration == 2160 * 3600 and cert.renew_before == 360 * 3600
    assert cert.common_name == "kk.example.com"
    rsa_default = plan(snapshot(cluster_issuer("le"), ingress("k", [(["k.example.com"], "k-tls")], {
        CM + "cluster-issuer": "le", CM + "private-key-algorithm": "rsa"}))).certificates[0]
    assert rsa_default.key == KeySpec("RSA", 2048)
    bad_size = plan(snapshot(cluster_issuer("le"), ingress("k", [(["k.example.com"], "k-tls")], {
        CM + "cluster-issuer": "le", CM + "private-key-size": "1024"})))
    assert bad_size.certificates[0].key == KeySpec("ECDSA", 256)
    assert any("'1024' is not a ECDSA key size" in m for m in messages(bad_size))
    short = plan(snapshot(cluster_issuer("le"), ingress("k", [(["k.example.com"], "k-tls")], {
        CM + "cluster-issuer": "le", CM + "duration": "1h", CM + "renew-before": "2h"})))
    assert short.certificates[0].renew_before is None
    assert any("renew-before must be shorter" in m for m in messages(short))


def test_same_secret_twice_oldest_wins_and_identical_entries_merge():
    ann = {CM + "cluster-issuer": "le"}
    result = plan(snapshot(
        cluster_issuer("le"),
        ingress("old", [(["a.example.com"], "shared")], ann, created="2020-01-01T00:00:00Z"),
        ingress("new", [(["b.example.com"], "shared")], ann, created="2021-01-01T00:00:00Z"),
        ingress("same", [(["a.example.com"], "shared")], ann, created="2022-01-01T00:00:00Z"),
    ))
    assert [(c.secret_name, c.hosts, c.ingress) for c in result.certificates] == [
        ("shared", ("a.example.com",), "default/old")]
    warnings = messages(result, "warning")
    assert any(w.startswith("Ingress default/new: spec.tls[0]: Secret default/shared is already managed for "
                            "the older Ingress default/old") for w in warnings)
    assert not any(w.startswith("Ingress default/same") for w in warnings)


def test_group_identifies_same_names_issuer_and_key_in_one_namespace():
    ann = {CM + "cluster-issuer": "le"}
    result = plan(snapshot(
        cluster_issuer("le"),
        ingress("a", [(["x.example.com", "y.example.com"], "one")], ann),
        ingress("b", [(["y.example.com", "x.example.com"], "two")], ann),
        ingress("c", [(["x.example.com", "y.example.com"], "three")], ann, namespace="other"),
    ))
    groups = {c.secret_name: c.group for c in result.certificates}
    assert groups["one"] == groups["two"] != groups["three"]


def test_only_served_ingresses_get_certificates():
    ann = {CM + "cluster-issuer": "le"}
    result = plan(snapshot(cluster_issuer("le"), ingress("ours", [(["a.example.com"], "a")], ann),
                           ingress("nginx", [(["b.example.com"], "b")], ann, class_name="nginx")),
                  Settings(ingress_classes=("ingressd",)))
    assert [c.secret_name for c in result.certificates] == ["a"]


def test_a_secret_the_user_wrote_is_not_managed():
    cert, key = ca_pair()
    docs = (cluster_issuer("le"), ingress("web", [(["a.example.com"], "web-tls")], {CM + "cluster-issuer": "le"}))
    user = plan(snapshot(*docs, tls_secret("web-tls", "default", cert, key)),
                cert_settings=CertSettings(state_dir="/state"))
    assert user.certificates[0].problem == ("Secret default/web-tls is defined in the manifests "
                                            "(/manifests/site.yaml)")
    ours = snapshot(*docs)
    managed = snapshot(tls_secret("web-tls", "default", cert, key), origin="/state/secrets/default/web-tls.yaml")
    both = dataclasses.replace(ours, objects=ours.objects + managed.objects)
    assert plan(both, cert_settings=CertSettings(state_dir="/state")).certificates[0].problem is None


def test_unsupported_issuer_types_are_problems():
    [vault] = parse(cluster_issuer("v", {"vault": {"server": "https://vault"}}))
    assert vault.type == "unsupported" and "not supported by ingressd" in vault.problems[0]
    result = plan(snapshot(cluster_issuer("v", {"vault": {}}),
                           ingress("web", [(["a.example.com"], "a-tls")], {CM + "cluster-issuer": "v"})))
    assert result.certificates[0].problem.startswith("ClusterIssuer v cannot issue: spec.vault issuers are not")
