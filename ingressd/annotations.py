"""ingress-nginx annotations parsed into typed per-route options.

Every value is parsed into a number, a flag or a checked template; no user text ever reaches a
config file or an interpreter. A value that does not parse is reported and the default is used, so
a typo never breaks a route (ingress-nginx's own behaviour, made visible).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field

from . import catalog
from .options import extauth
from .options.errorpages import parse_codes
from .options import balance as lb
from .options.headers import parse_ref as parse_header_ref
from .options.cors import Cors, parse_header_list, parse_max_age, parse_methods, parse_origins
from .options.ranges import SourceRanges, parse_ranges
from .options.ratelimit import ConnectionLimit, RequestRate, parse_multiplier, parse_rate
from .options.rewrite import parse_target
from .options.upstream_tls import UpstreamTLSSpec, parse_protocols

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


# The RouteOptions by which policy.answer_for answers a request itself (any set: may_answer).
ANSWERING_OPTIONS = ("static", "redirect", "app_root", "cors", "rate_limits", "ranges", "refused", "basic_auth",
                     "ext_auth")


@dataclass(frozen=True, slots=True)
class RouteOptions:
    body_size_limit: int | None = MIB  # None: unlimited
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    https_redirect_code: int = 308  # the ConfigMap's http-redirect-code
    redirect: Redirect | None = None
    app_root: str | None = None  # "/" answers 302 to it
    ranges: SourceRanges | None = None  # who may use the route (else 403)
    cors: Cors | None = None
    upstream_host: bytes | None = None  # upstream-vhost: the Host sent upstream
    forwarded_prefix: bytes | None = None  # x-forwarded-prefix: sent as X-Forwarded-Prefix
    rewrite_target: tuple | None = None  # parsed rewrite-target (compiled per path into ``rewrite``)
    use_regex: bool = False
    rewrite: object = None  # options.rewrite.Rewrite of one path, set by the translator
    server_aliases: tuple[str, ...] = ()
    ssl_ciphers: str | None = None  # ssl-ciphers: the TLS 1.2 ciphers of the Ingress's hosts
    from_to_www: bool = False
    upstream_tls_spec: UpstreamTLSSpec | None = None  # backend-protocol HTTPS (+ proxy-ssl-*)
    upstream_tls: object = None  # options.upstream_tls.UpstreamTLS, built by the translator
    grpc: bool = False  # backend-protocol GRPC/GRPCS: HTTP/2 to the upstream (dataplane.h2upstream)
    rate_limits: tuple = ()  # options.ratelimit.RequestRate zones (limit-rps, limit-rpm)
    conn_limit: object = None  # options.ratelimit.ConnectionLimit (limit-connections)
    error_codes: frozenset = frozenset()  # custom-http-errors (the annotation, else the ConfigMap's)
    error_backend_ref: str | None = None  # default-backend: a Service of the Ingress's namespace
    custom_errors: object = None  # options.errorpages.CustomErrors, built by the translator
    auth_secret: tuple | None = None  # (secret ref, "auth-file" | "auth-map", realm) for auth-type basic
    basic_auth: object = None  # options.basicauth.BasicAuth, built by the translator
    ext_auth: object = None  # options.extauth.ExtAuth: auth-url (or the ConfigMap's global-auth-url)
    # Authentication ingressd cannot do (digest, client certificates): refused with 503
    # rather than served unauthenticated.
    refused: str | None = None
    service_upstream: bool = False  # proxy to the Service's cluster IP, not its endpoints
    ssl_passthrough: bool = False  # TLS for the host goes to this ("/") route's backend undecrypted
    next_upstream_tries: int = 3  # proxy-next-upstream-tries: endpoints tried in all (see next_upstream)
    # proxy-next-upstream: when to try the next endpoint ("error", "timeout", "http_502", ...,
    # "non_idempotent"); ingress-nginx's default "error timeout"; empty: never ("off").
    next_upstream: frozenset = frozenset(("error", "timeout"))
    request_buffering: bool = False  # proxy-request-buffering on: the whole body is read before the upstream is asked
    next_upstream_timeout: float = 0.0  # proxy-next-upstream-timeout: seconds for all tries (0: no limit)
    next_upstream_codes: frozenset = field(default=frozenset(), compare=False)  # the http_NNN of next_upstream
    # load-balance, upstream-hash-by, affinity: cookie (options.balance); ``balance`` is what the data
    # plane reads: None for round robin (one check per request), else an options.balance.Balance.
    load_balance: str = "round_robin"
    hash_by: object = None  # options.balance.HashKey
    affinity: object = None  # options.balance.CookieAffinity
    canary: object = None  # options.balance.CanaryPolicy: the Ingress is a canary (its paths split main ones)
    balance: object = None
    access_log: bool = True  # enable-access-log (the default backend: enable-access-log-for-default-backend)
    skip_log_urls: frozenset = frozenset()  # skip-access-log-urls: request targets never logged
    # ``ingressd chp``'s routes (CHP's flags; no annotation sets these):
    path_edit: object = None  # chp.targets.PathEdit: the target's path prepended, the prefix cut
    # (lower-case name, b"Name: value\r\n"): --custom-header (ingressd chp) or the ConfigMap's
    # proxy-set-headers, replacing the client's
    request_headers: tuple = ()
    custom_headers: str | None = None  # custom-headers: the ConfigMap of this Ingress's response headers
    response_headers: object = None  # options.headers.ResponseHeaders: add-headers, hide-headers, custom-headers
    x_forward: bool = True  # False (--no-x-forward): no X-Forwarded-*, X-Real-IP or X-Request-ID added
    error_pages: object = None  # chp.errors.ErrorPages: the bodies of ingressd's own 404/5xx answers
    static: tuple | None = None  # (status, content type, body) answered for every request (/_chp_healthz)
    request_header_names: frozenset = field(default=frozenset(), compare=False)  # of request_headers
    # Whether the upstream request head differs from the client's (one check per request).
    edits_request: bool = field(default=False, compare=False)
    # Whether policy.answer_for may answer for the route on account of these options (a fixed
    # answer, a redirect, CORS, a limit, a check, authentication): False lets requests skip it.
    may_answer: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "request_header_names", frozenset(name for name, _ in self.request_headers))
        object.__setattr__(self, "next_upstream_codes", frozenset(
            int(c[5:]) for c in self.next_upstream if c.startswith("http_")))
        object.__setattr__(self, "edits_request", self.upstream_host is not None or self.forwarded_prefix is not None
                           or self.rewrite is not None or self.path_edit is not None
                           or bool(self.request_headers) or not self.x_forward)
        object.__setattr__(self, "may_answer", any(getattr(self, name) for name in ANSWERING_OPTIONS))

    def describe(self) -> str:
        """A short summary of what differs from the defaults, for ``ingressd routes``."""
        parts = []
        for name in ("body_size_limit", "connect_timeout", "read_timeout", "send_timeout",
                     "ssl_redirect", "force_ssl_redirect", "app_root", "use_regex", "from_to_www"):
            value = getattr(self, name)
            if value != getattr(DEFAULT_OPTIONS, name):
                parts.append(f"{name}={'unlimited' if value is None else value}")
        if self.redirect:
            parts.append(f"redirect={self.redirect.code} {self.redirect.template}")
        if self.ranges:
            parts.append(self.ranges.describe())
        if self.cors:
            parts.append(self.cors.describe())
        if self.upstream_host is not None:
            parts.append(f"upstream-vhost={self.upstream_host.decode()}")
        if self.forwarded_prefix is not None:
            parts.append(f"x-forwarded-prefix={self.forwarded_prefix.decode()}")
        if self.rewrite is not None:
            parts.append(f"rewrite={self.rewrite.path} -> {self.rewrite.template}")
        if self.server_aliases:
            parts.append("aliases=" + " ".join(self.server_aliases))
        for limit in self.rate_limits:
            parts.append(limit.describe())
        if self.conn_limit is not None:
            parts.append(self.conn_limit.describe())
        if self.custom_errors is not None:
            parts.append(self.custom_errors.describe())
        if self.basic_auth is not None:
            parts.append(self.basic_auth.describe())
        if self.ext_auth is not None:
            parts.append(self.ext_auth.describe())
        if self.refused:
            parts.append("refused")
        if self.upstream_tls is not None:
            parts.append("upstream=" + self.upstream_tls.describe())
        if self.grpc:
            parts.append("grpc")
        if self.balance is not None:
            parts.append(self.balance.describe())
        if self.response_headers is not None:
            parts.append(self.response_headers.describe())
        if self.request_headers:
            parts.append("set=" + "+".join(name.decode() for name, _ in self.request_headers))
        return ",".join(parts) or "-"


DEFAULT_OPTIONS = RouteOptions()


@dataclass(frozen=True, slots=True)
class Defaults:
    """What the controller ConfigMap sets for every Ingress (annotations override it)."""

    options: RouteOptions = DEFAULT_OPTIONS
    allow: tuple = ()  # whitelist-source-range
    deny: tuple = ()  # denylist-source-range
    block: tuple = ()  # block-cidrs: denied whatever the annotations say
    limit_req_status: int = 503  # limit-req-status-code
    default_backend_log: bool = False  # enable-access-log-for-default-backend
    limit_conn_status: int = 503  # limit-conn-status-code
    global_auth: object = None  # options.extauth.ExtAuth of global-auth-url
    no_auth_locations: tuple = ("/.well-known/acme-challenge",)  # paths global auth does not apply to


DEFAULTS = Defaults()

_HOSTNAME_RE = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_APP_ROOT_RE = re.compile(r"^/[A-Za-z0-9/._~!$&'()*+,;=:@%-]*$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9/._~!$&'()*+,;=:@%-]*$")


def parse_app_root(value: str) -> str:
    value = value.strip()
    if not _APP_ROOT_RE.match(value) or value == "/":
        raise ValueError("expected a path below / such as /app")
    return value


def parse_vhost(value: str) -> bytes:
    value = value.strip().lower()
    name, _, port = value.partition(":")
    if not _HOSTNAME_RE.match(name) or (port and not port.isdigit()):
        raise ValueError("expected a host name (with an optional :port)")
    return value.encode()


def parse_prefix(value: str) -> bytes:
    value = value.strip()
    if not _PREFIX_RE.match(value):
        raise ValueError("expected a path prefix without spaces or control characters")
    return value.encode()


def parse_aliases(value: str) -> tuple[str, ...]:
    aliases = tuple(dict.fromkeys(a.strip().lower().rstrip(".") for a in re.split(r"[,\s]+", value) if a.strip()))
    for alias in aliases:
        if not _HOSTNAME_RE.match(alias):
            raise ValueError(f"{alias!r} is not a host name")
    return aliases


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


def parse_route_options(annotations: dict[str, str],
                        defaults: Defaults = DEFAULTS) -> tuple[RouteOptions, list[str]]:
    """The options for every route of one Ingress, and one warning per annotation not used as written.

    ``defaults`` come from the controller ConfigMap; an annotation wins over it."""
    warnings: list[str] = []
    values: dict[str, object] = {}

    def take(name: str, parse, field: str | None = None):
        raw = annotations.get(NGINX + name)
        if raw is None:
            return None
        try:
            value = parse(raw)
        except ValueError as error:
            warnings.append(f"annotation {NGINX}{name}: {raw!r} is invalid ({error}); using the default")
            return None
        if field is not None:
            values[field] = value
        return value

    take("proxy-body-size", parse_size, "body_size_limit")
    take("proxy-connect-timeout", parse_seconds, "connect_timeout")
    take("proxy-read-timeout", parse_seconds, "read_timeout")
    take("proxy-send-timeout", parse_seconds, "send_timeout")
    take("ssl-redirect", parse_bool, "ssl_redirect")
    take("force-ssl-redirect", parse_bool, "force_ssl_redirect")
    take("app-root", parse_app_root, "app_root")
    take("upstream-vhost", parse_vhost, "upstream_host")
    take("x-forwarded-prefix", parse_prefix, "forwarded_prefix")
    take("use-regex", parse_bool, "use_regex")
    take("rewrite-target", parse_target, "rewrite_target")
    take("server-alias", parse_aliases, "server_aliases")
    take("ssl-ciphers", parse_listener_ciphers, "ssl_ciphers")
    take("custom-headers", parse_header_ref, "custom_headers")
    take("from-to-www-redirect", parse_bool, "from_to_www")
    take("enable-access-log", parse_bool, "access_log")
    take("service-upstream", parse_bool, "service_upstream")
    take("ssl-passthrough", parse_bool, "ssl_passthrough")
    take("proxy-next-upstream", _parse_next_upstream, "next_upstream")
    take("proxy-next-upstream-timeout", _parse_seconds_or_zero, "next_upstream_timeout")
    tries = take("proxy-next-upstream-tries", _parse_count)
    if tries is not None:
        values["next_upstream_tries"] = tries or 1_000_000  # nginx: 0 is no limit
    take("custom-http-errors", parse_codes, "error_codes")
    take("default-backend", _parse_service_name, "error_backend_ref")
    if take("disable-proxy-intercept-errors", parse_bool):
        values["error_codes"] = frozenset()  # upstream error answers reach the client as sent
    _balancing(take, annotations, defaults, values, warnings)
    take("preserve-trailing-slash", parse_bool)  # ingressd's redirects keep the target as sent
    for name in ("client-body-buffer-size", "proxy-buffer-size", "proxy-max-temp-file-size"):
        take(name, parse_size)
    take("proxy-buffers-number", _parse_count)
    take("proxy-buffering", _parse_on_off)
    take("proxy-request-buffering", _parse_on_off, "request_buffering")
    take("proxy-http-version", _parse_http_version)

    protocol = take("backend-protocol", _parse_backend_protocol)
    if protocol in ("GRPC", "GRPCS"):
        values["grpc"] = True
    elif protocol in ("AUTO_HTTP", "FCGI"):
        warnings.append(f"annotation {NGINX}backend-protocol: {protocol} is not supported; using HTTP")
    if protocol in ("HTTPS", "GRPCS"):
        spec: dict[str, object] = {}
        for name, parse, key in (("proxy-ssl-verify", _parse_on_off, "verify"),
                                 ("proxy-ssl-secret", _parse_secret_ref, "secret"),
                                 ("proxy-ssl-name", parse_vhost, "name"),
                                 ("proxy-ssl-server-name", _parse_on_off, "sni"),
                                 ("proxy-ssl-protocols", parse_protocols, "protocols"),
                                 ("proxy-ssl-ciphers", _parse_ciphers, "ciphers")):
            value = take(name, parse)
            if value is not None:
                spec[key] = value.decode() if isinstance(value, bytes) else value
        take("proxy-ssl-verify-depth", _parse_count)
        values["upstream_tls_spec"] = UpstreamTLSSpec(**spec, http2=protocol == "GRPCS")

    auth_type = take("auth-type", _parse_auth_type)
    if auth_type == "basic":
        secret = take("auth-secret", _parse_secret_ref)
        secret_type = take("auth-secret-type", _parse_auth_secret_type) or "auth-file"
        realm = take("auth-realm", _parse_realm) or ""
        if secret is None:
            warnings.append(f"annotation {NGINX}auth-type: basic needs {NGINX}auth-secret; every request gets 401")
            secret = ""
        values["auth_secret"] = (secret, secret_type, realm)
    elif auth_type == "digest":
        values["refused"] = "digest authentication is not supported"
    url = take("auth-url", extauth.parse_url)
    if url is not None:
        auth: dict[str, object] = {"url": url}
        for name, parse, key in (("auth-method", extauth.parse_method, "method"),
                                 ("auth-signin", extauth.parse_signin, "signin"),
                                 ("auth-signin-redirect-param", extauth.parse_param, "redirect_param"),
                                 ("auth-response-headers", extauth.parse_header_names, "response_headers"),
                                 ("auth-request-redirect", extauth.parse_template, "request_redirect"),
                                 ("auth-proxy-set-headers", _parse_secret_ref, "proxy_headers_ref"),
                                 ("auth-cache-key", extauth.parse_template, "cache_key"),
                                 ("auth-cache-duration", extauth.parse_cache_duration, "cache_duration"),
                                 ("auth-always-set-cookie", parse_bool, "always_set_cookie")):
            value = take(name, parse)
            if value is not None:
                auth[key] = value
        values["ext_auth"] = extauth.ExtAuth(**auth)
    elif annotations.get(NGINX + "auth-url") is not None:
        # an auth-url that does not parse: never served unauthenticated
        values["refused"] = "the auth-url annotation is invalid"
    elif defaults.global_auth is not None and take("enable-global-auth", parse_bool) is not False:
        values["ext_auth"] = defaults.global_auth
    for name, why in (("auth-tls-secret", "client certificate authentication is not supported"),):
        if annotations.get(NGINX + name) and not values.get("refused"):
            values["refused"] = why
    if values.get("refused"):
        warnings.append(f"Ingress requires authentication ingressd cannot do ({values['refused']}): its requests "
                        "get 503 instead of being served unauthenticated")

    rps, rpm = take("limit-rps", parse_rate), take("limit-rpm", parse_rate)
    connections = take("limit-connections", parse_rate)
    if rps or rpm or connections:
        exempt = take("limit-whitelist", parse_ranges)
        if exempt is None:
            exempt = take("limit-allowlist", parse_ranges)
        exempt_ranges = SourceRanges(exempt) if exempt else None
    if connections:
        values["conn_limit"] = ConnectionLimit(connections, exempt_ranges, defaults.limit_conn_status)
    if rps or rpm:
        multiplier = take("limit-burst-multiplier", parse_multiplier) or 5
        values["rate_limits"] = tuple(
            RequestRate(rate / per, rate * multiplier, exempt_ranges, defaults.limit_req_status)
            for rate, per in ((rps, 1.0), (rpm, 60.0)) if rate)

    # whitelist (allowlist) and denylist replace the ConfigMap's; block-cidrs always applies.
    allow = take("whitelist-source-range", parse_ranges)
    if allow is None:
        allow = take("allowlist-source-range", parse_ranges)
    deny = take("denylist-source-range", parse_ranges)
    allow = defaults.allow if allow is None else allow
    deny = (defaults.deny if deny is None else deny) + defaults.block
    if allow or deny:
        values["ranges"] = SourceRanges(allow, deny)

    if take("enable-cors", parse_bool):
        cors: dict[str, object] = {}
        for name, parse, key in (("cors-allow-origin", parse_origins, "origins"),
                                 ("cors-allow-methods", parse_methods, "methods"),
                                 ("cors-allow-headers", parse_header_list, "headers"),
                                 ("cors-expose-headers", parse_header_list, "expose"),
                                 ("cors-allow-credentials", parse_bool, "credentials"),
                                 ("cors-max-age", parse_max_age, "max_age")):
            value = take(name, parse)
            if value is not None:
                cors[key] = value
        values["cors"] = Cors(**cors)

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
            entry = catalog.ANNOTATIONS.get(name)
            if catalog.reported(entry):
                warnings.append(catalog.describe("annotation", key, entry))
    base = defaults.options
    if not values:
        return base, warnings
    return RouteOptions(**{**_fields(base), **values}), warnings


def _parse_load_balance(value: str) -> str:
    method = value.strip().lower()
    if method in ("chash", "chashsubset", "sticky_balanced", "sticky_persistent"):
        raise ValueError(f"{method} is chosen by upstream-hash-by or affinity, not load-balance")
    if method not in lb.METHODS:
        raise ValueError("expected round_robin or ewma")
    return method


def _balancing(take, annotations, defaults: Defaults, values: dict, warnings: list) -> None:
    """load-balance, upstream-hash-by, affinity: cookie (+ session-cookie-*) and canary (+ canary-*)."""
    base = defaults.options
    method = take("load-balance", _parse_load_balance, "load_balance") or base.load_balance
    hash_by = take("upstream-hash-by", lb.parse_hash_by, "hash_by")
    subset = 0
    if hash_by is not None and take("upstream-hash-by-subset", parse_bool):
        subset = take("upstream-hash-by-subset-size", _parse_count) or 3
    affinity = None
    behavior = take("affinity-canary-behavior", lb.parse_canary_behavior) or "sticky"
    kind = take("affinity", _parse_affinity)
    if kind == "cookie":
        cookie: dict[str, object] = {"canary_behavior": behavior}
        for name, parse, key in (("session-cookie-name", lb.parse_cookie_name, "name"),
                                 ("affinity-mode", lb.parse_affinity_mode, "mode"),
                                 ("session-cookie-path", lb.parse_cookie_path, "path"),
                                 ("session-cookie-domain", lb.parse_cookie_domain, "domain"),
                                 ("session-cookie-expires", lb.parse_cookie_seconds, "expires"),
                                 ("session-cookie-max-age", lb.parse_cookie_seconds, "max_age"),
                                 ("session-cookie-secure", parse_bool, "secure"),
                                 ("session-cookie-samesite", lb.parse_samesite, "samesite"),
                                 ("session-cookie-conditional-samesite-none", parse_bool,
                                  "conditional_samesite_none"),
                                 ("session-cookie-change-on-failure", parse_bool, "change_on_failure")):
            value = take(name, parse)
            if value is not None:
                cookie[key] = value
        affinity = values["affinity"] = lb.CookieAffinity(**cookie)
        uses_regex = annotations.get(NGINX + "use-regex", "").strip().lower() == "true"
        if uses_regex and affinity.path is None:
            warnings.append(f"annotation {NGINX}session-cookie-path should be set when use-regex is true "
                            "(the cookie's path is the Ingress path as written)")
    balance = lb.make_balance(method, hash_by, affinity, subset)
    if balance is not None or "load_balance" in values:
        values["balance"] = balance

    enabled = take("canary", parse_bool)
    policy: dict[str, object] = {}
    for name, parse, key in (("canary-weight", lb.parse_weight, "weight"),
                             ("canary-weight-total", lb.parse_weight, "weight_total"),
                             ("canary-by-header", lb.parse_header_name, "header"),
                             ("canary-by-header-value", lb.parse_plain_value, "header_value"),
                             ("canary-by-header-pattern", lb.parse_pattern, "header_pattern"),
                             ("canary-by-cookie", lb.parse_header_name, "cookie")):
        value = take(name, parse)
        if value is not None:
            policy[key] = value
    if enabled:
        for key in ("header", "header_value", "cookie"):
            if key in policy:
                text = policy[key]
                policy[key] = (text.lower().replace("-", "_") if key == "header" else text).encode("latin-1")
        if "header_value" in policy and "header_pattern" in policy:
            del policy["header_pattern"]  # ingress-nginx: canary-by-header-value wins
        values["canary"] = lb.CanaryPolicy(**policy, sticky=behavior == "sticky")
    elif policy:
        warnings.append(f"annotation {NGINX}canary-* is set but {NGINX}canary is not \"true\"; "
                        "the Ingress is served as a normal one")


def _parse_affinity(value: str) -> str:
    if value.strip() != "cookie":
        raise ValueError('expected "cookie"')
    return "cookie"


def _fields(options: RouteOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in RouteOptions.__dataclass_fields__
            if name not in ("edits_request", "may_answer")}


def _parse_count(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError("expected a number")
    return int(value)


def _parse_on_off(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("on", "off"):
        raise ValueError('expected "on" or "off"')
    return lowered == "on"


_CIPHERS_RE = re.compile(r"^[A-Za-z0-9:+!@_=.-]+$")
_SECRET_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


_NEXT_UPSTREAM = {"error", "timeout", "invalid_header", "http_500", "http_502", "http_503", "http_504", "http_403",
                  "http_404", "http_429", "non_idempotent", "off"}


def _parse_next_upstream(value: str) -> frozenset:
    conditions = tuple(value.split())
    unknown = [c for c in conditions if c not in _NEXT_UPSTREAM]
    if unknown or not conditions:
        raise ValueError(f"unknown condition {unknown[0] if unknown else ''!r}; expected error, timeout, http_502 ...")
    return frozenset() if "off" in conditions else frozenset(conditions)


def _parse_seconds_or_zero(value: str) -> float:
    """proxy-next-upstream-timeout: whole seconds, 0 for no limit."""
    text = value.strip().removesuffix("s")
    if not text.isdigit():
        raise ValueError("expected a whole number of seconds (0: no limit)")
    return float(text)


def _parse_auth_type(value: str) -> str:
    kind = value.strip().lower()
    if kind not in ("basic", "digest"):
        raise ValueError('expected "basic" or "digest"')
    return kind


def _parse_auth_secret_type(value: str) -> str:
    kind = value.strip().lower()
    if kind not in ("auth-file", "auth-map"):
        raise ValueError('expected "auth-file" or "auth-map"')
    return kind


def _parse_realm(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) > 0x7e for c in value):
        raise ValueError("expected printable ASCII text")
    return value.strip()


def _parse_backend_protocol(value: str) -> str:
    protocol = value.strip().upper()
    if protocol not in ("HTTP", "HTTPS", "GRPC", "GRPCS", "AUTO_HTTP", "FCGI"):
        raise ValueError("expected HTTP, HTTPS, GRPC or GRPCS")
    return protocol


def _parse_secret_ref(value: str) -> str:
    if not _SECRET_RE.match(value.strip()):
        raise ValueError("expected NAMESPACE/NAME or NAME of a Secret")
    return value.strip()


def _parse_service_name(value: str) -> str:
    name = value.strip()
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name) or len(name) > 63:
        raise ValueError("expected the name of a Service in the Ingress's namespace")
    return name


def _parse_ciphers(value: str) -> str:
    if not _CIPHERS_RE.match(value.strip()):
        raise ValueError("expected an OpenSSL cipher list")
    return value.strip()


def parse_listener_ciphers(value: str) -> str:
    """ssl-ciphers (ConfigMap key or annotation): an OpenSSL cipher list selecting at least one
    TLS 1.2 suite (TLS 1.3's suites are OpenSSL's)."""
    value = value.strip()
    if not value or any(ord(c) < 0x20 or ord(c) > 0x7e for c in value):
        raise ValueError("expected an OpenSSL cipher list")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
    except ssl.SSLError:
        raise ValueError("OpenSSL selects no cipher from it") from None
    return value


def _parse_http_version(value: str) -> str:
    if value.strip() not in ("1.0", "1.1"):
        raise ValueError('expected "1.0" or "1.1"')
    return value.strip()
