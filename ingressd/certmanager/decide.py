"""What to do for one certificate now: pure decisions from stored Secrets, status and the clock.

``facts_of`` reads what a stored Secret holds; ``decide`` compares it with what is wanted and
answers: copy a valid certificate that already exists (a renamed Secret, two Ingresses with the same
names), write a temporary certificate for hosts that have nothing to serve, and when to order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..certs import load_certificate
from ..objects import TLS_SECRET_TYPE, Secret
from .issuers import CLUSTER_ISSUER, ISSUER, IssuerRef
from .keys import KeySpec
from .plan import WantedCertificate
from .store import CertStatus
from .timing import renewal_time

TLS_TYPE = TLS_SECRET_TYPE
ALT_NAMES = "cert-manager.io/alt-names"
COMMON_NAME = "cert-manager.io/common-name"
ISSUER_NAME = "cert-manager.io/issuer-name"
ISSUER_KIND = "cert-manager.io/issuer-kind"
ISSUER_GROUP = "cert-manager.io/issuer-group"
CERTIFICATE_NAME = "cert-manager.io/certificate-name"
TEMPORARY = "ingressd.io/temporary-certificate"
MANAGED_BY = "ingressd.io/managed-by"

# Never order a renewal for the same certificate sooner than this after the last success, whatever
# the annotations say (a duration of a few seconds would otherwise loop).
MIN_REISSUE_INTERVAL = 10.0


@dataclass(frozen=True)
class SecretFacts:
    namespace: str
    name: str
    names: frozenset[str] = frozenset()
    not_before: float = 0.0
    not_after: float = 0.0
    issuer: IssuerRef | None = None
    temporary: bool = False
    usable: bool = False  # a parsable certificate whose key belongs to it
    key_spec: KeySpec | None = None
    fingerprint: str = ""
    serial: int = 0
    cert_id: str | None = None  # RFC 9773 CertID, when the certificate has an AKI
    problem: str = ""  # why it is not usable

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def valid_at(self, now: float) -> bool:
        return self.usable and self.not_before <= now < self.not_after


def facts_of(secret: Secret) -> SecretFacts:
    """What a Secret holds, parsed by the translator's own certificate parser
    (:func:`ingressd.certs.load_certificate`). Never raises: an unusable Secret says why in ``problem``."""
    base = dict(namespace=secret.namespace, name=secret.name, temporary=secret.annotations.get(TEMPORARY) == "true")
    kind, name = secret.annotations.get(ISSUER_KIND), secret.annotations.get(ISSUER_NAME)
    if kind in (CLUSTER_ISSUER, ISSUER) and name:
        base["issuer"] = IssuerRef(kind, secret.namespace if kind == ISSUER else "", name)
    if secret.type != TLS_TYPE or not secret.cert_pem or not secret.key_pem:
        return SecretFacts(**base, problem="not a kubernetes.io/tls Secret with tls.crt and tls.key")
    try:
        cert = load_certificate(f"{secret.namespace}/{secret.name}", secret.cert_pem, secret.key_pem)
    except ValueError as error:
        return SecretFacts(**base, problem=str(error))
    algorithm = cert.public_key_algorithm
    return SecretFacts(
        **base, names=frozenset(cert.names) if cert.has_san else frozenset(),
        not_before=cert.not_before.timestamp(), not_after=cert.not_after.timestamp(), usable=True,
        key_spec=KeySpec(algorithm, cert.public_key_size) if algorithm in ("RSA", "ECDSA") else None,
        fingerprint=cert.fingerprint, serial=int(cert.serial), cert_id=cert.cert_id)


@dataclass(frozen=True)
class Decision:
    renew_at: float | None = None  # renewal time of the current certificate, when there is one
    issue_at: float | None = None  # when to order (None: never, nothing to issue)
    reason: str = ""  # why an order is needed
    copy_from: SecretFacts | None = None  # a valid certificate to copy ...
    copy_to: tuple[tuple[str, str], ...] = ()  # ... into these Secrets
    temporary: tuple[tuple[str, str], ...] = ()  # Secrets to fill with a temporary certificate now
    replaces: SecretFacts | None = None  # the certificate a renewal replaces (ARI ``replaces``)
    waiting_for_backoff: bool = False


def matches(want: WantedCertificate, facts: SecretFacts | None, now: float) -> bool:
    """Does ``facts`` hold a certificate that fully satisfies ``want``?"""
    return (facts is not None and facts.valid_at(now) and not facts.temporary and facts.names == want.names
            and facts.issuer == want.issuer_ref and facts.key_spec == want.key)


def why_issue(want: WantedCertificate, facts: SecretFacts | None, now: float) -> str:
    if facts is None:
        return "no certificate yet"
    if facts.temporary:
        return "serving a temporary certificate"
    if not facts.usable:
        return facts.problem or "the stored certificate is unusable"
    if now >= facts.not_after:
        return "the certificate has expired"
    if facts.issuer != want.issuer_ref:
        return f"the issuer changed (was {facts.issuer or 'unknown'})"
    if facts.names != want.names:
        return "the names changed"
    if facts.key_spec != want.key:
        return f"the key type changed (was {facts.key_spec})"
    return "the certificate is not valid yet"


def cert_renewal_time(want: WantedCertificate, facts: SecretFacts, status: CertStatus | None) -> float:
    ari = None
    if status is not None and status.ari_renew_at is not None and facts.cert_id and status.ari_cert_id == facts.cert_id:
        ari = status.ari_renew_at
    return renewal_time(facts.not_before, facts.not_after, seed=facts.fingerprint, duration=want.duration,
                        renew_before=want.renew_before, ari_renew_at=ari)


def decide(group: list[WantedCertificate], stored: dict[tuple[str, str], SecretFacts],
           status: CertStatus | None, now: float) -> Decision:
    """The decision for one group of identical wanted certificates (see ``WantedCertificate.group``).

    ``stored`` holds the facts of every stored Secret in the group's namespace (wanted or not: a
    Secret left behind by a rename still holds a usable certificate).
    """
    want = group[0]
    status = status or CertStatus()
    candidates = [f for f in stored.values() if f.namespace == want.namespace and matches(want, f, now)]
    best = max(candidates, key=lambda f: (f.not_after, f.fingerprint), default=None)
    if best is not None:
        copy_to = tuple(c.key_ for c in group if (stored.get(c.key_) is None
                                                  or stored[c.key_].fingerprint != best.fingerprint))
        renew_at = cert_renewal_time(want, best, status)
        issue_at = max(renew_at, status.next_attempt, status.last_success + MIN_REISSUE_INTERVAL)
        return Decision(renew_at=renew_at, issue_at=issue_at, reason="renewal due", copy_from=best,
                        copy_to=copy_to, replaces=best, waiting_for_backoff=status.next_attempt > max(now, renew_at))
    temporary = tuple(c.key_ for c in group if not (stored.get(c.key_) and stored[c.key_].valid_at(now)))
    reason = why_issue(want, stored.get(want.key_), now)
    return Decision(issue_at=max(now, status.next_attempt), reason=reason, temporary=temporary,
                    waiting_for_backoff=status.next_attempt > now)
