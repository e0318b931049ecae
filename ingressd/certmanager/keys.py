"""Private keys, CSRs and locally signed certificates (selfSigned and ca issuers, temporary ones)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_LOCAL_DURATION = 90 * 86400.0  # cert-manager's default Certificate duration
TEMPORARY_DURATION = 90 * 86400.0
TEMPORARY_ISSUER_CN = "ingressd temporary certificate"
_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}


@dataclass(frozen=True, slots=True)
class KeySpec:
    algorithm: str = "ECDSA"  # ECDSA or RSA
    size: int = 256

    def __str__(self) -> str:
        return f"{self.algorithm} {self.size}"


def generate_key(spec: KeySpec):
    if spec.algorithm == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.size)
    return ec.generate_private_key(_CURVES[spec.size]())


def key_spec_of(key) -> KeySpec | None:
    if isinstance(key, rsa.RSAPrivateKey):
        return KeySpec("RSA", key.key_size)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return KeySpec("ECDSA", key.curve.key_size)
    return None


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes):
    return serialization.load_pem_private_key(pem, password=None)


def public_der(key_or_cert) -> bytes:
    public = key_or_cert.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def make_csr(key, names: tuple[str, ...], common_name: str | None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder()
    if common_name:
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    else:
        builder = builder.subject_name(x509.Name([]))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _leaf_builder(subject_key, names: tuple[str, ...], common_name: str | None, issuer_name: x509.Name,
                  duration: float, issuer_key) -> x509.CertificateBuilder:
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]) if common_name else x509.Name([])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(seconds=duration))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                       critical=False)
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def self_signed_certificate(key, names: tuple[str, ...], common_name: str | None,
                            duration: float = DEFAULT_LOCAL_DURATION) -> bytes:
    """cert-manager's selfSigned issuer: the certificate signed by its own key."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0][:64])])
    builder = _leaf_builder(key, names, common_name or names[0][:64], subject, duration, key)
    return _pem(builder.sign(key, hashes.SHA256()))


def ca_signed_certificate(key, names: tuple[str, ...], common_name: str | None, ca_cert_pem: bytes,
                          ca_key_pem: bytes, duration: float = DEFAULT_LOCAL_DURATION) -> tuple[bytes, bytes]:
    """cert-manager's ca issuer: (leaf + CA chain PEM, the CA certificate PEM for ``ca.crt``).

    The leaf never outlives the CA certificate. Raises ValueError when the Secret is no CA."""
    try:
        chain = x509.load_pem_x509_certificates(ca_cert_pem)
        ca_key = load_key(ca_key_pem)
    except (ValueError, TypeError) as error:
        raise ValueError(f"the CA Secret does not hold a PEM certificate and key ({error})") from None
    ca_cert = chain[0]
    if public_der(ca_cert) != public_der(ca_key):
        raise ValueError("the CA Secret's tls.key does not belong to its tls.crt")
    try:
        if not ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise ValueError("the certificate in the CA Secret is not a CA (basicConstraints CA:FALSE)")
    except x509.ExtensionNotFound:
        raise ValueError("the certificate in the CA Secret is not a CA (no basicConstraints)") from None
    remaining = (ca_cert.not_valid_after_utc - _now()).total_seconds()
    if remaining <= 0:
        raise ValueError("the CA certificate has expired")
    builder = _leaf_builder(key, names, common_name, ca_cert.subject, min(duration, remaining), ca_key)
    leaf = builder.sign(ca_key, hashes.SHA256())
    return _pem(leaf) + b"".join(_pem(c) for c in chain), _pem(chain[-1])


def temporary_certificate(key, names: tuple[str, ...]) -> bytes:
    """What a host is served until its real certificate arrives, as cert-manager does."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TEMPORARY_ISSUER_CN)])
    builder = _leaf_builder(key, names, names[0][:64], issuer, TEMPORARY_DURATION, issuer_key)
    return _pem(builder.sign(issuer_key, hashes.SHA256()))
