"""What the translator consumes (a snapshot of objects, settings) and produces (a configuration).

All three are immutable values: the control plane builds a new ``Config`` for every change and the
data plane swaps its single reference to it, so a request sees either the old or the new
configuration, never a mix, and open connections are never touched.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .certs import Certificate
from .diagnostics import Diagnostic
from .hosts import HostMap
from .objects import KubeObject, ObjectKey
from .routing import RouteTable

CONTROLLER_NAME = "ingressd.io/ingress-controller"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every object a source currently holds, plus what went wrong reading them.

    Keys (``obj.meta.key``: kind, namespace, name) are unique. A source keeps an object that did
    not change as the *same* Python object from one snapshot to the next, and says which keys
    changed since the snapshot it handed out before (``since``/``changed``), so that work can be
    limited to what changed (:meth:`changes_since`)."""

    objects: tuple[KubeObject, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    version: str = ""  # changes whenever the source's content changes
    since: str | None = None  # the version of the snapshot ``changed`` is relative to
    changed: frozenset[ObjectKey] = frozenset()  # keys added, changed or removed since then
    _index: dict | None = field(default=None, compare=False, repr=False)

    @property
    def by_key(self) -> dict[ObjectKey, KubeObject]:
        """The objects by ``meta.key`` (built once per snapshot; do not modify)."""
        index = self._index
        if index is None:
            index = {obj.meta.key: obj for obj in self.objects}
            object.__setattr__(self, "_index", index)
        return index

    def changes_since(self, previous: "Snapshot | None") -> frozenset[ObjectKey] | None:
        """The keys whose object was added, changed or removed since ``previous``; None when
        unknown (no previous snapshot: everything is new)."""
        if previous is None:
            return None
        if previous is self or (previous.version and previous.version == self.version):
            return frozenset()
        if self.since is not None and self.since == previous.version:
            return self.changed
        old, new = previous.by_key, self.by_key  # unrelated snapshots: compare by identity
        return frozenset({k for k, obj in new.items() if old.get(k) is not obj} | (old.keys() - new.keys()))


@dataclass(frozen=True, slots=True)
class ClientTrust:
    """Whom ingressd believes about the client's address and scheme: ingress-nginx's ConfigMap keys
    of the same names (``use-forwarded-headers`` ...), and the same defaults (trust nobody).

    - ``use_forwarded_headers``: take X-Forwarded-For (``forwarded_for_header``), -Proto, -Host and
      -Port from a peer in ``proxy_real_ip_cidr`` (ingress-nginx trusts the last three from any
      peer; ingressd only from the trusted proxies, which with the default 0.0.0.0/0 is the same).
    - ``enable_real_ip``: take only the client address from ``forwarded_for_header``.
    - ``compute_full_forwarded_for``: append the address to the incoming X-Forwarded-For instead of
      replacing it (kept only from trusted peers, else ingressd sends just the address).
    - ``proxy_real_ip_cidr``: the trusted proxies (CIDRs; ingress-nginx's default 0.0.0.0/0).
    - ``use_proxy_protocol``: every connection on both ports starts with a PROXY protocol v1 or v2
      header (on HTTPS, before the TLS handshake) giving the client address, believed from a peer
      in ``proxy_real_ip_cidr``; a connection without one is closed. A listener property: read
      from the command line at start (a ConfigMap value does not change open listeners).
    """

    use_forwarded_headers: bool = False
    forwarded_for_header: str = "X-Forwarded-For"
    compute_full_forwarded_for: bool = False
    enable_real_ip: bool = False
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0",)
    use_proxy_protocol: bool = False
    # False: the client address is always the peer's, whatever the headers say (ingressd chp: CHP
    # appends to X-Forwarded-For and keeps -Proto/-Host/-Port, but never believes a client's address).
    address_from_headers: bool = True
    networks: tuple = field(default=(), compare=False, repr=False)  # proxy_real_ip_cidr, parsed
    # forwarded_for_header is not X-Forwarded-For: every request is read for it (trust.for_request)
    custom_for_header: bool = field(default=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "networks", parse_cidrs(self.proxy_real_ip_cidr))
        object.__setattr__(self, "custom_for_header", self.forwarded_for_header.lower() != "x-forwarded-for")
        name = self.forwarded_for_header
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"forwarded-for-header {name!r} is not a header name")

    @property
    def realip(self) -> bool:
        """The client address may come from a header (ingress-nginx's realip module is on)."""
        return self.use_forwarded_headers or self.enable_real_ip


