"""Responses ingressd writes itself: errors, redirects, the default backend's 404."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

HSTS = b"Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n"
DEFAULT_BACKEND_BODY = b"default backend - 404\n"


_date = (0, b"")


def date_line() -> bytes:
    """``Date: ...`` for now (RFC 9110 §6.6.1: a proxy with a clock adds it), formatted once a second."""
    global _date
    second = int(time.time())
    if second != _date[0]:
        _date = (second, b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n")
    return _date[1]


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def response(status: int, body: bytes = b"", *, keep_alive: bool = True, headers: bytes = b"",
             head_only: bool = False, content_type: bytes | None = None) -> bytes:
    """A complete response, by default with a plain-text body. ``headers`` are extra CRLF-terminated
    lines; ``content_type`` another type for the body (b"": none, ``headers`` has it)."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason(status)), date_line(), headers]
    if content_type:
        lines.append(b"Content-Type: " + content_type + b"\r\n")
    elif body and content_type is None:
        lines.append(b"Content-Type: text/plain; charset=utf-8\r\n")
    lines.append(b"Content-Length: %d\r\n" % len(body))
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    if body and not head_only:
        lines.append(body)
    return b"".join(lines)


def error_body(status: int, detail: str = "") -> bytes:
    text = f"{status} {HTTPStatus(status).phrase}"
    return (f"{text}: {detail}\n" if detail else f"{text}\n").encode()


def redirect(status: int, location: str, *, keep_alive: bool = True, headers: bytes = b"",
             head_only: bool = False) -> bytes:
    # Location comes from a checked template or from the request target, which httptools has
    # already rejected if it held CR or LF; quote anything else non-ASCII rather than trust it.
    encoded = location.encode("ascii", "backslashreplace") if not location.isascii() else location.encode()
    body = b"Redirecting to " + encoded + b"\n"
    return response(status, body, keep_alive=keep_alive, headers=b"Location: " + encoded + b"\r\n" + headers,
                    head_only=head_only)
