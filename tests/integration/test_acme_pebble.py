"""Automatic certificates from a real ACME server: Debian's pebble, validating HTTP-01 through the
ingressd under test (see ``acme_pebble.py``), with every ingressd a real ``python -m ingressd serve``.

ARI (RFC 9773, ``replaces``) and ACME profiles are not implemented by pebble 2.4: they are tested at
the message level in ``tests/unit/test_certmanager_acme.py``.
"""

from __future__ import annotations

import base64
import re
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509

from acme_pebble import FixedPortIngressd, Pebble, issued_leaf, needs_pebble, served_leaf, stored_secret
from support import manifests as m
from support.ingressd import free_port, run_cli, sample_value, samples
from support.wait import wait_until

pytestmark = [needs_pebble, pytest.mark.timeout(180)]

CM = "cert-manager.io/"


class Env:
    """One pebble, one manifest directory, one state directory, ingressd on fixed ports."""

    def __init__(self, tmp_path: Path, backend, validity: int | None = None):
        self.tmp = tmp_path
        self.backend = backend
        self.ports = (free_port(), free_port(), free_port())
        self.pebble = Pebble(tmp_path / "pebble", self.ports[0], validity)
        self.manifests = m.ManifestDir(tmp_path / "manifests")
        self.state = tmp_path / "state"
        self.instances: list[FixedPortIngressd] = []

    def issuer(self, name: str = "pebble", email: str = "ops@example.com", kind: str = "ClusterIssuer",
               namespace: str | None = None) -> dict:
        meta = {"name": name} | ({"namespace": namespace} if namespace else {})
        return {"apiVersion": "cert-manager.io/v1", "kind": kind, "metadata": meta, "spec": {"acme": {
            "server": self.pebble.directory, "email": email, "privateKeySecretRef": {"name": f"{name}-account"},
            "caBundle": base64.b64encode(self.pebble.ca_file.read_bytes()).decode(),
            "solvers": [{"http01": {"ingress": {"class": "ingressd"}}}]}}}

    def site(self, name: str, hosts: list[str], secret: str, annotations: dict[str, str]) -> dict:
        return m.ingress(name, [m.rule(host, m.path("/", "svc-a")) for host in hosts], tls=[(hosts, secret)],
                         annotations=annotations)

    def plain(self) -> dict:
        return m.ingress("plain", [m.rule("plain.example.com", m.path("/", "svc-a"))])

    def write(self, *docs: dict) -> None:
        self.manifests.write("site.yaml", [*self.backend.service("a"), *docs])

    def start(self, *args: str) -> FixedPortIngressd:
        inst = FixedPortIngressd(self.manifests.path, self.tmp / f"run{len(self.instances)}",
                                 ["--state-dir", str(self.state), *args], self.ports)
        self.instances.append(inst)
        return inst.start()

    @property
    def https_port(self) -> int:
        return self.ports[1]

    def issued(self, name: str, namespace: str = "default", serial_not: int | None = None,
               timeout: float = 60) -> x509.Certificate:
        return wait_until(lambda: issued_leaf(self.state, namespace, name, serial_not), timeout=timeout,
                          interval=0.1, message=f"a certificate in Secret {namespace}/{name}")

    def served(self, host: str, serial: int, timeout: float = 10) -> x509.Certificate:
        """Wait until ingressd presents the certificate ``serial`` for ``host``, verified against
        pebble's root with hostname checking (real TLS)."""
        root = self.pebble.root_pem()
        return wait_until(lambda: (c := served_leaf(self.https_port, host, root)).serial_number == serial and c,
                          timeout=timeout, interval=0.1, message=f"certificate {serial:x} served for {host}")

    def close(self) -> None:
        for inst in self.instances:
            inst.stop()
        self.pebble.close()


@pytest.fixture
def env(tmp_path, backend):
    environment = Env(tmp_path, backend)
    yield environment
    environment.close()


def names(cert: x509.Certificate) -> set[str]:
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName))


