"""Keys, CSRs and locally signed certificates (ca, selfSigned, temporary): no IO."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certmanager_kit import ca_pair
from ingressd.certmanager.keys import (KeySpec, ca_signed_certificate, generate_key, key_pem, key_spec_of, make_csr,
                                       self_signed_certificate, temporary_certificate)


def san(cert) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("spec", [KeySpec("ECDSA", 256), KeySpec("ECDSA", 384), KeySpec("RSA", 2048)])
def test_keys_have_the_requested_type(spec):
    assert key_spec_of(generate_key(spec)) == spec


def test_csr_names_and_common_name():
    csr = x509.load_pem_x509_csr(make_csr(generate_key(KeySpec()), ("a.example.com", "b.example.com"), "b.example.com"))
    assert san(csr) == ["a.example.com", "b.example.com"]
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "b.example.com"
    assert csr.is_signature_valid


def test_ca_issuer_signs_a_chain_that_never_outlives_the_ca():
    ca_cert, ca_key = ca_pair()
    key = generate_key(KeySpec())
    chain, ca = ca_signed_certificate(key, ("a.example.com",), "a.example.com", ca_cert, ca_key,
                                      duration=10 * 365 * 86400)
    leaf, issuer = x509.load_pem_x509_certificates(chain)
    assert ca == ca_cert and issuer == x509.load_pem_x509_certificate(ca_cert)
    assert leaf.issuer == issuer.subject and san(leaf) == ["a.example.com"]
    assert leaf.not_valid_after_utc <= issuer.not_valid_after_utc
    leaf.verify_directly_issued_by(issuer)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_issuer_refuses_what_is_not_a_ca():
    cert, key = ca_pair(ca=False)
    with pytest.raises(ValueError, match="not a CA"):
        ca_signed_certificate(generate_key(KeySpec()), ("a.example.com",), None, cert, key)
    cert2, _ = ca_pair()
    with pytest.raises(ValueError, match="does not belong"):
        ca_signed_certificate(generate_key(KeySpec()), ("a.example.com",), None, cert2, key)
    with pytest.raises(ValueError, match="PEM"):
        ca_signed_certificate(generate_key(KeySpec()), ("a.example.com",), None, b"junk", key)


def test_self_signed_and_temporary_certificates():
    key = generate_key(KeySpec())
    cert = x509.load_pem_x509_certificate(self_signed_certificate(key, ("a.example.com",), None, 3600))
    assert cert.issuer == cert.subject and san(cert) == ["a.example.com"]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 3660
    temp = x509.load_pem_x509_certificate(temporary_certificate(key, ("a.example.com", "b.example.com")))
    assert temp.issuer.rfc4514_string() == "CN=ingressd temporary certificate"
    assert san(temp) == ["a.example.com", "b.example.com"]
    assert temp.public_key().public_numbers() == key.public_key().public_numbers()
    assert b"PRIVATE KEY" in key_pem(key)
