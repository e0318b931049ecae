"""Certificate facts ingressd needs, computed from PEM bytes without IO."""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .hosts import matches

FAKE_CERTIFICATE_CN = "Kubernetes Ingress Controller Fake Certificate"


@dataclass(frozen=True, slots=True)
class Certificate:
    """A usable certificate chain and its key, as one Secret holds them."""

    source: str  # "namespace/name" of the Secret, or a description for generated ones
    cert_pem: bytes
    key_pem: bytes
    names: tuple[str, ...]  # DNS names from subjectAltName (or the CN when there is none)
    not_after: datetime.datetime
    fingerprint: str  # sha256 of the leaf, identifies the material for caching
    serial: str = ""
    issuer_common_name: str = ""
    issuer_organization: str = ""
    public_key_algorithm: str = ""
    not_before: datetime.datetime | None = None
    public_key_size: int = 0  # bits (the curve's for ECDSA)
    has_san: bool = True  # False: ``names`` is the subject CN (browsers no longer accept such certificates)
    cert_id: str | None = None  # RFC 9773 (ARI) CertID, when the certificate has an Authority Key Identifier

    def covers(self, host: str) -> bool:
        return any(matches(name, host) for name in self.names)


@functools.lru_cache(maxsize=4096)
def load_certificate(source: str, cert_pem: bytes, key_pem: bytes) -> Certificate:
    """Parse and check a chain and key. Raises ValueError naming what is wrong."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as error:
        raise ValueError(f"tls.crt is not a PEM certificate ({error})") from None
    try:
        # The key is checked against the certificate below; skipping RSA's own (slow) consistency
        # check keeps a 4096-bit Secret from costing seconds per translation.
        key = serialization.load_pem_private_key(key_pem, password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError) as error:
        raise ValueError(f"tls.key is not an unencrypted PEM private key ({error})") from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(serialization.Encoding.DER, public) != key.public_key().public_bytes(
            serialization.Encoding.DER, public):
        raise ValueError("tls.key does not belong to the certificate in tls.crt")
    has_san = True
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(n.lower() for n in san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        has_san = False
        names = tuple(a.value.lower() for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                      if isinstance(a.value, str))
    try:
        cert_id = ari_cert_id(leaf)
    except (x509.ExtensionNotFound, ValueError):
        cert_id = None
    return Certificate(
        source=source,
        cert_pem=cert_pem,
        key_pem=key_pem,
        names=names,
        not_after=leaf.not_valid_after_utc,
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        serial=str(leaf.serial_number),
        issuer_common_name=_attribute(leaf.issuer, NameOID.COMMON_NAME),
        issuer_organization=_attribute(leaf.issuer, NameOID.ORGANIZATION_NAME),
        public_key_algorithm=_key_algorithm(leaf.public_key()),
        not_before=leaf.not_valid_before_utc,
        public_key_size=getattr(leaf.public_key(), "key_size", 0),
        has_san=has_san,
        cert_id=cert_id,
    )


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 CertID: base64url(AKI keyIdentifier) "." base64url(DER serial content octets)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    if aki is None:
        raise ValueError("the certificate's Authority Key Identifier has no keyIdentifier")
    serial = cert.serial_number
    serial_bytes = serial.to_bytes((serial.bit_length() + 8) // 8, "big")  # leading 0x00 kept for the sign bit
    return _b64(aki) + "." + _b64(serial_bytes)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _attribute(name: x509.Name, oid) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _key_algorithm(key) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA"
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    return type(key).__name__.replace("PublicKey", "").lstrip("_")


def self_signed(names: tuple[str, ...], common_name: str | None = None, days: int = 365) -> Certificate:
    """A fresh self-signed ECDSA certificate: the fallback for unknown SNI and pending hosts."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                        critical=False)
    cert = builder.sign(key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return load_certificate(f"self-signed {common_name or names[0]}", cert_pem, key_pem)


def fake_certificate() -> Certificate:
    """What ingress-nginx serves for unknown SNI when no default certificate is configured."""
    return self_signed(("ingress.local",), common_name=FAKE_CERTIFICATE_CN)