def test_cluster_issuer_two_names_restart_and_renamed_secret(env):
    """cert-manager.io/cluster-issuer, one certificate for a two-name spec.tls entry; a restart and
    a renamed Secret reuse it (no new order at pebble)."""
    env.pebble.start()
    hosts = ["www.example.com", "example.com"]
    env.write(env.issuer(), env.plain(), env.site("web", hosts, "web-tls", {CM + "cluster-issuer": "pebble"}))
    inst = env.start()
    cert = env.issued("web-tls")
    assert names(cert) == set(hosts)
    for host in hosts:
        env.served(host, cert.serial_number)
    assert env.pebble.issued() == 1

    secret = stored_secret(env.state, "default", "web-tls")
    assert secret.type == "kubernetes.io/tls"
    assert len(re.findall(rb"BEGIN CERTIFICATE", secret.data["tls.crt"])) >= 2  # leaf + chain
    assert secret.annotations[CM + "alt-names"] == "www.example.com,example.com"
    assert secret.annotations[CM + "common-name"] == "www.example.com"
    assert (secret.annotations[CM + "issuer-name"], secret.annotations[CM + "issuer-kind"]) == ("pebble",
                                                                                                 "ClusterIssuer")
    assert secret.annotations[CM + "certificate-name"] == "web-tls"
    path = env.state / "secrets" / "default" / "web-tls.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(env.state.stat().st_mode) == 0o700
    account = stored_secret(env.state, "cert-manager", "pebble-account")
    assert account is not None and b"PRIVATE KEY" in account.data["tls.key"]

    assert inst.get("/", host="plain.example.com").status == 200  # HTTP only: untouched
    assert inst.get("/x?y=1", host="www.example.com").status == 308  # HTTPS redirect as before
    metrics = inst.metrics()
    assert sample_value(metrics, "ingressd_certificate_orders_total", issuer="pebble", result="success") == 1
    expiry = {s[0]["host"]: s[1] for s in samples(metrics, "nginx_ingress_controller_ssl_expire_time_seconds")}
    assert expiry["example.com"] == cert.not_valid_after_utc.timestamp()
    renewal = samples(metrics, "ingressd_certificate_next_renewal_timestamp_seconds")
    assert [(s[0]["secret_name"], s[0]["issuer"]) for s in renewal] == [("web-tls", "pebble")]
    assert time.time() < renewal[0][1] < cert.not_valid_after_utc.timestamp()

    listing = run_cli("certs", "--manifests", env.manifests.path, "--state-dir", env.state)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("default/web-tls"))
    assert "www.example.com,example.com" in row and "ClusterIssuer pebble" in row and "Ready" in row
    accounts_before = env.pebble.logs().count("accounts in memory")

    # Restart: the stored certificate is valid, so no order.
    inst.stop()
    inst = env.start()
    wait_until(lambda: "default/web-tls for www.example.com, example.com (ClusterIssuer pebble) is valid until"
               in inst.stderr(), timeout=15, message="the restarted ingressd to check web-tls")
    env.served("example.com", cert.serial_number)
    assert env.pebble.issued() == 1
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total") == 0

    # A renamed Secret: same names, same issuer, so the valid certificate is copied, not ordered.
    env.write(env.issuer(), env.plain(), env.site("web", hosts, "web-tls-renamed", {CM + "cluster-issuer": "pebble"}))
    renamed = env.issued("web-tls-renamed", timeout=15)
    assert renamed.serial_number == cert.serial_number
    env.served("www.example.com", cert.serial_number)
    assert "reusing the valid certificate of Secret default/web-tls" in inst.stderr()
    assert env.pebble.issued() == 1
    assert env.pebble.logs().count("accounts in memory") == accounts_before  # no new account either


