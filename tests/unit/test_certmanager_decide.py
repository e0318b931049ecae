"""What to do for a certificate, from its stored Secret, its status and the clock: pure, no IO."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certmanager_kit import CM, cluster_issuer, ingress, snapshot
from ingressd.certmanager.decide import MIN_REISSUE_INTERVAL, decide, facts_of, matches
from ingressd.certmanager.keys import KeySpec, key_pem
from ingressd.certmanager.listing import certificate_entries
from ingressd.certmanager.manager import secret_annotations
from ingressd.certmanager.plan import plan
from ingressd.certmanager.store import CertStatus
from ingressd.objects import Secret
from ingressd.certmanager.timing import DAY

NOW = 1_800_000_000.0
ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())


def wanted(*entries, issuer: str = "le", annotations: dict | None = None):
    """WantedCertificates for Ingress "web" with these (hosts, secret) entries."""
    docs = [cluster_issuer("le"), cluster_issuer("other"),
            ingress("web", list(entries), {CM + "cluster-issuer": issuer, **(annotations or {})})]
    return list(plan(snapshot(*docs)).certificates)


def certificate(names, key=None, days: float = 90, age: float = 1, issuer_key=ISSUER_KEY):
    key = key or ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.fromtimestamp(NOW - age * DAY, datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def stored(want, cert_key=None, name: str | None = None, temporary: bool = False, **kw):
    cert_pem, kpem = cert_key or certificate(want.hosts, **kw)
    return Secret.build(want.namespace, name or want.secret_name, "kubernetes.io/tls",
                        {"tls.crt": cert_pem, "tls.key": kpem}, secret_annotations(want, temporary))


def facts(*secrets):
    return {s.key: facts_of(s) for s in secrets}


def test_facts_of_a_secret():
    [want] = wanted((["a.example.com", "b.example.com"], "ab"))
    f = facts_of(stored(want))
    assert f.names == {"a.example.com", "b.example.com"} and f.usable and not f.temporary
    assert f.issuer == want.issuer_ref and f.key_spec == KeySpec("ECDSA", 256)
    assert f.not_after - f.not_before == 90 * DAY and f.cert_id and f.cert_id.count(".") == 1
    mismatched = stored(want, (certificate(want.hosts)[0], certificate(want.hosts)[1]))
    assert not facts_of(mismatched).usable and "does not belong" in facts_of(mismatched).problem
    broken = Secret.build("default", "ab", "kubernetes.io/tls", {"tls.crt": b"junk", "tls.key": b"junk"}, {})
    assert not facts_of(broken).usable and facts_of(broken).problem
    assert not facts_of(Secret.build("default", "x", "Opaque", {"tls.key": b"k"}, {})).usable


def test_nothing_stored_writes_a_temporary_certificate_and_orders_now():
    [want] = wanted((["a.example.com"], "a-tls"))
    d = decide([want], {}, None, NOW)
    assert d.temporary == (("default", "a-tls"),) and d.issue_at == NOW and d.reason == "no certificate yet"
    assert d.copy_from is None and d.renew_at is None


def test_a_temporary_certificate_is_kept_while_ordering():
    [want] = wanted((["a.example.com"], "a-tls"))
    temp = stored(want, temporary=True)  # dated by NOW, unlike keys.temporary_certificate
    d = decide([want], facts(temp), None, NOW)
    assert d.temporary == () and d.issue_at == NOW and d.reason == "serving a temporary certificate"


def test_a_valid_certificate_renews_at_a_third_of_its_lifetime():
    [want] = wanted((["a.example.com"], "a-tls"))
    secret = stored(want, days=90, age=1)
    d = decide([want], facts(secret), CertStatus(), NOW)
    assert d.copy_to == () and d.temporary == ()
    not_after = NOW - DAY + 90 * DAY
    assert not_after - 30 * DAY - 0.5 * DAY <= d.renew_at <= not_after - 30 * DAY
    assert d.issue_at == d.renew_at and d.issue_at > NOW and d.replaces.key == secret.key
    # what a restart computes is the same: no order while the certificate is valid
    assert decide([want], facts(secret), CertStatus(), NOW + 3600).issue_at == d.issue_at


def test_due_for_renewal_orders_now_and_replaces_the_current_certificate():
    [want] = wanted((["a.example.com"], "a-tls"))
    secret = stored(want, days=90, age=70)
    d = decide([want], facts(secret), CertStatus(), NOW)
    assert d.issue_at <= NOW and d.reason == "renewal due" and d.replaces.fingerprint == facts_of(secret).fingerprint
    assert d.temporary == ()  # keeps serving the current one


def test_renamed_secret_reuses_the_valid_certificate():
    [old] = wanted((["a.example.com"], "old-tls"))
    [new] = wanted((["a.example.com"], "new-tls"))
    previous = stored(old)
    d = decide([new], facts(previous), CertStatus(), NOW)
    assert d.copy_from.key == ("default", "old-tls") and d.copy_to == (("default", "new-tls"),)
    assert d.temporary == () and d.issue_at > NOW


def test_same_names_in_two_secrets_share_one_certificate():
    one, two = wanted((["a.example.com", "b.example.com"], "one"), (["b.example.com", "a.example.com"], "two"))
    assert one.group == two.group
    first = stored(one)
    d = decide([one, two], facts(first), CertStatus(), NOW)
    assert d.copy_to == (("default", "two"),) and d.issue_at > NOW


def test_another_namespace_is_never_copied_from():
    [want] = wanted((["a.example.com"], "a-tls"))
    elsewhere = Secret.build("other", "a-tls", "kubernetes.io/tls", stored(want).data, secret_annotations(want))
    d = decide([want], facts(elsewhere), CertStatus(), NOW)
    assert d.copy_from is None and d.issue_at == NOW


def test_changed_names_or_issuer_or_key_type_reissue_but_keep_serving():
    [before] = wanted((["a.example.com"], "a-tls"))
    current = stored(before)
    for want, reason in ((wanted((["a.example.com", "b.example.com"], "a-tls"))[0], "the names changed"),
                         (wanted((["a.example.com"], "a-tls"), issuer="other")[0],
                          "the issuer changed (was ClusterIssuer le)"),
                         (wanted((["a.example.com"], "a-tls"), annotations={
                             CM + "private-key-algorithm": "RSA"})[0], "the key type changed (was ECDSA 256)")):
        d = decide([want], facts(current), CertStatus(), NOW)
        assert (d.issue_at, d.reason, d.temporary, d.copy_from) == (NOW, reason, (), None)


def test_expired_or_mismatched_certificates_get_a_temporary_one():
    [want] = wanted((["a.example.com"], "a-tls"))
    expired = stored(want, days=10, age=20)
    d = decide([want], facts(expired), CertStatus(), NOW)
    assert d.reason == "the certificate has expired" and d.temporary == (("default", "a-tls"),)
    wrong_key = stored(want, (certificate(want.hosts)[0], certificate(want.hosts)[1]))
    d = decide([want], facts(wrong_key), CertStatus(), NOW)
    assert d.reason == "tls.key does not belong to the certificate in tls.crt" and d.temporary


def test_backoff_delays_orders_and_renewals():
    [want] = wanted((["a.example.com"], "a-tls"))
    status = CertStatus(failures=2, next_attempt=NOW + 600, last_error="boom")
    d = decide([want], {}, status, NOW)
    assert d.issue_at == NOW + 600 and d.waiting_for_backoff and d.temporary
    due = stored(want, days=90, age=70)
    d = decide([want], facts(due), status, NOW)
    assert d.issue_at == NOW + 600 and d.waiting_for_backoff


def test_never_reissue_right_after_a_success():
    [want] = wanted((["a.example.com"], "a-tls"), annotations={CM + "duration": "1s"})
    secret = stored(want, days=90, age=0.001)
    d = decide([want], facts(secret), CertStatus(last_success=NOW - 2), NOW)
    assert d.issue_at == NOW - 2 + MIN_REISSUE_INTERVAL


def test_ari_choice_applies_to_its_certificate_only():
    [want] = wanted((["a.example.com"], "a-tls"))
    secret = stored(want, days=90, age=1)
    f = facts_of(secret)
    d = decide([want], {secret.key: f}, CertStatus(ari_cert_id=f.cert_id, ari_renew_at=NOW + 5 * DAY), NOW)
    assert d.renew_at == NOW + 5 * DAY
    d = decide([want], {secret.key: f}, CertStatus(ari_cert_id="other.cert", ari_renew_at=NOW + 5 * DAY), NOW)
    assert d.renew_at > NOW + 50 * DAY


def test_rsa_key_spec_matching():
    [want] = wanted((["a.example.com"], "a-tls"), annotations={CM + "private-key-algorithm": "RSA"})
    secret = stored(want, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert matches(want, facts_of(secret), NOW)


def test_status_entries():
    one, two = wanted((["a.example.com"], "one"), (["b.example.com"], "two"))
    web = ingress("web", [(["a.example.com"], "one"), (["b.example.com"], "two")], {CM + "cluster-issuer": "le"})
    bad = ingress("bad", [(["c.example.com"], "c")], {CM + "cluster-issuer": "nope"})
    result = plan(snapshot(cluster_issuer("le"), web, bad))
    secrets = facts(stored(one), stored(two, temporary=True))
    statuses = {two.group: CertStatus(failures=1, next_attempt=NOW + 60, last_error="cannot reach the ACME server")}
    entries = {e["secret"]: e for e in certificate_entries(result, secrets, statuses, NOW)}
    assert entries["default/one"]["state"] == "Ready" and entries["default/one"]["issuer"] == "ClusterIssuer le"
    assert entries["default/one"]["next_renewal"].timestamp() > NOW
    assert entries["default/two"]["state"] == "Temporary (backoff after 1 failure(s))"
    assert entries["default/two"]["last_error"] == "cannot reach the ACME server"
    assert entries["default/c"]["state"] == "Error"
    assert "ClusterIssuer nope not found" in entries["default/c"]["last_error"]
    issuing = certificate_entries(result, secrets, {}, NOW, issuing={two.group})
    assert {e["secret"]: e["state"] for e in issuing}["default/two"] == "Issuing"
