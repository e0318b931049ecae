"""``backend-protocol: HTTPS`` and the ``proxy-ssl-*`` annotations: TLS from ingressd to the upstream.

ingress-nginx's defaults: no verification of the upstream's certificate (``proxy-ssl-verify: off``)
and no SNI (``proxy-ssl-server-name: off``). With ``proxy-ssl-secret: NAMESPACE/NAME`` the Secret's
``ca.crt`` verifies the upstream (when ``proxy-ssl-verify: on``); its ``tls.crt``/``tls.key`` (a client
certificate for the upstream) are not used yet: ``ssl`` loads key pairs only from files, and the
translator does no IO. The name checked (and sent as SNI when
``proxy-ssl-server-name: on``) is ``proxy-ssl-name``, by default the Service's cluster DNS name
``NAME.NAMESPACE.svc`` (nginx's default, its internal upstream name, can never match a certificate).
One ``ssl.SSLContext`` is built per distinct setting, once per configuration.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

_PROTOCOLS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
              "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def parse_protocols(value: str) -> tuple[str, ...]:
    names = tuple(value.split())
    for name in names:
        if name not in _PROTOCOLS and name not in ("SSLv2", "SSLv3"):
            raise ValueError(f"{name!r} is not a TLS protocol (TLSv1.2 TLSv1.3 ...)")
    usable = tuple(n for n in names if n in ("TLSv1.2", "TLSv1.3"))
    if not usable:
        raise ValueError("only TLSv1.2 and TLSv1.3 are offered by ingressd")
    return usable


@dataclass(frozen=True, slots=True)
class UpstreamTLSSpec:
    """What the annotations ask for (pure; the translator resolves the Secret and builds the context)."""

    verify: bool = False
    secret: str | None = None  # "namespace/name"
    name: str | None = None  # proxy-ssl-name
    sni: bool = False  # proxy-ssl-server-name
    protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str | None = None
    http2: bool = False  # backend-protocol GRPCS: ALPN offers h2 only


@dataclass(frozen=True, slots=True, eq=False)
class UpstreamTLS:
    """A ready client context and the name to send or check (None: no SNI, no name check)."""

    context: ssl.SSLContext
    server_name: str | None
    recipe: tuple = ()  # build()'s arguments: how workers rebuild it (an SSLContext does not pickle)

    def __reduce__(self):
        return _rebuild, self.recipe

    def describe(self) -> str:
        verify = self.context.verify_mode == ssl.CERT_REQUIRED
        scheme = "h2s" if self.recipe and self.recipe[0].http2 else "https"  # GRPCS: h2 over TLS
        return f"{scheme}{'+verify' if verify else ''}{'(' + self.server_name + ')' if self.server_name else ''}"


def build(spec: UpstreamTLSSpec, default_name: str, ca_pem: bytes | None, *, unusable: bool = False) -> UpstreamTLS:
    """The client context for ``spec``; ValueError naming what is wrong (a bad CA or cipher).

    ``unusable``: a context that trusts nothing, for a setting that was wrong: its requests fail
    (502) rather than reach the upstream unverified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    recipe = (spec, default_name, ca_pem, unusable)
    if unusable:
        return UpstreamTLS(context, default_name, recipe)  # verifies, with no CA: every handshake fails
    versions = [_PROTOCOLS[p] for p in spec.protocols]
    context.minimum_version, context.maximum_version = min(versions), max(versions)
    if spec.ciphers:
        try:
            context.set_ciphers(spec.ciphers)
        except ssl.SSLError:
            raise ValueError(f"proxy-ssl-ciphers {spec.ciphers!r} names no cipher OpenSSL knows") from None
    if spec.http2:
        context.set_alpn_protocols(["h2"])
    name = spec.name or default_name
    if spec.verify:
        if not ca_pem:
            raise ValueError("proxy-ssl-verify needs proxy-ssl-secret with a ca.crt")
        try:
            context.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            raise ValueError("the ca.crt of proxy-ssl-secret is not a PEM certificate") from None
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return UpstreamTLS(context, name if (spec.verify or spec.sni) else None, recipe)


def _rebuild(spec: UpstreamTLSSpec, default_name: str, ca_pem: bytes | None, unusable: bool) -> UpstreamTLS:
    return build(spec, default_name, ca_pem, unusable=unusable)

