"""``enable-cors`` and the ``cors-*`` annotations, as ingress-nginx's CORS template applies them.

A request whose Origin is allowed (any, with ``cors-allow-origin: "*"``, the default) gets
``Access-Control-Allow-Origin`` (and ``-Allow-Credentials``, ``-Expose-Headers``) on its response;
an allowed preflight (``OPTIONS``) is answered by ingressd with 204 and the ``-Allow-Methods``,
``-Allow-Headers`` and ``-Max-Age`` fields, without reaching the upstream. Every field is built
once per configuration; per request only the origin is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_METHODS = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
DEFAULT_HEADERS = ("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,"
                   "Range,Authorization")
DEFAULT_MAX_AGE = 1728000

_ORIGIN_RE = re.compile(r"^(\*|https?://(\*\.)?[A-Za-z0-9.-]+(:\d+)?)$")
_METHODS_RE = re.compile(r"^[A-Za-z]+(\s*,\s*[A-Za-z]+)*$")
_HEADERS_RE = re.compile(r"^(\*|[A-Za-z0-9_-]+(\s*,\s*[A-Za-z0-9_-]+)*)$")


def parse_origins(value: str) -> tuple[str, ...]:
    origins = tuple(item.strip() for item in value.split(",") if item.strip())
    for origin in origins:
        if not _ORIGIN_RE.match(origin):
            raise ValueError(f"{origin!r} is not * or an origin like https://example.com")
    if not origins:
        raise ValueError("expected * or a comma list of origins")
    return ("*",) if "*" in origins else origins


def parse_methods(value: str) -> str:
    if not _METHODS_RE.match(value.strip()):
        raise ValueError("expected a comma list of methods")
    return ", ".join(m.strip().upper() for m in value.split(","))


def parse_header_list(value: str) -> str:
    if not _HEADERS_RE.match(value.strip()):
        raise ValueError("expected a comma list of header names")
    return ",".join(h.strip() for h in value.split(","))


def parse_max_age(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError("expected a number of seconds")
    return int(value.strip())


@dataclass(frozen=True, slots=True, eq=False)
class Cors:
    origins: tuple[str, ...] = ("*",)
    methods: str = DEFAULT_METHODS
    headers: str = DEFAULT_HEADERS
    expose: str = ""
    credentials: bool = True
    max_age: int = DEFAULT_MAX_AGE
    _exact: frozenset = field(init=False, repr=False, compare=False, default=frozenset())
    _wildcards: tuple = field(init=False, repr=False, compare=False, default=())
    _any: bool = field(init=False, repr=False, compare=False, default=False)
    _shared: bytes = field(init=False, repr=False, compare=False, default=b"")
    _preflight: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        exact = frozenset(o.lower() for o in self.origins if "*" not in o)
        wildcards = tuple(o.lower().split("*.", 1) for o in self.origins if "*." in o)  # (scheme://, domain)
        shared = b""
        if self.credentials:
            shared += b"Access-Control-Allow-Credentials: true\r\n"
        if self.expose:
            shared += b"Access-Control-Expose-Headers: %s\r\n" % self.expose.encode()
        preflight = (b"Access-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\n"
                     b"Access-Control-Max-Age: %d\r\n" % (self.methods.encode(), self.headers.encode(), self.max_age))
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_wildcards", wildcards)
        object.__setattr__(self, "_any", self.origins == ("*",))
        object.__setattr__(self, "_shared", shared)
        object.__setattr__(self, "_preflight", preflight)

    def allowed_origin(self, origin: bytes | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for a request, or None when CORS does not apply."""
        if self._any:
            return b"*"
        if origin is None:
            return None
        text = origin.decode("latin-1").lower()
        if text in self._exact:
            return origin
        for scheme, domain in self._wildcards:
            if text.startswith(scheme) and text.endswith("." + domain) and len(text) > len(scheme) + len(domain) + 1:
                return origin
        return None

    def response_headers(self, origin: bytes | None) -> bytes:
        """Fields added to a proxied response (b"" when the origin is not allowed)."""
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return b""
        return b"Access-Control-Allow-Origin: " + allowed + b"\r\n" + self._shared

    def preflight_headers(self, origin: bytes | None) -> bytes | None:
        """Fields of the 204 answering a preflight, or None to proxy it (origin not allowed)."""
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return None
        return b"Access-Control-Allow-Origin: " + allowed + b"\r\n" + self._shared + self._preflight

    def describe(self) -> str:
        return "cors=" + ",".join(self.origins)