def parse_cidrs(values) -> tuple:
    """CIDRs (or bare addresses) as ``ipaddress`` networks; ValueError naming a bad one."""
    if isinstance(values, str):
        values = values.split(",")
    networks = []
    for value in values:
        value = value.strip()
        if value:
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Client-side limits of the data plane: nginx's defaults, the controller ConfigMap's keys."""

    header_timeout: float = 60.0  # client-header-timeout: to receive a whole request head
    body_timeout: float = 60.0  # client-body-timeout: between two reads of a request body
    keepalive_timeout: float = 75.0  # keep-alive: idle between requests (0: no keep-alive)
    keepalive_requests: int = 1000  # keep-alive-requests: requests per client connection
    max_head_bytes: int = 32 * 1024  # large-client-header-buffers (number x size): larger heads get 431
    # HTTP/2 connections (read when one opens: a change applies to the connections opened after it)
    http2_max_concurrent_streams: int = 128  # SETTINGS_MAX_CONCURRENT_STREAMS; streams beyond: REFUSED_STREAM
    http2_max_requests: int = 0  # streams per connection, then GOAWAY NO_ERROR; 0: keepalive_requests

    @property
    def http2_requests(self) -> int:
        """Streams one HTTP/2 connection serves: http2-max-requests, else keep-alive-requests (the
        one nginx applies to HTTP/2 since 1.19.7)."""
        return self.http2_max_requests or self.keepalive_requests


# ingress-nginx's default ssl-ciphers, without its DHE suites (ingressd has no DH parameters);
# TLS 1.3's suites are fixed by OpenSSL.
DEFAULT_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                   "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The HTTPS listener's protocols and TLS 1.2 ciphers: the ConfigMap's ssl-protocols and
    ssl-ciphers (a host's ssl-ciphers annotation replaces the ciphers for that host)."""

    protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")  # of TLSv1.2, TLSv1.3: offered from the lowest to the highest
    ciphers: str = DEFAULT_CIPHERS  # an OpenSSL cipher list
    http2: bool = True  # use-http2: ALPN offers h2 to new connections (never when --no-http2)


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    """Keep-alive to upstreams: ingress-nginx's upstream-keepalive-* keys and defaults."""

    idle_timeout: float = 60.0  # upstream-keepalive-timeout
    max_idle: int = 320  # upstream-keepalive-connections (per endpoint)
    max_requests: int = 10_000  # upstream-keepalive-requests


@dataclass(frozen=True, slots=True)
class Settings:
    """The command-line choices that shape translation."""

    ingress_classes: tuple[str, ...] = ("ingressd",)
    default_backend_service: str | None = None  # "namespace/name:port"
    default_ssl_certificate: str | None = None  # "namespace/secret"
    # Serve Ingresses that name no class when no default IngressClass says otherwise. On for the
    # manifest directory; in a cluster ingress-nginx's --watch-ingress-without-class (off by default).
    watch_ingress_without_class: bool = True
    trust: ClientTrust = ClientTrust()  # forwarded headers and PROXY protocol
    # The controller ConfigMap (ingress-nginx's keys), "namespace/name"; "" for none.
    configmap: str = "ingress-nginx/ingress-nginx-controller"


@dataclass(frozen=True, slots=True)
class Config:
    table: RouteTable
    certificates: HostMap[Certificate] = field(default_factory=HostMap)  # by host pattern (spec.tls hosts)
    default_certificate: Certificate | None = None  # from --default-ssl-certificate
    diagnostics: tuple[Diagnostic, ...] = ()
    ingress_count: int = 0
    orphans: tuple[tuple[str, str, str], ...] = ()  # (namespace, ingress, "no-service" | "no-endpoint")
    trust: ClientTrust = ClientTrust()  # Settings.trust (or the ConfigMap's), for the data plane
    # Objects the configuration reads that a source does not watch by default (the controller
    # ConfigMap, Secrets named by auth-secret / proxy-ssl-secret): see Source.require.
    required: frozenset = frozenset()
    client: ClientLimits = ClientLimits()  # the ConfigMap's client-side limits
    upstream: UpstreamLimits = UpstreamLimits()  # the ConfigMap's upstream keep-alive
    # The Strict-Transport-Security line of HTTPS responses (the ConfigMap's hsts* keys); b"": none.
    hsts: bytes = b"Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n"
    tls: TLSSettings = TLSSettings()  # the ConfigMap's ssl-protocols and ssl-ciphers
    # worker-shutdown-timeout: on SIGTERM, how long requests in flight and tunnels may run on.
    shutdown_timeout: float = 240.0
    # log-format-upstream / log-format-escape-*: a dataplane.logformat.LogFormat; None: --log-format's lines
    log_format: object = None
    blocked: object = None  # options.block.Blocked: block-user-agents / block-referers (403); None: none

    def certificate_for(self, host: str) -> Certificate | None:
        return self.certificates.get(host)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]
