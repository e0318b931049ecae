"""CHP's targets: what a route's ``target`` URL means for the request sent to it.

A target is ``http://`` or ``https://`` with an optional path and query. As CHP (http-proxy-3) does:
- with ``--no-include-prefix`` the route's prefix is cut off the request path first;
- the target's path is then prepended (unless ``--no-prepend-path``), joined with one slash, and
  the target's query is merged with the request's (``urlJoin``);
- an https target is verified against the system's CAs unless ``--insecure``, and gets SNI.
Pure, except for building the TLS client context once per (host, --insecure).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit


class RouteError(ValueError):
    """A route CHP would accept but ingressd cannot serve (the message says why)."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    scheme: str
    path: str = ""  # with its query, as written ("" for none)

    @classmethod
    def parse(cls, target: str) -> "Target":
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError as error:
            raise RouteError(f"target {target!r} is not a URL: {error}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RouteError(f"target {target!r} is not an http:// or https:// URL")
        path = parts.path + ("?" + parts.query if parts.query else "")
        return cls(parts.hostname, port or (443 if parts.scheme == "https" else 80), parts.scheme,
                   "" if path == "/" else path)


def url_join(*parts: str) -> str:
    """http-proxy-3's ``urlJoin``: concatenate with single slashes between segments, queries merged."""
    queries = []
    paths = []
    for part in parts:
        path, mark, query = part.partition("?")
        if mark and query:
            queries.append(query)
        paths.append(path)
    joined = ""
    for segment in paths:
        if not segment:
            continue
        if joined.endswith("/"):
            joined += segment[1:] if segment.startswith("/") else segment
        else:
            joined += segment if segment.startswith("/") else "/" + segment
    return joined + ("?" + "&".join(queries) if queries else "")


@dataclass(frozen=True, slots=True)
class PathEdit:
    """The request target as the route's target gets it (``RouteOptions.path_edit``)."""

    prefix: str = ""  # prepended (the target's path and query)
    strip: int = 0  # characters cut off the front first (--no-include-prefix: the route's prefix)

    def apply(self, url: bytes) -> bytes:
        text = url.decode("latin-1")
        if self.strip:
            text = text[self.strip:]
        if self.prefix:
            text = url_join(self.prefix, text)
        return (text if text.startswith("/") else "/" + text).encode("latin-1")  # a valid origin form


def path_edit(target: Target, route_path: str, *, prepend_path: bool, include_prefix: bool) -> PathEdit | None:
    """What a route does to request targets, or None when it sends them unchanged."""
    prefix = target.path if prepend_path else ""
    strip = 0 if include_prefix or route_path == "/" else len(route_path)
    return PathEdit(prefix, strip) if prefix or strip else None


class TargetTLS:
    """TLS to an https target: the system's CAs and the target's name, or no check (--insecure).

    Has what the data plane's upstream dialing reads (``context``, ``server_name``); pickles as
    its recipe, as ``options.upstream_tls.UpstreamTLS`` does."""

    __slots__ = ("host", "insecure", "context", "server_name")

    def __init__(self, host: str, insecure: bool):
        self.host, self.insecure = host, insecure
        self.server_name = host
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.context = context

    def __reduce__(self):
        return TargetTLS, (self.host, self.insecure)

    def describe(self) -> str:
        return f"https{'' if self.insecure else '+verify'}({self.host})"
