"""Certificate facts from PEM bytes (issue 2, "TLS")."""

from __future__ import annotations

import datetime

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from ingressd.certs import FAKE_CERTIFICATE_CN, fake_certificate, load_certificate, self_signed
from ingressd.hosts import matches


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _pems(ca, *names):
    issued = ca.issue_cert(*names)
    chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
    return chain, issued.private_key_pem.bytes()


def test_load_ca_issued_chain(ca):
    chain, key = _pems(ca, "a.example.com", "*.wild.example.com")
    cert = load_certificate("team/cert", chain, key)
    assert cert.source == "team/cert"
    assert cert.names == ("a.example.com", "*.wild.example.com")
    assert cert.covers("a.example.com") and cert.covers("x.wild.example.com")
    assert not cert.covers("wild.example.com") and not cert.covers("b.example.com")
    assert cert.not_after > datetime.datetime.now(datetime.timezone.utc)
    assert len(cert.fingerprint) == 64 and int(cert.fingerprint, 16) >= 0
    assert cert.cert_pem == chain and cert.key_pem == key


def test_mismatched_key_is_an_error_naming_the_key(ca):
    chain, _ = _pems(ca, "a.example.com")
    _, other_key = _pems(ca, "b.example.com")
    with pytest.raises(ValueError, match="tls.key"):
        load_certificate("team/cert", chain, other_key)


@pytest.mark.parametrize("which", ["cert", "key"])
@pytest.mark.parametrize("garbage", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_garbage_is_an_error_naming_the_field(ca, which, garbage):
    chain, key = _pems(ca, "a.example.com")
    args = (garbage, key) if which == "cert" else (chain, garbage)
    with pytest.raises(ValueError, match="tls.crt" if which == "cert" else "tls.key"):
        load_certificate(f"x/{which}", *args)


def test_encrypted_key_is_an_error(ca):
    chain, key = _pems(ca, "a.example.com")
    private = serialization.load_pem_private_key(key, password=None)
    encrypted = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(ValueError, match="tls.key"):
        load_certificate("x/enc", chain, encrypted)


def test_key_and_cert_swapped_is_an_error(ca):
    chain, key = _pems(ca, "a.example.com")
    with pytest.raises(ValueError):
        load_certificate("x/swapped", key, chain)


def test_self_signed():
    cert = self_signed(("a.example.com", "*.b.example.com"))
    assert cert.names == ("a.example.com", "*.b.example.com")
    assert cert.covers("a.example.com") and cert.covers("c.b.example.com")
    reloaded = load_certificate("again", cert.cert_pem, cert.key_pem)
    assert reloaded.fingerprint == cert.fingerprint
    assert self_signed(("a.example.com",)).fingerprint != cert.fingerprint


def test_certificate_without_san_uses_its_common_name():
    cert = self_signed((), common_name="cn.example.com")
    assert cert.names == ("cn.example.com",)
    assert cert.covers("cn.example.com")


def test_fake_certificate_like_ingress_nginx():
    from cryptography import x509
    cert = fake_certificate()
    leaf = x509.load_pem_x509_certificate(cert.cert_pem)
    cn = leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == FAKE_CERTIFICATE_CN


@pytest.mark.parametrize("pattern, host, expected", [
    ("foo.com", "foo.com", True),
    ("FOO.com", "foo.com", True),
    ("foo.com", "bar.com", False),
    ("*.foo.com", "bar.foo.com", True),
    ("*.FOO.com", "bar.foo.com", True),
    ("*.foo.com", "foo.com", False),
    ("*.foo.com", "baz.bar.foo.com", False),
    ("*.foo.com", ".foo.com", False),
    ("*.foo.com", "barfoo.com", False),
    ("*.foo.com", "bar.foo.com.evil", False),
    ("foo.com", "x.foo.com", False),
])
def test_name_matches(pattern, host, expected):
    assert matches(pattern, host) is expected
