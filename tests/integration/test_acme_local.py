"""Certificates from local issuers (cert-manager's ``ca`` and ``selfSigned``), the README example,
and what happens with a bad issuer reference: real ``python -m ingressd serve`` processes, no ACME
server needed (see ``test_acme_pebble.py`` for ACME)."""

from __future__ import annotations

import datetime
import shutil
import stat

import pytest
import trustme
from cryptography import x509

from acme_pebble import issued_leaf, served_leaf, stored_secret
from support import manifests as m
from support.ingressd import REPO, run_cli, sample_value
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

CM = "cert-manager.io/"


def cluster_issuer(name: str, spec: dict) -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": name}, "spec": spec}


def issuer(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def site(name: str, host: str, secret: str, annotations: dict, namespace: str = "default") -> dict:
    return m.ingress(name, [m.rule(host, m.path("/", "svc-a"))], tls=[([host], secret)], annotations=annotations,
                     namespace=namespace)


def names(cert: x509.Certificate) -> set[str]:
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName))


def test_readme_example_issues_from_the_demo_ca(tmp_path, ingressd_factory):
    """examples/manifests as the README runs it: demo.localhost gets a certificate from the demo CA
    before the first configuration is served, verifiable with examples/demo-ca.crt from the first
    connection on (regression: a temporary certificate was served for the first moments)."""
    manifests = tmp_path / "examples"
    shutil.copytree(REPO / "examples" / "manifests", manifests)
    state = tmp_path / "state"
    files = {p.name: p.read_text() for p in manifests.glob("*.yaml")}
    inst = ingressd_factory(files, ["--state-dir", str(state)])
    ca_pem = (REPO / "examples" / "demo-ca.crt").read_bytes()
    cert = served_leaf(inst.https_port, "demo.localhost", ca_pem)  # ready means served: no waiting
    assert names(cert) == {"demo.localhost"}
    secret = stored_secret(state, "demo", "demo-tls")
    assert secret.data["ca.crt"] == ca_pem
    assert stat.S_IMODE((state / "secrets" / "demo" / "demo-tls.yaml").stat().st_mode) == 0o600
    listing = run_cli("certs", "--manifests", inst.manifests, "--state-dir", state)
    assert listing.returncode == 0
    assert any(line.startswith("demo/demo-tls") and "ClusterIssuer demo-ca" in line and "Ready" in line
               for line in listing.stdout.splitlines()), listing.stdout
    check = run_cli("check", "--manifests", inst.manifests, "--state-dir", state)
    assert check.returncode == 0 and "0 error(s), 0 warning(s)" in check.stdout, check.stdout


def test_local_issuers_annotations_and_issuer_switch(tmp_path, backend, ingressd_factory):
    """A namespaced ca Issuer (cert-manager.io/issuer) with RSA 3072 and a duration; a selfSigned
    ClusterIssuer; switching issuers keeps serving the current certificate until the new one."""
    ca = trustme.CA()
    ca_secret = m.tls_secret("team-ca", ca.cert_pem.bytes(), ca.private_key_pem.bytes(), namespace="team")
    docs = [*backend.service("a", namespace="team"), ca_secret,
            issuer("team-ca", "team", {"ca": {"secretName": "team-ca"}}),
            cluster_issuer("self", {"selfSigned": {}}),
            site("app", "app.team.test", "app-tls", {CM + "issuer": "team-ca", CM + "private-key-algorithm": "RSA",
                                                      CM + "private-key-size": "3072", CM + "duration": "720h"},
                 namespace="team")]
    inst = ingressd_factory({"site.yaml": docs}, ["--state-dir", str(tmp_path / "state")])
    state = tmp_path / "state"
    cert = wait_until(lambda: issued_leaf(state, "team", "app-tls"), timeout=30, message="app-tls")
    assert cert.public_key().key_size == 3072
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(hours=719) < lifetime <= datetime.timedelta(hours=721)
    secret = stored_secret(state, "team", "app-tls")
    assert (secret.annotations[CM + "issuer-kind"], secret.annotations[CM + "issuer-name"]) == ("Issuer", "team-ca")
    assert secret.data["ca.crt"] == ca.cert_pem.bytes()
    served = wait_until(lambda: served_leaf(inst.https_port, "app.team.test", ca.cert_pem.bytes()), timeout=10)
    assert served.serial_number == cert.serial_number

    docs[-1] = site("app", "app.team.test", "app-tls", {CM + "cluster-issuer": "self"}, namespace="team")
    inst.dir.write("site.yaml", docs)
    switched = wait_until(lambda: issued_leaf(state, "team", "app-tls", serial_not=cert.serial_number),
                          timeout=20, message="the certificate from the new issuer")
    assert switched.issuer == switched.subject  # self-signed
    assert stored_secret(state, "team", "app-tls").annotations[CM + "issuer-name"] == "self"
    # the current certificate stayed in place until then: no temporary one was written for the switch
    assert inst.stderr().count("serving a temporary self-signed certificate") == 1
    wait_until(lambda: served_leaf(inst.https_port, "app.team.test", None).serial_number == switched.serial_number,
               timeout=10)
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total", issuer="team/team-ca",
                        result="success") == 1
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total", issuer="self", result="success") == 1


