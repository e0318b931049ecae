"""The PROXY protocol header (HAProxy's specification, versions 1 and 2), sans-IO.

A load balancer in front of ingressd (``use-proxy-protocol``) starts every connection with one
header naming the client's address. ``parse(data)`` reads it from the first bytes of a connection:

    header = parse(buffer)       # None: incomplete, read more; ProxyProtocolError: refuse
    header.source                # the client's address, or None (LOCAL / UNKNOWN: use the peer)
    buffer[header.length:]       # what follows is the client's own bytes (HTTP or TLS)

It never reads more than ``MAX_HEADER`` bytes: anything longer or malformed is an error, and the
connection is closed, as nginx does with a "broken header".
"""

from __future__ import annotations

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the specification's longest v1 line, CRLF included
MAX_HEADER = 16 + 2048  # v2: fixed part plus addresses and TLVs ingressd is willing to buffer


class ProxyProtocolError(ValueError):
    pass


class ProxyHeader:
    __slots__ = ("source", "source_port", "length")

    def __init__(self, source: str | None, source_port: int, length: int):
        self.source = source  # None: a LOCAL/UNKNOWN connection (health check): the peer's address applies
        self.source_port = source_port
        self.length = length  # bytes of the header, at the start of the stream

    def __repr__(self) -> str:
        return f"ProxyHeader({self.source!r}, {self.source_port}, {self.length})"


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``, None when more bytes are needed."""
    if data[:1] == b"\r":
        if len(data) < 16:
            if not V2_SIGNATURE.startswith(data[:12]):
                raise ProxyProtocolError("not a PROXY protocol header")
            return None
        return _parse_v2(data)
    if data[:1] == b"P":
        return _parse_v1(data)
    if not data:
        return None
    raise ProxyProtocolError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or not (b"PROXY "[:len(data)] == data[:6]) or b"\n" in data[:V1_MAX]:
            raise ProxyProtocolError("PROXY v1 header without CRLF within 107 bytes")
        return None
    parts = data[:end].split(b" ")
    if parts[0] != b"PROXY" or len(parts) < 2:
        raise ProxyProtocolError("not a PROXY protocol header")
    if parts[1] == b"UNKNOWN":
        return ProxyHeader(None, 0, end + 2)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("malformed PROXY v1 header")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        destination = ipaddress.ip_address(parts[3].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError("malformed address in PROXY v1 header") from None
    version = 4 if parts[1] == b"TCP4" else 6
    if source.version != version or destination.version != version:
        raise ProxyProtocolError("PROXY v1 address does not match its family")
    ports = []
    for port in parts[4:6]:
        if not port.isdigit() or len(port) > 5 or (len(port) > 1 and port[:1] == b"0") or int(port) > 65535:
            raise ProxyProtocolError("malformed port in PROXY v1 header")
        ports.append(int(port))
    return ProxyHeader(str(source), ports[0], end + 2)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if data[:12] != V2_SIGNATURE:
        raise ProxyProtocolError("not a PROXY protocol header")
    version_command, family, length = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if version_command >> 4 != 2 or version_command & 0xF > 1:
        raise ProxyProtocolError("unsupported PROXY v2 version or command")
    total = 16 + length
    if total > MAX_HEADER:
        raise ProxyProtocolError("PROXY v2 header too long")
    if len(data) < total:
        return None
    if version_command & 0xF == 0:  # LOCAL: the proxy's own connection (health checks)
        return ProxyHeader(None, 0, total)
    transport, address_family = family & 0xF, family >> 4
    if address_family == 1 and transport in (1, 2):  # IPv4
        if length < 12:
            raise ProxyProtocolError("PROXY v2 IPv4 addresses truncated")
        source = ipaddress.IPv4Address(data[16:20])
        port = struct.unpack_from("!H", data, 24)[0]
        return ProxyHeader(str(source), port, total)
    if address_family == 2 and transport in (1, 2):  # IPv6
        if length < 36:
            raise ProxyProtocolError("PROXY v2 IPv6 addresses truncated")
        source = ipaddress.IPv6Address(data[16:32])
        port = struct.unpack_from("!H", data, 48)[0]
        return ProxyHeader(str(source.ipv4_mapped or source), port, total)
    if family == 0 or address_family == 3:  # UNSPEC, unix sockets: no address to take
        return ProxyHeader(None, 0, total)
    raise ProxyProtocolError("unsupported PROXY v2 address family")
