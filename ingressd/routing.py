"""The compiled route table and its lookup: the one piece of routing that runs per request.

Lookup costs one dict probe for the host (two for a wildcard, see ``hosts.HostMap``) plus one per path element: the
table is built once per configuration so that requests do no sorting, no regexes and no loops
over rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from .annotations import DEFAULT_OPTIONS, RouteOptions
from .hosts import HostMap

ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
UNDEFINED_HOST = "_"  # the host label of requests for hosts no Ingress defines (nginx's catch-all name)


@dataclass(frozen=True, slots=True, eq=False)
class Backend:
    """A Service port resolved to the addresses that serve it (or the reason nothing does)."""

    namespace: str
    service: str
    port: str
    endpoints: tuple[tuple[str, int], ...] = ()
    error: str | None = None  # why requests get 503; None when endpoints are usable
    orphan: str = ""  # "no-service" or "no-endpoint" when ``error`` is set, as ingress-nginx reports it

    @property
    def name(self) -> str:
        """ingress-nginx's upstream name, which logs and dashboards show."""
        return f"{self.namespace}-{self.service}-{self.port}"


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    host: str  # "" for rules without host and for the default backend
    path: str  # the rule's path as written ("" for the default backend)
    path_type: str
    namespace: str = ""
    ingress: str = ""
    backend: Backend | None = None  # None: the built-in 404 default backend
    options: RouteOptions = DEFAULT_OPTIONS
    https_redirect: bool = False  # plain-HTTP requests get a 308 to HTTPS
    labels: tuple[str, ...] = field(default=())  # metric labels: namespace, ingress, service, host, path
    # Set on JupyterHub proxy-API routes only (ingressd.chp.routes.Activity): the recorder stamps it
    # for each finished exchange, so the API can report last_activity. None costs one check.
    activity: object | None = None
    # Requests are proxied unless they carry an ACME challenge path or a body past the limit:
    # policy.answer_for has nothing else to answer here, so the request path skips it.
    plain: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        backend = self.backend
        object.__setattr__(self, "plain", not self.options.may_answer and not self.https_redirect
                           and backend is not None and backend.error is None)

    @property
    def service(self) -> str:
        return self.backend.service if self.backend else ""


@dataclass(slots=True, eq=False)
class HostRoutes:
    exact: dict[str, Route] = field(default_factory=dict)
    prefix: dict[str, Route] = field(default_factory=dict)  # keyed without trailing "/" ("" is "/")
    fallback: Route | None = None  # serves paths no rule matches
    tls: bool = False
    # use-regex / rewrite-target hosts: (RE2 regex anchored at the start, route), longest path first.
    regex: tuple = ()
    ssl_ciphers: str | None = None  # the oldest Ingress's ssl-ciphers annotation for this host

    def match(self, path: str) -> Route | None:
        route = self.exact.get(path)
        if route is not None:
            return route
        if self.regex:
            try:
                for regex, route in self.regex:
                    if regex.match(path) is not None:
                        return route
            except UnicodeEncodeError:  # undecodable bytes in the path: no regex matches it
                pass
        prefix = self.prefix
        if prefix:
            candidate = path.rstrip("/")
            while True:
                route = prefix.get(candidate)
                if route is not None:
                    return route
                if not candidate:
                    return None
                candidate = candidate[:candidate.rfind("/")]
        return None


@dataclass(slots=True, eq=False)
class RouteTable:
    hosts: HostMap[HostRoutes] = field(default_factory=HostMap)  # by host pattern, wildcards included
    any_host: HostRoutes | None = None  # rules without a host
    default: Route = field(default_factory=lambda: Route("", "", "Default"))

    def lookup(self, host: str, path: str) -> Route:
        """The route for a request; ``host`` lower-case without port, ``path`` normalized."""
        routes = self.hosts.get(host)
        if routes is None:
            routes = self.any_host
            if routes is None:
                return self.default
        route = routes.match(path)
        if route is None:
            return routes.fallback or self.default
        return route

    def routes(self) -> list[Route]:
        """Every rule route, for listings: hosts sorted (wildcards after names), then the host-less rules."""
        result = []
        for _, routes in self.hosts.items():
            result += _host_listing(routes)
        if self.any_host:
            result += _host_listing(self.any_host)
        return result


def _host_listing(routes: HostRoutes) -> list[Route]:
    found = list(routes.exact.values()) + list(routes.prefix.values()) + [route for _, route in routes.regex]
    return sorted(found, key=lambda r: (r.path, r.path_type))


def normalize_path(path: str) -> str | None:
    """The path as nginx matches it: percent-decoded, slashes merged, dot segments resolved.

    Returns None for a path that climbs above the root (a client error). The request line sent
    upstream is not changed; this only decides which route serves it.
    """
    if "%" not in path and "/." not in path and "//" not in path:
        return path
    if "%" in path:
        path = unquote(path, errors="surrogateescape")
    segments: list[str] = []
    for segment in path.split("/")[1:]:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                return None
            segments.pop()
            continue
        segments.append(segment)
    trailing = path.endswith(("/", "/.", "/..")) and segments
    return "/" + "/".join(segments) + ("/" if trailing else "")

