"""gRPC's view of ingressd's own answers: status codes, trailers-only responses, ``grpc-timeout``.

A route with ``backend-protocol: GRPC`` or ``GRPCS`` answers its failures the way ingress-nginx's
``grpc_pass`` locations do: not with an HTML error page, which a gRPC client cannot read, but with a
*trailers-only* response (HTTP 200, ``content-type: application/grpc``, ``grpc-status`` and
``grpc-message`` in the one HEADERS frame). 502 and 503 become UNAVAILABLE (14), 504 becomes
DEADLINE_EXCEEDED (4); other statuses follow gRPC's HTTP-to-gRPC mapping
(doc/http-grpc-status-mapping.md). Pure functions, no IO.
"""

from __future__ import annotations

OK = 0
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

_FROM_HTTP = {400: INTERNAL, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED,
              413: RESOURCE_EXHAUSTED, 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE,
              504: DEADLINE_EXCEEDED}

# grpc-timeout units (PROTOCOL-HTTP2.md: TimeoutValue is at most 8 digits)
_UNITS = {0x48: 3600.0, 0x4D: 60.0, 0x53: 1.0, 0x6D: 1e-3, 0x75: 1e-6, 0x6E: 1e-9}  # H M S m u n

# Bytes that grpc-message carries as they are: printable ASCII except "%" (PROTOCOL-HTTP2.md).
_PLAIN = frozenset(range(0x20, 0x7F)) - {0x25}


def status_for(http_status: int) -> int:
    """The gRPC status for ingressd's HTTP answer ``http_status``."""
    return _FROM_HTTP.get(http_status, UNKNOWN)


def encode_message(text: str) -> bytes:
    """``grpc-message``: UTF-8, percent-encoding what is not printable ASCII (and "%")."""
    return b"".join(bytes((byte,)) if byte in _PLAIN else b"%%%02X" % byte for byte in text.encode("utf-8"))


def status_fields(code: int, message: str) -> list[tuple[bytes, bytes]]:
    """``grpc-status`` and ``grpc-message`` (lower-case names), e.g. for trailers."""
    return [(b"grpc-status", b"%d" % code), (b"grpc-message", encode_message(message))]


def trailers_only(http_status: int, detail: str) -> bytes:
    """The header lines (CRLF-terminated) of the trailers-only answer to a failure ``http_status``."""
    lines = [b"Content-Type: application/grpc\r\n"]
    lines += (b"%s: %s\r\n" % (name, value) for name, value in status_fields(status_for(http_status), detail))
    return b"".join(lines)


def parse_timeout(value: bytes) -> float | None:
    """``grpc-timeout`` (``TimeoutValue TimeoutUnit``: 1-8 digits and one of H M S m u n) in
    seconds, or None when it is malformed (then no deadline is taken from it)."""
    digits = value[:-1]
    unit = _UNITS.get(value[-1]) if value else None
    if unit is None or not 1 <= len(digits) <= 8 or not digits.isdigit():
        return None
    return int(digits) * unit