def test_tls_acme_with_acme_email_and_changed_email(env):
    """kube-lego's kubernetes.io/tls-acme with --acme-email/--acme-server/--acme-ca-bundle; a new
    --acme-email updates the account's contact (same account, no new order)."""
    env.pebble.start()
    env.write(env.plain(), env.site("lego", ["lego.example.com"], "lego-tls", {"kubernetes.io/tls-acme": "true"}))
    acme_flags = ["--acme-server", env.pebble.directory, "--acme-ca-bundle", str(env.pebble.ca_file)]
    inst = env.start("--acme-email", "first@example.com", *acme_flags)
    cert = env.issued("lego-tls")
    env.served("lego.example.com", cert.serial_number)
    secret = stored_secret(env.state, "default", "lego-tls")
    assert secret.annotations[CM + "issuer-name"] == "ingressd-acme"
    key = stored_secret(env.state, "cert-manager", "ingressd-acme-account-key")
    uri = key.annotations["ingressd.io/acme-account"]
    assert contact(env, key.data["tls.key"]) == (uri, ("mailto:first@example.com",))

    inst.stop()
    inst = env.start("--acme-email", "second@example.com", *acme_flags)
    wait_until(lambda: stored_secret(env.state, "cert-manager", "ingressd-acme-account-key")
               .annotations.get("ingressd.io/acme-email") == "second@example.com", timeout=20,
               message="the account's email to be updated")
    assert contact(env, key.data["tls.key"]) == (uri, ("mailto:second@example.com",))
    assert "updated the contact of ACME account" in inst.stderr()
    assert env.pebble.issued() == 1
    assert env.pebble.logs().count("There are now 2 accounts") == 0


def contact(env: Env, key_pem: bytes) -> tuple[str, tuple[str, ...]]:
    """(account URL, contact) as pebble has them for this key, asked with the acme library."""
    from acme import client, messages

    from ingressd.certmanager.acme_client import account_jwk

    jwk, alg = account_jwk(key_pem)
    net = client.ClientNetwork(jwk, alg=alg, verify_ssl=str(env.pebble.ca_file))
    cli = client.ClientV2(client.ClientV2.get_directory(env.pebble.directory, net), net)
    regr = cli.query_registration(messages.RegistrationResource(body=messages.Registration()))
    return regr.uri, tuple(regr.body.contact)


def test_pebble_down_at_start_backs_off_then_issues(env):
    """The CA is unreachable at start: the host is served with a temporary certificate, the order
    backs off (persisted across a restart), the rest keeps serving, and once the CA is up the
    certificate arrives."""
    env.write(env.issuer(), env.plain(), env.site("late", ["late.example.com"], "late-tls",
                                                   {CM + "cluster-issuer": "pebble"}))
    inst = env.start()
    wait_until(lambda: "cannot reach the ACME server" in inst.stderr(), timeout=20, message="a failed order")
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total", result="unreachable") == 1
    temporary = served_leaf(env.https_port, "late.example.com", None)
    assert temporary.issuer.rfc4514_string() == "CN=ingressd temporary certificate"
    assert names(temporary) == {"late.example.com"}
    assert inst.get("/", host="plain.example.com").status == 200
    listing = run_cli("certs", "--manifests", env.manifests.path, "--state-dir", env.state).stdout
    assert "Temporary (backoff after 1 failure(s))" in listing and "cannot reach the ACME server" in listing

    # A restart while backing off does not retry at once: the backoff is in the state directory.
    inst.stop()
    inst = env.start()
    wait_until(lambda: "default/late-tls: next order at" in inst.stderr(), timeout=15, message="backoff kept")
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total") == 0

    env.pebble.start()
    cert = env.issued("late-tls", timeout=40)
    env.served("late.example.com", cert.serial_number)
    assert inst.get("/", host="plain.example.com").status == 200
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total", result="success") == 1
    assert env.pebble.issued() == 1


def test_short_duration_renews(env):
    """cert-manager.io/duration shorter than what the CA issues: renewed when a third of it remains,
    with a new order whose certificate replaces the served one."""
    env.pebble.start()
    env.write(env.issuer(), env.site("short", ["short.example.com"], "short-tls",
                                     {CM + "cluster-issuer": "pebble", CM + "duration": "18s",
                                      CM + "private-key-algorithm": "RSA"}))
    inst = env.start()
    first = env.issued("short-tls")
    assert first.public_key().key_size == 2048
    second = env.issued("short-tls", serial_not=first.serial_number, timeout=40)
    assert second.not_valid_before_utc >= first.not_valid_before_utc
    env.served("short.example.com", second.serial_number)
    assert env.pebble.issued() == 2
    assert sample_value(inst.metrics(), "ingressd_certificate_orders_total", result="success") == 2
    assert "renewal due" in inst.stderr()
