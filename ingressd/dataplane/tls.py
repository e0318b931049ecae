"""TLS for the HTTPS listener: one context per certificate, chosen by SNI at handshake time."""

from __future__ import annotations

import logging
import os
import ssl
import tempfile

from ..certs import Certificate, fake_certificate
from ..config import Config

log = logging.getLogger("ingressd.tls")

# ingress-nginx's default TLS 1.2 cipher list, without the DHE suites (TLS 1.3 suites are fixed).
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
           "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


def new_context(cert: Certificate, http2: bool = False) -> ssl.SSLContext:
    """A server context for ``cert``; ALPN offers h2 (preferred) and http/1.1 with ``http2``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    load_certificate(ctx, cert)
    return ctx


def load_certificate(ctx: ssl.SSLContext, cert: Certificate) -> None:
    # The ssl module loads keys only from files: write them to a private directory, load, remove.
    with tempfile.TemporaryDirectory(prefix="ingressd-tls-") as directory:
        path = os.path.join(directory, "cert.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(cert.cert_pem.rstrip(b"\n") + b"\n" + cert.key_pem)
        ctx.load_cert_chain(path)


class TLSContexts:
    """The contexts for the current configuration; switched by the SNI callback per handshake."""

    def __init__(self, http2: bool = False) -> None:
        self.http2 = http2  # ALPN offers h2 (--http2)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._config: Config | None = None
        self._fallback_cert = fake_certificate()
        self.fallback_cert = self._fallback_cert
        # Clients without SNI get the listener's own certificate: the current fallback.
        self.listener_context = new_context(self._fallback_cert, http2)
        self.listener_context.sni_callback = self._on_sni

    client_ca: tuple | None = None  # (CA file or None for the system's, required): see request_client_certificates

    def _context(self, cert: Certificate) -> ssl.SSLContext:
        ctx = self._contexts.get(cert.fingerprint)
        if ctx is None:
            ctx = self._contexts[cert.fingerprint] = new_context(cert, self.http2)
            if self.client_ca is not None:
                _verify_clients(ctx, *self.client_ca)
        return ctx

    def request_client_certificates(self, cafile: str | None, required: bool) -> None:
        """Ask clients for a certificate, verified against ``cafile`` (else the system's CAs);
        ``required``: refuse the handshake without one (CHP's --ssl-request-cert and
        --ssl-reject-unauthorized)."""
        self.client_ca = (cafile, required)
        self._contexts.clear()
        _verify_clients(self.listener_context, cafile, required)

    def apply(self, config: Config) -> None:
        self._config = config
        fallback = config.default_certificate or self._fallback_cert
        if fallback is not self.fallback_cert:
            load_certificate(self.listener_context, fallback)
            self.fallback_cert = fallback
        # Drop contexts of certificates no longer used; the rest are built lazily on first use.
        used = {c.fingerprint for c in config.certificates.values()}
        used |= {self.fallback_cert.fingerprint, self._fallback_cert.fingerprint}
        for fingerprint in list(self._contexts):
            if fingerprint not in used:
                del self._contexts[fingerprint]

    def certificate_for(self, server_name: str | None) -> Certificate:
        cert = None
        if server_name and self._config is not None:
            cert = self._config.certificate_for(server_name.lower().rstrip("."))
        return cert or self.fallback_cert

    def _on_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext):
        try:
            sslobj.context = self._context(self.certificate_for(server_name))
        except Exception:  # a bad certificate must not kill the handshake thread of control
            log.exception("cannot load the certificate for %r; using the default", server_name)
            sslobj.context = self._context(self._fallback_cert)
        return None


def _verify_clients(ctx: ssl.SSLContext, cafile: str | None, required: bool) -> None:
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
