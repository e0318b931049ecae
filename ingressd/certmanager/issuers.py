"""cert-manager's ClusterIssuer and Issuer objects, parsed like any other manifest.

:data:`ISSUER_KINDS` adds the two kinds to a source's parser table. Parsing is
lenient where cert-manager is: unknown fields become warnings on the object, and problems that make
an issuer unusable but not malformed (only a dns01 solver, say) become ``problems``, reported for
the issuer and for every Ingress that refers to it, so that the rest keeps working.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from ..diagnostics import InvalidObject
from ..objects import Kinds, Meta, mapping_field, meta_of, string_field

API_VERSION = "cert-manager.io/v1"
CLUSTER_ISSUER = "ClusterIssuer"
ISSUER = "Issuer"
# Where a ClusterIssuer's Secrets live (cert-manager's --cluster-resource-namespace default).
CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

_ACME_FIELDS = {"server", "email", "privateKeySecretRef", "caBundle", "skipTLSVerify", "profile", "solvers",
                "preferredChain", "disableAccountKeyGeneration", "enableDurationFeature", "externalAccountBinding"}
_SPEC_FIELDS = {"acme", "ca", "selfSigned", "vault", "venafi"}


@dataclass(frozen=True, slots=True)
class IssuerRef:
    kind: str  # ClusterIssuer or Issuer
    namespace: str  # "" for a ClusterIssuer
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" if not self.namespace else f"{self.kind} {self.namespace}/{self.name}"

    @property
    def label(self) -> str:
        """The issuer as a metric label: ``NAME`` for a ClusterIssuer, ``NAMESPACE/NAME`` for an Issuer."""
        return self.name if not self.namespace else f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class AcmeSpec:
    server: str
    email: str
    private_key_secret: str  # a Secret name in the issuer's resource namespace
    ca_bundle: bytes | None = None  # PEM, to trust a private ACME server
    ca_bundle_file: str | None = None  # same, as a file (--acme-ca-bundle)
    skip_tls_verify: bool = False
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class Issuer:
    meta: Meta
    acme: AcmeSpec | None = None
    ca_secret: str | None = None  # spec.ca.secretName
    self_signed: bool = False
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # why it cannot issue

    @property
    def ref(self) -> IssuerRef:
        return IssuerRef(self.meta.kind, self.meta.namespace, self.meta.name)

    @property
    def type(self) -> str:
        return "acme" if self.acme else "ca" if self.ca_secret else "selfSigned" if self.self_signed else "unsupported"

    @property
    def resource_namespace(self) -> str:
        """The namespace of the Secrets this issuer refers to."""
        return self.meta.namespace or CLUSTER_RESOURCE_NAMESPACE


def _acme(raw: dict, warnings: list[str], problems: list[str]) -> AcmeSpec:
    for key in sorted(set(raw) - _ACME_FIELDS):
        warnings.append(f"spec.acme.{key} is not a cert-manager field; ignored")
    for key in ("preferredChain", "externalAccountBinding", "disableAccountKeyGeneration", "enableDurationFeature"):
        if raw.get(key) not in (None, "", False):
            warnings.append(f"spec.acme.{key} is not supported by ingressd; ignored")
    server = string_field(raw.get("server"), "spec.acme.server", required=True)
    if not server.startswith(("https://", "http://")):
        raise InvalidObject(f"spec.acme.server {server!r} is not an http(s) URL")
    email = string_field(raw.get("email"), "spec.acme.email") or ""
    key_ref = mapping_field(raw.get("privateKeySecretRef"), "spec.acme.privateKeySecretRef")
    key_name = string_field(key_ref.get("name"), "spec.acme.privateKeySecretRef.name", required=True)
    ca_bundle = None
    if raw.get("caBundle") is not None:
        text = string_field(raw.get("caBundle"), "spec.acme.caBundle") or ""
        try:
            ca_bundle = base64.b64decode(text.encode(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidObject("spec.acme.caBundle is not valid base64 (a base64-encoded PEM bundle)") from None
        if b"-----BEGIN CERTIFICATE-----" not in ca_bundle:
            raise InvalidObject("spec.acme.caBundle does not contain a PEM certificate")
    skip = raw.get("skipTLSVerify", False)
    if not isinstance(skip, bool):
        raise InvalidObject("spec.acme.skipTLSVerify must be true or false")
    if skip:
        warnings.append("spec.acme.skipTLSVerify is set: the ACME server's certificate is not verified")
    profile = string_field(raw.get("profile"), "spec.acme.profile")
    solvers = raw.get("solvers")
    if solvers is None:
        solvers = []
    if not isinstance(solvers, list):
        raise InvalidObject("spec.acme.solvers must be a list")
    http01 = not solvers  # no solver listed: HTTP-01, the only one ingressd answers
    for i, solver in enumerate(solvers):
        solver = mapping_field(solver, f"spec.acme.solvers[{i}]")
        if "http01" in solver:
            http01 = True
            if mapping_field(solver.get("selector"), f"spec.acme.solvers[{i}].selector"):
                warnings.append(f"spec.acme.solvers[{i}].selector is ignored: ingressd answers HTTP-01 for every name")
        for kind in sorted(set(solver) - {"http01", "selector"}):
            if kind == "dns01":
                warnings.append(f"spec.acme.solvers[{i}].dns01 is not supported (ingressd answers HTTP-01 only); "
                                "this solver is ignored")
            else:
                warnings.append(f"spec.acme.solvers[{i}].{kind} is not a supported solver; ignored")
    if not http01:
        problems.append("no usable solver: ingressd answers HTTP-01 challenges only (dns01 is not supported)")
    return AcmeSpec(server=server, email=email, private_key_secret=key_name, ca_bundle=ca_bundle,
                    skip_tls_verify=skip, profile=profile)


def _issuer(doc: dict, origin: str | None, kind: str) -> Issuer:
    meta = meta_of(doc, kind, origin, namespaced=kind == ISSUER)
    spec = mapping_field(doc.get("spec"), "spec")
    warnings: list[str] = []
    problems: list[str] = []
    for key in sorted(set(spec) - _SPEC_FIELDS):
        warnings.append(f"spec.{key} is not a cert-manager issuer field; ignored")
    types = [key for key in ("acme", "ca", "selfSigned", "vault", "venafi") if key in spec]
    if len(types) != 1:
        raise InvalidObject("spec needs exactly one of acme, ca, selfSigned (found "
                            f"{', '.join(types) or 'none'})")
    if types[0] in ("vault", "venafi"):
        problems.append(f"spec.{types[0]} issuers are not supported by ingressd (use acme, ca or selfSigned)")
        return Issuer(meta, warnings=tuple(warnings), problems=tuple(problems))
    if types[0] == "acme":
        acme = _acme(mapping_field(spec["acme"], "spec.acme"), warnings, problems)
        return Issuer(meta, acme=acme, warnings=tuple(warnings), problems=tuple(problems))
    if types[0] == "ca":
        ca = mapping_field(spec["ca"], "spec.ca")
        secret = string_field(ca.get("secretName"), "spec.ca.secretName", required=True)
        for key in sorted(set(ca) - {"secretName", "crlDistributionPoints", "ocspServers",
                                     "issuingCertificateURLs"}):
            warnings.append(f"spec.ca.{key} is not a cert-manager field; ignored")
        return Issuer(meta, ca_secret=secret, warnings=tuple(warnings))
    return Issuer(meta, self_signed=True, warnings=tuple(warnings))


def parse_cluster_issuer(doc: dict, origin: str | None) -> Issuer:
    return _issuer(doc, origin, CLUSTER_ISSUER)


def parse_issuer(doc: dict, origin: str | None) -> Issuer:
    return _issuer(doc, origin, ISSUER)


def implicit_issuer(name: str, email: str, server: str, ca_bundle_file: str | None) -> Issuer:
    """The ClusterIssuer that ``--acme-email`` defines (kube-lego's configuration by flags)."""
    meta = Meta(kind=CLUSTER_ISSUER, namespace="", name=name, origin="--acme-email")
    return Issuer(meta, acme=AcmeSpec(server=server, email=email, private_key_secret=f"{name}-account-key",
                                      ca_bundle_file=ca_bundle_file))


def with_issuer_kinds(kinds: Kinds) -> Kinds:
    """``kinds`` plus ClusterIssuer and Issuer: the table a source is given when certificates matter."""
    return kinds.including({(API_VERSION, CLUSTER_ISSUER): parse_cluster_issuer, (API_VERSION, ISSUER): parse_issuer},
                           cluster_scoped={CLUSTER_ISSUER})