def test_bad_issuer_references_are_reported_and_the_rest_serves(tmp_path, backend, ingressd_factory):
    """A missing ClusterIssuer, a dns01-only issuer, both annotations at once and a bad duration:
    clear messages naming the Ingress or issuer (in ``ingressd check`` and the log); the other
    Ingresses keep serving, HTTPS included."""
    docs = [*backend.service("a"),
            cluster_issuer("self", {"selfSigned": {}}),
            cluster_issuer("dns-only", {"acme": {"server": "https://acme.invalid/dir", "email": "a@example.com",
                                                 "privateKeySecretRef": {"name": "dns-only-key"},
                                                 "solvers": [{"dns01": {"cloudflare": {}}}]}}),
            site("missing", "missing.example.test", "missing-tls", {CM + "cluster-issuer": "nope"}),
            site("dns", "dns.example.test", "dns-tls", {CM + "cluster-issuer": "dns-only"}),
            site("both", "both.example.test", "both-tls", {CM + "cluster-issuer": "self", CM + "issuer": "x"}),
            site("good", "good.example.test", "good-tls", {CM + "cluster-issuer": "self", CM + "duration": "soon"}),
            m.ingress("plain", [m.rule("plain.example.test", m.path("/", "svc-a"))])]
    inst = ingressd_factory({"site.yaml": docs}, ["--state-dir", str(tmp_path / "state")])
    check = run_cli("check", "--manifests", inst.manifests, "--state-dir", tmp_path / "state")
    assert check.returncode == 1
    out = check.stdout
    assert "error: " in out and "Ingress default/missing: cert-manager.io/cluster-issuer: ClusterIssuer nope not " \
                                "found; no certificate is issued for it" in out, out
    assert "ClusterIssuer dns-only: no usable solver: ingressd answers HTTP-01 challenges only (dns01 is not " \
           "supported)" in out, out
    assert "ClusterIssuer dns-only: spec.acme.solvers[0].dns01 is not supported" in out
    assert "Ingress default/dns: ClusterIssuer dns-only cannot issue" in out
    assert "Ingress default/both: both cert-manager.io/cluster-issuer and cert-manager.io/issuer are set" in out
    assert "warning: " in out and "Ingress default/good: cert-manager.io/duration: 'soon' is not a duration" in out

    state = tmp_path / "state"
    good = wait_until(lambda: issued_leaf(state, "default", "good-tls"), timeout=20, message="good-tls")
    served = wait_until(lambda: served_leaf(inst.https_port, "good.example.test", None), timeout=10)
    assert served.serial_number == good.serial_number
    assert inst.get("/", host="plain.example.test").status == 200
    assert inst.get("/", host="missing.example.test").status == 308  # routed as before, default certificate
    for name in ("missing-tls", "dns-tls", "both-tls"):
        assert stored_secret(state, "default", name) is None
    log = inst.stderr()
    assert "Ingress default/missing: cert-manager.io/cluster-issuer: ClusterIssuer nope not found" in log
    assert "ClusterIssuer dns-only: no usable solver" in log
    assert inst.alive()
    listing = run_cli("certs", "--manifests", inst.manifests, "--state-dir", state).stdout
    row = next(line for line in listing.splitlines() if line.startswith("default/missing-tls"))
    assert "Error" in row and "ClusterIssuer nope not found" in row
