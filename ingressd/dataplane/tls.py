"""TLS for the HTTPS listener: one context per (certificate, cipher list), chosen by SNI at handshake time.

The protocols (the ConfigMap's ssl-protocols) are the listener's: OpenSSL fixes the version range
of a connection before the SNI callback runs. The cipher list is the context's: the ConfigMap's
ssl-ciphers, or the host's ssl-ciphers annotation, which takes effect in the SNI callback. ALPN
offers h2 unless ``--no-http2`` or the ConfigMap's ``use-http2: "false"``; a change applies to the
handshakes after it (open HTTP/2 connections go on).
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile

from ..certs import Certificate, fake_certificate
from ..config import DEFAULT_CIPHERS, Config, TLSSettings

log = logging.getLogger("ingressd.tls")

CIPHERS = DEFAULT_CIPHERS
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def configure(ctx: ssl.SSLContext, settings: TLSSettings, ciphers: str | None = None) -> None:
    """Set ``settings``' protocol range and cipher list (``ciphers`` instead, when given) on ``ctx``."""
    versions = sorted(_VERSIONS[name] for name in settings.protocols if name in _VERSIONS) or list(_VERSIONS.values())
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]
    ctx.set_ciphers(ciphers or settings.ciphers)


def new_context(cert: Certificate, settings: TLSSettings = TLSSettings(), ciphers: str | None = None,
                http2: bool = False) -> ssl.SSLContext:
    """A server context for ``cert``; ALPN offers h2 (preferred) and http/1.1 with ``http2``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    configure(ctx, settings, ciphers)
    offer_alpn(ctx, http2)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    load_certificate(ctx, cert)
    return ctx


def offer_alpn(ctx: ssl.SSLContext, http2: bool) -> None:
    ctx.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])


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
        self.allow_http2 = http2  # --http2 (the default) / --no-http2, which wins over use-http2
        self.http2 = http2  # ALPN offers h2: --http2 and the ConfigMap's use-http2
        self._contexts: dict[tuple[str, str | None], ssl.SSLContext] = {}  # by (fingerprint, host ciphers)
        self._config: Config | None = None
        self.settings = TLSSettings()
        self._fallback_cert = fake_certificate()
        self.fallback_cert = self._fallback_cert
        # Clients without SNI get the listener's own certificate: the current fallback.
        self.listener_context = new_context(self._fallback_cert, http2=http2)
        self.listener_context.sni_callback = self._on_sni

    client_ca: tuple | None = None  # (CA file or None for the system's, required): see request_client_certificates

    def _context(self, cert: Certificate, ciphers: str | None = None) -> ssl.SSLContext:
        key = (cert.fingerprint, ciphers)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = new_context(cert, self.settings, ciphers, http2=self.http2)
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
        if config.tls != self.settings:
            self.settings = config.tls
            self._contexts.clear()
            configure(self.listener_context, config.tls)
            self.http2 = self.allow_http2 and config.tls.http2
            offer_alpn(self.listener_context, self.http2)
        fallback = config.default_certificate or self._fallback_cert
        if fallback is not self.fallback_cert:
            load_certificate(self.listener_context, fallback)
            self.fallback_cert = fallback
        # Drop contexts of certificates no longer used; the rest are built lazily on first use.
        used = {c.fingerprint for c in config.certificates.values()}
        used |= {self.fallback_cert.fingerprint, self._fallback_cert.fingerprint}
        for key in list(self._contexts):
            if key[0] not in used:
                del self._contexts[key]

    def certificate_for(self, server_name: str | None) -> Certificate:
        cert = None
        if server_name and self._config is not None:
            cert = self._config.certificate_for(server_name.lower().rstrip("."))
        return cert or self.fallback_cert

    def ciphers_for(self, server_name: str | None) -> str | None:
        """The host's ssl-ciphers annotation (None: the ConfigMap's)."""
        if server_name and self._config is not None:
            routes = self._config.table.hosts.get(server_name.lower().rstrip("."))
            if routes is not None:
                return routes.ssl_ciphers
        return None

    def _on_sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext):
        try:
            sslobj.context = self._context(self.certificate_for(server_name), self.ciphers_for(server_name))
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
