"""Which certificates the objects ask for: a pure function of a snapshot and the settings.

One certificate per ``spec.tls`` entry that has a ``secretName`` on a served Ingress carrying a
managing annotation (cert-manager's ``cert-manager.io/cluster-issuer`` or ``cert-manager.io/issuer``,
or kube-lego's ``kubernetes.io/tls-acme: "true"`` with the default issuer), covering exactly the
entry's hosts. Every problem becomes a diagnostic naming the Ingress or issuer; none stops the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable

from ..config import Settings, Snapshot
from ..diagnostics import ERROR, WARNING, Diagnostic
from ..objects import Ingress, Secret
from ..translate import served_ingresses
from .issuers import (CLUSTER_ISSUER, ISSUER, LETSENCRYPT_PRODUCTION, Issuer, IssuerRef, implicit_issuer)
from .keys import KeySpec
from .timing import HOUR, parse_duration

PREFIX = "cert-manager.io/"
CLUSTER_ISSUER_ANNOTATION = PREFIX + "cluster-issuer"
ISSUER_ANNOTATION = PREFIX + "issuer"
ISSUER_KIND_ANNOTATION = PREFIX + "issuer-kind"
ISSUER_GROUP_ANNOTATION = PREFIX + "issuer-group"
COMMON_NAME_ANNOTATION = PREFIX + "common-name"
DURATION_ANNOTATION = PREFIX + "duration"
RENEW_BEFORE_ANNOTATION = PREFIX + "renew-before"
KEY_ALGORITHM_ANNOTATION = PREFIX + "private-key-algorithm"
KEY_SIZE_ANNOTATION = PREFIX + "private-key-size"
TLS_ACME_ANNOTATION = "kubernetes.io/tls-acme"
IMPLICIT_ISSUER_NAME = "ingressd-acme"
# The label that marks a Secret as ingressd's (it may overwrite it); cert-manager's annotations are written too.
MANAGED_LABEL = "ingressd.io/managed-by"
MANAGED_VALUE = "ingressd"

_RSA_SIZES = (2048, 3072, 4096)
_EC_SIZES = (256, 384, 521)


@dataclass(frozen=True)
class CertSettings:
    """The command-line choices for certificate management."""

    state_dir: str | None = None
    default_issuer: str | None = None  # a ClusterIssuer, for kubernetes.io/tls-acme
    acme_email: str | None = None  # defines the implicit ClusterIssuer "ingressd-acme"
    acme_server: str = LETSENCRYPT_PRODUCTION
    acme_ca_bundle: str | None = None  # file

    @property
    def effective_default_issuer(self) -> str | None:
        return self.default_issuer or (IMPLICIT_ISSUER_NAME if self.acme_email else None)


@dataclass(frozen=True)
class WantedCertificate:
    namespace: str
    secret_name: str
    hosts: tuple[str, ...]
    ingress: str  # "namespace/name" of the Ingress asking for it
    issuer_ref: IssuerRef | None
    issuer: Issuer | None = field(default=None, compare=False)
    common_name: str | None = None
    key: KeySpec = KeySpec()
    duration: float | None = None
    renew_before: float | None = None
    problem: str | None = None  # why it cannot be issued (then issuer may be None)

    @property
    def key_(self) -> tuple[str, str]:
        return (self.namespace, self.secret_name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.hosts)

    @property
    def group(self) -> str:
        """Certificates with the same group are one certificate: one order serves them all.

        Limited to one namespace: copying a private key into another namespace's Secret would hand
        it to that namespace's users."""
        return f"{self.namespace}|{self.issuer_ref}|{self.key}|{','.join(sorted(self.hosts))}"


@dataclass(frozen=True)
class Plan:
    certificates: tuple[WantedCertificate, ...] = ()  # including those with a problem
    issuers: dict[IssuerRef, Issuer] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def issuable(self) -> tuple[WantedCertificate, ...]:
        return tuple(c for c in self.certificates if c.problem is None)


def find_tls_secret(snapshot: Snapshot, namespace: str, name: str) -> Secret | None:
    secret = snapshot.by_key.get(("Secret", namespace, name))
    return secret if isinstance(secret, Secret) and secret.is_tls else None


