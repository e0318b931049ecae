"""ingress-nginx annotations parsed into typed per-route options.

Every value is parsed into a number, a flag or a checked template; no user text ever reaches a
config file or an interpreter. A value that does not parse is reported and the default is used, so
a typo never breaks a route (ingress-nginx's own behaviour, made visible).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NGINX = "nginx.ingress.kubernetes.io/"
MIB = 1 << 20

_SIZE_RE = re.compile(r"^(\d+)([bkmg]?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_SECONDS_RE = re.compile(r"^(\d+)s?$")
_VARIABLE_RE = re.compile(r"\$(\{(\w+)\}|(\w+))")
_URL_RE = re.compile(r"^(https?://[^\s/?#]+|/)[^\s]*$", re.IGNORECASE)

# nginx variables a redirect target may use, and what ingressd substitutes for them.
REDIRECT_VARIABLES = ("request_uri", "uri", "args", "query_string", "is_args", "host", "http_host", "scheme",
                      "server_name")

# Annotations ingress-nginx users have that ingressd does not implement (yet): reported, not silent.
_KNOWN_UNSUPPORTED = {
    "rewrite-target", "use-regex", "app-root", "backend-protocol", "whitelist-source-range",
    "allowlist-source-range", "denylist-source-range", "enable-cors", "affinity", "session-cookie-name",
    "upstream-vhost", "service-upstream", "custom-http-errors", "default-backend", "limit-rps",
    "limit-connections", "limit-rpm", "auth-url", "auth-signin", "auth-type", "auth-secret", "canary",
    "canary-by-header", "canary-by-cookie", "canary-weight", "configuration-snippet", "server-snippet",
    "from-to-www-redirect", "mirror-target", "auth-tls-secret", "proxy-redirect-from", "x-forwarded-prefix",
}


@dataclass(frozen=True, slots=True)
class Redirect:
    """A redirect target: literal text with nginx-style ``$variables`` filled in per request."""

    code: int
    parts: tuple[str, ...]  # alternating literal, variable name, literal, ...

    def render(self, scheme: str, host: str, target: str) -> str:
        if len(self.parts) == 1:
            return self.parts[0]
        path, _, query = target.partition("?")
        values = {
            "request_uri": target, "uri": path, "args": query, "query_string": query,
            "is_args": "?" if query else "", "host": host, "http_host": host, "scheme": scheme,
            "server_name": host,
        }
        return "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(self.parts))

    @property
    def template(self) -> str:
        return "".join(part if i % 2 == 0 else "$" + part for i, part in enumerate(self.parts))


@dataclass(frozen=True, slots=True)
class RouteOptions:
    body_size_limit: int | None = MIB  # None: unlimited
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    redirect: Redirect | None = None

    def describe(self) -> str:
        """A short summary of what differs from the defaults, for ``ingressd routes``."""
        parts = []
        for name in ("body_size_limit", "connect_timeout", "read_timeout", "send_timeout",
                     "ssl_redirect", "force_ssl_redirect"):
            value = getattr(self, name)
            if value != getattr(DEFAULT_OPTIONS, name):
                parts.append(f"{name}={'unlimited' if value is None else value}")
        if self.redirect:
            parts.append(f"redirect={self.redirect.code} {self.redirect.template}")
        return ",".join(parts) or "-"


DEFAULT_OPTIONS = RouteOptions()


def parse_size(value: str) -> int | None:
    match = _SIZE_RE.match(value.strip())
    if not match:
        raise ValueError("expected a size like 1m, 512k or 0 (unlimited)")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    return None if size == 0 else size


def parse_seconds(value: str) -> float:
    match = _SECONDS_RE.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError("expected a whole number of seconds greater than 0")
    return float(match.group(1))


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError('expected "true" or "false"')


def parse_redirect_url(value: str) -> tuple[str, ...]:
    value = value.strip()
    if not _URL_RE.match(value) or any(ord(ch) < 0x20 or ch in '"\\' for ch in value):
        raise ValueError("expected an absolute http(s) URL or a path, without spaces or control characters")
    parts: list[str] = []
    last = 0
    for match in _VARIABLE_RE.finditer(value):
        name = match.group(2) or match.group(3)
        if name not in REDIRECT_VARIABLES:
            raise ValueError(f"unknown variable ${name}; supported: {', '.join('$' + v for v in REDIRECT_VARIABLES)}")
        parts += [value[last:match.start()], name]
        last = match.end()
    parts.append(value[last:])
    return tuple(parts)


def parse_redirect_code(value: str | None, default: int) -> int:
    if value is None:
        return default
    code = int(value.strip()) if value.strip().isdigit() else -1
    if not 300 <= code <= 308:
        raise ValueError("expected a redirect status code between 300 and 308")
    return code


def parse_route_options(annotations: dict[str, str]) -> tuple[RouteOptions, list[str]]:
    """The options for every route of one Ingress, and one warning per annotation not used."""
    warnings: list[str] = []
    values: dict[str, object] = {}

    def take(name: str, parse, field: str) -> None:
        raw = annotations.get(NGINX + name)
        if raw is None:
            return
        try:
            values[field] = parse(raw)
        except ValueError as error:
            warnings.append(f"annotation {NGINX}{name}: {raw!r} is invalid ({error}); using the default")

    take("proxy-body-size", parse_size, "body_size_limit")
    take("proxy-connect-timeout", parse_seconds, "connect_timeout")
    take("proxy-read-timeout", parse_seconds, "read_timeout")
    take("proxy-send-timeout", parse_seconds, "send_timeout")
    take("ssl-redirect", parse_bool, "ssl_redirect")
    take("force-ssl-redirect", parse_bool, "force_ssl_redirect")

    # temporal-redirect wins over permanent-redirect when both are set, as in ingress-nginx.
    for kind, default_code in (("temporal", 302), ("permanent", 301)):
        raw = annotations.get(f"{NGINX}{kind}-redirect")
        if raw is None or "redirect" in values:
            continue
        try:
            parts = parse_redirect_url(raw)
        except ValueError as error:
            warnings.append(f"annotation {NGINX}{kind}-redirect: {raw!r} is invalid ({error}); not redirecting")
            continue
        code_raw = annotations.get(f"{NGINX}{kind}-redirect-code")
        try:
            code = parse_redirect_code(code_raw, default_code)
        except ValueError as error:
            warnings.append(f"annotation {NGINX}{kind}-redirect-code: {code_raw!r} is invalid ({error}); "
                            f"using {default_code}")
            code = default_code
        values["redirect"] = Redirect(code, parts)

    for key in annotations:
        if key.startswith(NGINX):
            name = key[len(NGINX):]
            if name in _KNOWN_UNSUPPORTED:
                warnings.append(f"annotation {key} is not supported by ingressd yet; ignored")
    return (RouteOptions(**values) if values else DEFAULT_OPTIONS), warnings
