"""Whom to believe about the client: forwarded headers from trusted proxies (``config.ClientTrust``).

By default (ingress-nginx's too) nothing a client sends about itself is believed: X-Forwarded-For
is replaced by the peer's address, X-Real-IP and the other X-Forwarded-* are dropped and set by
ingressd (``forward.read_headers``). With ``use-forwarded-headers`` or ``enable-real-ip``, and a
peer inside ``proxy-real-ip-cidr``, this module does what nginx's realip module and ingress-nginx's
``$pass_access_scheme``/``$best_http_host`` maps do, for that connection's requests only:

- the client address is the right-most address of ``forwarded-for-header`` that is not itself a
  trusted proxy (nginx's ``real_ip_recursive on``);
- with ``use-forwarded-headers`` the X-Forwarded-Proto (``http``/``https`` only), -Host and -Port
  sent by the proxy are passed on, and the scheme decides HTTPS redirects (a TLS-terminating load
  balancer's ``https`` requests are not redirected again);
- with ``compute-full-forwarded-for`` the upstream gets the incoming X-Forwarded-For with the
  peer's address appended, instead of the client address alone.

Unlike ingress-nginx, the Host sent upstream stays the client's Host (the one routed on) even when
X-Forwarded-Host is trusted: routing and upstream agree on the host.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ClientTrust
    from .exchange import Exchange


def is_trusted(trust: ClientTrust, address: str) -> bool:
    """``address`` is one of the trusted proxies."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trust.networks if network.version == ip.version)


def real_ip(trust: ClientTrust, peer: str, values: list[bytes]) -> str:
    """The client address: walking the header's addresses from the right, the first one that is
    not a trusted proxy (the left-most if all are); an unparsable entry stops the walk."""
    address = peer
    for value in reversed(b",".join(values).split(b",")):
        candidate = value.strip().decode("latin-1")
        if candidate.startswith("[") and "]" in candidate:
            candidate = candidate[1:candidate.index("]")]
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            break
        address = candidate
        if not is_trusted(trust, candidate):
            break
    return address


class Forwarded:
    """What a request from a trusted proxy says about its client (``for_request``)."""

    __slots__ = ("client_ip", "scheme", "lines", "host")

    def __init__(self, client_ip: str, scheme: str, lines: bytes, host: bytes | None):
        self.client_ip = client_ip
        self.scheme = scheme
        self.lines = lines  # the X-Forwarded-For ... X-Scheme lines for the upstream
        self.host = host  # the trusted X-Forwarded-Host, or None


def for_request(trust: ClientTrust, exchange: Exchange, peer: str, scheme: str, port: int,
                proxied_ip: str | None = None) -> Forwarded:
    """The forwarding lines for one request on a connection from a trusted proxy. ``proxied_ip``
    is the address a PROXY protocol header gave, which wins over headers (as in ingress-nginx)."""
    name = trust.forwarded_for_header.lower().encode()
    addresses: list[bytes] = []
    xff: list[bytes] = []
    proto = host = forwarded_port = None
    for field, value in exchange.headers:
        lower = field.lower()
        if lower == name:
            addresses.append(value)
        if lower == b"x-forwarded-for":
            xff.append(value)
        elif lower == b"x-forwarded-proto":
            proto = value.strip().lower()
        elif lower == b"x-forwarded-host":
            host = value.strip()
        elif lower == b"x-forwarded-port":
            forwarded_port = value.strip()
    client_ip = proxied_ip or (real_ip(trust, peer, addresses) if addresses and trust.address_from_headers else peer)
    if trust.use_forwarded_headers:
        if proto in (b"http", b"https"):
            scheme = proto.decode()
        if forwarded_port is not None and forwarded_port.isdigit() and len(forwarded_port) <= 5:
            port = int(forwarded_port)
    if trust.compute_full_forwarded_for and xff:
        forwarded_for = b", ".join(xff) + b", " + peer.encode()
    else:
        forwarded_for = client_ip.encode()
    lines = [b"X-Forwarded-For: ", forwarded_for, b"\r\nX-Real-IP: ", client_ip.encode(),
             b"\r\nX-Forwarded-Port: %d\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Scheme: %s\r\nX-Scheme: %s\r\n"
             % (port, scheme.encode(), scheme.encode(), scheme.encode())]
    if not (trust.use_forwarded_headers and host):
        host = None  # X-Forwarded-Host is the client's Host
    return Forwarded(client_ip, scheme, b"".join(lines), host)
