"""Request targets and framing decisions that httptools (llhttp, strict mode) leaves to ingressd.

llhttp already refuses, with a parse error (400): Content-Length together with Transfer-Encoding
(RFC 9112 §6.3), several Content-Length fields or a list, signs, junk or overflow in one; a
Transfer-Encoding whose last coding is not ``chunked`` (§6.1) or that repeats ``chunked``; chunk
sizes that do not parse or overflow, chunk extensions with bad bytes, missing or bare-LF CRLFs
(§7.1); framing fields in trailers (§7.1.2); whitespace before a field's colon, control characters
or NUL in names and values, bare CR, obs-fold and LF-only lines (§5); unknown methods and bad
versions. What it lets through and ingressd decides here (or in ``forward.read_headers``, the one
pass over the fields):

- a Transfer-Encoding other than exactly ``chunked`` (``gzip, chunked``): 501 (§6.1, as nginx);
- Transfer-Encoding in an HTTP/1.0 request: 400 (§6.1: faulty framing);
- a Content-Length above 2**63-1: 400 (nginx's off_t);
- versions other than 1.0 and 1.1 (``HTTP/2.0`` in a request line): 505;
- an upgrade request with a body: 400 (its body would be parsed as tunnel bytes);
- the request target (``normalize_target``): fragments, backslashes, invalid or NUL
  percent-escapes, dot segments above the root and dot segments made by encoded slashes: 400.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MAX_CONTENT_LENGTH = 2 ** 63 - 1

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})|%00")
_DOT_SEGMENTS = {b".": 1, b"..": 2, b"%2e": 1, b"%2e%2e": 2, b".%2e": 2, b"%2e.": 2}


class TargetError(ValueError):
    """A request target ingressd refuses (400), with the reason."""


def normalize_target(raw_path: bytes) -> tuple[str, bytes]:
    """``(routing path, path for the upstream)`` for an origin-form path (query excluded).

    The routing path is what nginx matches locations against: percent-decoded, slashes merged,
    dot segments resolved. The upstream gets the path as the client wrote it, except that dot
    segments (also ``%2e`` ones, RFC 3986 §6.2.2.2) are resolved in it too: then the upstream
    cannot resolve them differently from the routing (``/static/..%2e/admin`` must not reach the
    ``/static`` backend as a path it resolves to ``/admin``). Encoded slashes stay encoded for the
    upstream (``/api/projects/group%2Fname``) and are slashes for the routing, as in nginx; a
    path where an encoded slash makes a dot segment (``/a/..%2f..%2fb``) is refused, because
    routing and upstream could not agree on it. Raises ``TargetError``.
    """
    if b"#" in raw_path:
        raise TargetError("fragment in the request target")
    if b"\\" in raw_path:
        raise TargetError("backslash in the request path")
    if b"%" in raw_path and _BAD_ESCAPE.search(raw_path) is not None:
        raise TargetError("invalid percent-encoding in the request path")
    forwarded = raw_path
    if b"/." in raw_path or b"%2" in raw_path.lower():
        segments = raw_path.split(b"/")
        kept: list[bytes] = []
        dots = False
        for segment in segments[1:]:
            kind = _DOT_SEGMENTS.get(segment.lower() if b"%" in segment else segment, 0)
            if kind == 0:
                kept.append(segment)
            else:
                dots = True
                if kind == 2:
                    while kept and not kept[-1]:
                        kept.pop()  # merged slashes, as nginx: /a//../b is /b
                    if not kept:
                        raise TargetError("the request path climbs above the root")
                    kept.pop()
        if dots:
            last = segments[-1]
            trailing = not last or _DOT_SEGMENTS.get(last.lower(), 0) != 0
            forwarded = b"/" + b"/".join(s for s in kept if s) + (b"/" if trailing and kept else b"")
    text = forwarded.decode("utf-8", "surrogateescape")
    if "%" in text:
        text = unquote(text, errors="surrogateescape")
    parts = [part for part in text.split("/") if part]
    for part in parts:
        if part == "." or part == "..":
            raise TargetError("an encoded slash makes a dot segment in the request path")
    path = "/" + "/".join(parts)
    if text.endswith("/") and parts:
        path += "/"
    return path, forwarded


def split_absolute_form(url: bytes) -> tuple[bytes, bytes] | None:
    """``(authority, origin-form target)`` of an ``http(s)://`` target (RFC 9112 §3.2.2), or None
    when ``url`` is not in absolute form."""
    lower = url[:8].lower()
    if lower.startswith(b"http://"):
        rest = url[7:]
    elif lower.startswith(b"https://"):
        rest = url[8:]
    else:
        return None
    end = len(rest)
    for stop in (b"/", b"?"):
        index = rest.find(stop)
        if 0 <= index < end:
            end = index
    target = rest[end:]
    if not target.startswith(b"/"):
        target = b"/" + target
    return rest[:end], target
