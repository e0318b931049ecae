"""TLS helpers on top of trustme: issuing certificates, client contexts, reading peer certificates."""

from __future__ import annotations

import socket
import ssl
import warnings

import trustme
from cryptography import x509
from cryptography.x509.oid import NameOID


def issue(ca: trustme.CA, *hosts: str, common_name: str | None = None) -> tuple[bytes, bytes]:
    """(certificate chain PEM, private key PEM) for ``hosts``, signed by ``ca``."""
    cert = ca.issue_cert(*hosts, common_name=common_name)
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return chain, cert.private_key_pem.bytes()


def client_context(ca: trustme.CA | None = None, *, min_version: ssl.TLSVersion | None = None,
                   max_version: ssl.TLSVersion | None = None, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` (hostname checked), or verifying nothing when ``ca`` is None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ca.configure_trust(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if min_version is not None:
            if min_version < ssl.TLSVersion.TLSv1_2:
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def handshake(port: int, sni: str | None, ctx: ssl.SSLContext, timeout: float = 10.0) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port with the given SNI (caller closes it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


def peer_certificate(port: int, sni: str | None) -> x509.Certificate:
    """The certificate ingressd presents for ``sni`` (not verified)."""
    with handshake(port, sni, client_context()) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[0].value if attrs else ""


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.DNSName)