def manages(ingress: Ingress) -> bool:
    ann = ingress.meta.annotations
    return (CLUSTER_ISSUER_ANNOTATION in ann or ISSUER_ANNOTATION in ann
            or ann.get(TLS_ACME_ANNOTATION, "").lower() == "true")


class _Planner:
    def __init__(self, snapshot: Snapshot, settings: Settings, cert_settings: CertSettings,
                 owns: Callable[[Secret], bool] | None):
        self.snapshot = snapshot
        self.owns = owns
        self.objects = snapshot.objects
        self.settings = settings
        self.cert_settings = cert_settings
        self.diagnostics: list[Diagnostic] = []
        self.issuers: dict[IssuerRef, Issuer] = {}
        for obj in self.objects:
            if isinstance(obj, Issuer):
                self.issuers[obj.ref] = obj

    def report(self, severity: str, obj, message: str) -> None:
        meta = getattr(obj, "meta", None)
        self.diagnostics.append(Diagnostic(severity, message, meta.origin if meta else None,
                                           meta.ref if meta else None))

    def issuer_checks(self) -> None:
        cs = self.cert_settings
        if cs.acme_email:
            implicit = implicit_issuer(IMPLICIT_ISSUER_NAME, cs.acme_email, cs.acme_server, cs.acme_ca_bundle)
            if implicit.ref in self.issuers:
                self.report(WARNING, self.issuers[implicit.ref], "this ClusterIssuer is used instead of the one "
                                                                 "--acme-email defines with the same name")
            else:
                self.issuers[implicit.ref] = implicit
        for issuer in self.issuers.values():
            for warning in issuer.warnings:
                self.report(WARNING, issuer, warning)
            for problem in issuer.problems:
                self.report(ERROR, issuer, problem)
            if issuer.ca_secret:
                secret = find_tls_secret(self.snapshot, issuer.resource_namespace, issuer.ca_secret)
                if secret is None:
                    self.report(ERROR, issuer, f"CA Secret {issuer.resource_namespace}/{issuer.ca_secret} not found "
                                               "(a kubernetes.io/tls Secret holding the CA certificate and key)")
        if cs.default_issuer and IssuerRef(CLUSTER_ISSUER, "", cs.default_issuer) not in self.issuers:
            if any(i.meta.annotations.get(TLS_ACME_ANNOTATION, "").lower() == "true"
                   for i in self.objects if isinstance(i, Ingress)):
                self.diagnostics.append(Diagnostic(ERROR, f"--default-issuer {cs.default_issuer}: "
                                                          "ClusterIssuer not found"))

    def issuer_problem(self, issuer: Issuer) -> str | None:
        if issuer.problems:
            return f"{issuer.ref} cannot issue: {issuer.problems[0]}"
        if issuer.ca_secret and find_tls_secret(self.snapshot, issuer.resource_namespace, issuer.ca_secret) is None:
            return f"{issuer.ref} cannot issue: CA Secret {issuer.resource_namespace}/{issuer.ca_secret} not found"
        return None

    def resolve(self, ingress: Ingress) -> tuple[IssuerRef | None, str | None]:
        """The issuer an Ingress asks for, or why it cannot be resolved."""
        ann = ingress.meta.annotations
        cluster, namespaced = ann.get(CLUSTER_ISSUER_ANNOTATION), ann.get(ISSUER_ANNOTATION)
        group = ann.get(ISSUER_GROUP_ANNOTATION)
        if group and group != "cert-manager.io":
            return None, f"{ISSUER_GROUP_ANNOTATION}: {group!r}: external issuers are not supported"
        if cluster is not None and namespaced is not None:
            return None, f"both {CLUSTER_ISSUER_ANNOTATION} and {ISSUER_ANNOTATION} are set; use one"
        if cluster is not None:
            if not cluster:
                return None, f"{CLUSTER_ISSUER_ANNOTATION} is empty"
            ref = IssuerRef(CLUSTER_ISSUER, "", cluster)
            where = CLUSTER_ISSUER_ANNOTATION
        elif namespaced is not None:
            if not namespaced:
                return None, f"{ISSUER_ANNOTATION} is empty"
            kind = ann.get(ISSUER_KIND_ANNOTATION) or ISSUER
            if kind not in (ISSUER, CLUSTER_ISSUER):
                return None, f"{ISSUER_KIND_ANNOTATION}: {kind!r} is not Issuer or ClusterIssuer"
            ref = IssuerRef(kind, ingress.meta.namespace if kind == ISSUER else "", namespaced)
            where = ISSUER_ANNOTATION
        else:
            default = self.cert_settings.effective_default_issuer
            if not default:
                return None, (f"{TLS_ACME_ANNOTATION} needs a default issuer: start ingressd with --default-issuer "
                              "CLUSTERISSUER or --acme-email EMAIL")
            ref = IssuerRef(CLUSTER_ISSUER, "", default)
            where = "--default-issuer" if self.cert_settings.default_issuer else "--acme-email"
        if ref not in self.issuers:
            return ref, f"{where}: {ref} not found"
        return ref, None

    def options(self, ingress: Ingress, hosts: tuple[str, ...], acme: bool):
        """(common name, key spec, duration, renew-before) from the annotations; bad values warn."""
        ann = ingress.meta.annotations

        def warn(message: str) -> None:
            self.report(WARNING, ingress, message)

        duration = renew_before = None
        if ann.get(DURATION_ANNOTATION):
            try:
                duration = parse_duration(ann[DURATION_ANNOTATION])
            except ValueError as error:
                warn(f"{DURATION_ANNOTATION}: {error}; using the issuer's default")
            else:
                if acme and duration < HOUR:
                    warn(f"{DURATION_ANNOTATION}: {ann[DURATION_ANNOTATION]} is under an hour: renewing this "
                         "often from an ACME CA may hit its rate limits")
        if ann.get(RENEW_BEFORE_ANNOTATION):
            try:
                renew_before = parse_duration(ann[RENEW_BEFORE_ANNOTATION])
            except ValueError as error:
                warn(f"{RENEW_BEFORE_ANNOTATION}: {error}; renewing when a third of the lifetime remains")
            else:
                if duration is not None and renew_before >= duration:
                    warn(f"{RENEW_BEFORE_ANNOTATION} must be shorter than {DURATION_ANNOTATION}; "
                         "renewing when a third of the lifetime remains")
                    renew_before = None
        algorithm = (ann.get(KEY_ALGORITHM_ANNOTATION) or "ECDSA").strip()
        if algorithm.upper() in ("RSA", "ECDSA"):
            algorithm = algorithm.upper()
        else:
            warn(f"{KEY_ALGORITHM_ANNOTATION}: {algorithm!r} is not supported (RSA or ECDSA); using ECDSA")
            algorithm = "ECDSA"
        size = 2048 if algorithm == "RSA" else 256
        if ann.get(KEY_SIZE_ANNOTATION):
            raw = ann[KEY_SIZE_ANNOTATION].strip()
            allowed = _RSA_SIZES if algorithm == "RSA" else _EC_SIZES
            if raw.isdigit() and int(raw) in allowed:
                size = int(raw)
            else:
                warn(f"{KEY_SIZE_ANNOTATION}: {raw!r} is not a {algorithm} key size "
                     f"({', '.join(map(str, allowed))}); using {size}")
        common_name = ann.get(COMMON_NAME_ANNOTATION) or None
        if common_name is not None:
            common_name = common_name.lower()
            if common_name not in hosts:
                warn(f"{COMMON_NAME_ANNOTATION}: {common_name!r} is not one of the TLS hosts; ignored")
                common_name = None
        if common_name is None and len(hosts[0]) <= 64:
            common_name = hosts[0]
        return common_name, KeySpec(algorithm, size), duration, renew_before

    def run(self) -> Plan:
        self.issuer_checks()
        wanted: dict[tuple[str, str], WantedCertificate] = {}
        for ingress in served_ingresses(self.objects, self.settings):
            if not manages(ingress):
                continue
            ref, problem = self.resolve(ingress)
            if problem is not None:
                self.report(ERROR, ingress, f"{problem}; no certificate is issued for it")
            issuer = self.issuers.get(ref) if ref is not None else None
            if issuer is not None and problem is None:
                problem = self.issuer_problem(issuer)
                if problem is not None:
                    self.report(ERROR, ingress, f"{problem}; no certificate is issued for it")
            acme = issuer is not None and issuer.acme is not None
            if not ingress.tls:
                self.report(WARNING, ingress, "asks for a certificate but has no spec.tls entry")
            for i, entry in enumerate(ingress.tls):
                if not entry.secret_name:
                    self.report(WARNING, ingress, f"spec.tls[{i}] has no secretName; no certificate is managed for it")
                    continue
                hosts = tuple(dict.fromkeys(entry.hosts))
                if not hosts:
                    self.report(WARNING, ingress, f"spec.tls[{i}] has no hosts; no certificate is managed for it")
                    continue
                cert_problem = problem
                if cert_problem is None and acme:
                    wildcards = [h for h in hosts if h.startswith("*.")]
                    if wildcards:
                        cert_problem = (f"spec.tls[{i}]: {', '.join(wildcards)} needs a DNS-01 challenge, which "
                                        "ingressd does not answer (HTTP-01 only)")
                        self.report(ERROR, ingress, f"{cert_problem}; no certificate is issued for it")
                common_name, key, duration, renew_before = self.options(ingress, hosts, acme)
                cert = WantedCertificate(
                    namespace=ingress.meta.namespace, secret_name=entry.secret_name, hosts=hosts,
                    ingress=f"{ingress.meta.namespace}/{ingress.meta.name}", issuer_ref=ref, issuer=issuer,
                    common_name=common_name, key=key, duration=duration, renew_before=renew_before,
                    problem=cert_problem)
                previous = wanted.get(cert.key_)
                if previous is None:
                    wanted[cert.key_] = cert
                elif previous.group != cert.group or previous.duration != cert.duration:
                    self.report(WARNING, ingress, f"spec.tls[{i}]: Secret {cert.namespace}/{cert.secret_name} is "
                                                  f"already managed for the older Ingress {previous.ingress} with "
                                                  "other hosts or options; this entry is ignored")
        certificates = tuple(self.user_secret(cert) for cert in wanted.values())
        return Plan(certificates, dict(self.issuers), tuple(dict.fromkeys(self.diagnostics)))

    def user_secret(self, cert: WantedCertificate) -> WantedCertificate:
        """A Secret that ingressd does not own (the user's, cert-manager's) is served as it is and
        never overwritten: the certificate it is named for is not managed."""
        secret = find_tls_secret(self.snapshot, cert.namespace, cert.secret_name)
        if secret is None or cert.problem:
            return cert
        if self.owns is None:  # no store given: ownership by where the Secret was read
            state_dir = self.cert_settings.state_dir
            if not state_dir or not secret.meta.origin or os.path.abspath(secret.meta.origin).startswith(
                    os.path.abspath(state_dir) + os.sep):
                return cert
        elif self.owns(secret):
            return cert
        if secret.meta.origin:
            problem = f"Secret {cert.namespace}/{cert.secret_name} is defined in the manifests ({secret.meta.origin})"
        else:
            problem = (f"Secret {cert.namespace}/{cert.secret_name} exists and was not written by ingressd "
                       f"(no label {MANAGED_LABEL}={MANAGED_VALUE}); it is never overwritten")
        self.report(WARNING, secret, f"this Secret is served as written; ingressd does not manage the certificate "
                                     f"Ingress {cert.ingress} asks for in it")
        return replace(cert, problem=problem)


def plan(snapshot: Snapshot, settings: Settings = Settings(), cert_settings: CertSettings = CertSettings(),
         owns: Callable[[Secret], bool] | None = None) -> Plan:
    """The certificates the snapshot asks for, their issuers and what is wrong. Pure.

    ``owns`` says which existing Secrets ingressd may overwrite (the source's ``SecretStore.owns``);
    without it, Secrets read from under ``--state-dir`` are ingressd's."""
    return _Planner(snapshot, settings, cert_settings, owns).run()
