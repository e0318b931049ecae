"""CHP's routes: a path-prefix store with CHP's semantics, compiled into ingressd's route table.

configurable-http-proxy keeps routes in a trie of path segments: a route ``/user/alice`` serves
``/user/alice`` and everything below it, the longest prefix wins, ``/`` is the root. With
``--host-routing`` the first segment is the host (``/hub.example.org/user/alice``). Each route holds
the JSON object the Hub posted (``target`` plus any keys of its own, returned unchanged) and a
``last_activity`` time.

Nothing here runs per request: ``compile_table`` turns the store into a ``RouteTable`` whose
element-wise prefix lookup is exactly the trie's longest-prefix match, and the data plane serves
it. Activity flows back through one ``Activity`` object per route, which the data plane's recorder
stamps (see ``ingressd.dataplane.stats.Recorder.record``) and ``last_activity`` reads.
"""

from __future__ import annotations

import email.utils
import re
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from time import monotonic
from dataclasses import replace

from ..annotations import RouteOptions
from ..routing import Backend, HostRoutes, Route, RouteTable, UNDEFINED_HOST
from .targets import RouteError, Target, TargetTLS, path_edit

__all__ = ["RouteError", "Target", "ProxyRoutes", "Forwarding", "compile_table", "route_options"]

HEALTH_PATH = "/_chp_healthz"  # CHP answers it itself, on every host, before routing
HEALTH_ANSWER = (200, b"application/json", b'{"status": "OK"}')
CHP_NAMESPACE = "chp"  # the namespace label of CHP routes in metrics and listings
MAX_ROUTE_LABELS = 1000  # routes with their own metric labels; further routes share one label


def clean_path(path: str | None) -> str:
    """A leading ``/``, no trailing ``/`` (except the root itself): what CHP's API does to a route's
    path (its ``cleanPath``, applied twice on the way in, so ``/a//`` is ``/a`` too)."""
    path = path or "/"
    if not path.startswith("/"):
        path = "/" + path
    path = path.rstrip("/")
    return path or "/"


def format_time(wall: float) -> str:
    """ISO 8601 UTC with milliseconds, as JavaScript's ``Date.toISOString`` (CHP's JSON) writes it."""
    stamp = datetime.fromtimestamp(wall, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


_YEAR_MONTH = re.compile(r"^([+-]\d{6}|\d{4})(?:-(\d{2}))?$")


def parse_time(value: str) -> float | None:
    """A time as JavaScript's ``Date.parse`` (CHP's ``inactive_since``) reads it, as a Unix time, or
    None when it does not parse: ISO 8601 (``Z`` or an offset; naive means UTC), a year or
    year-month alone (``2100``, ``2100-01``), and RFC 2822 dates (``Fri, 01 Jan 2100 00:00:00 GMT``)."""
    text = value.strip()
    short = _YEAR_MONTH.match(text)
    if short is not None:
        try:
            return datetime(int(short.group(1)), int(short.group(2) or 1), 1, tzinfo=timezone.utc).timestamp()
        except ValueError:
            return None
    if "," in text or text[:3].isalpha():
        try:
            stamp = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


class Activity:
    """When a route last served: stamped by the data plane, read by the API.

    ``last`` is a ``time.monotonic()`` value (the recorder's clock, so the request path makes no
    extra clock call; the same clock in every process of the machine). Open websockets are kept in
    ``tunnels`` (connection -> bytes seen) and sampled by ``sample_tunnels``: traffic in either
    direction counts, at the sampler's granularity, with no per-chunk work in the data plane.

    Pickled (to ``--workers`` processes) as its ``key``, the route's path: each worker keeps one
    object per key across configurations (``_ACTIVITIES``), so a websocket opened under one
    configuration still counts under the next, and ``activity_stamps`` reports them back.
    """

    __slots__ = ("last", "tunnels", "key", "__weakref__")

    def __init__(self, last: float, key: str = ""):
        self.last = last
        self.tunnels: dict = {}
        self.key = key

    def __reduce__(self):
        return _activity_for, (self.key, self.last)

    def seen(self, exchange, now: float) -> None:
        """A finished exchange on this route (called by the recorder)."""
        status = exchange.status
        if status < 300:  # as CHP: failures and redirects are not activity
            self.last = now
        if status == 101:
            self.tunnels[exchange.conn] = 0

    def sample_tunnels(self, now: float) -> None:
        tunnels = self.tunnels
        for conn, seen in list(tunnels.items()):
            moved = conn.tunnel_in + conn.tunnel_out
            if moved != seen:
                tunnels[conn] = moved
                self.last = now
            if conn.tunnel is None:  # closed: its last bytes are counted above
                del tunnels[conn]


_ACTIVITIES: "weakref.WeakValueDictionary[str, Activity]" = weakref.WeakValueDictionary()


def _activity_for(key: str, last: float) -> Activity:
    """The process's Activity for ``key`` (see ``Activity``), created on first use."""
    activity = _ACTIVITIES.get(key)
    if activity is None:
        activity = _ACTIVITIES[key] = Activity(last, key)
    elif last > activity.last:
        activity.last = last
    return activity


def activity_stamps() -> dict[str, float]:
    """This process's activity by route path, open websockets' traffic folded in (for the workers'
    report to the control plane)."""
    now = monotonic()
    stamps = {}
    for key, activity in list(_ACTIVITIES.items()):
        if activity.tunnels:
            activity.sample_tunnels(now)
        stamps[key] = activity.last
    return stamps


@dataclass(eq=False)
class ProxyRoute:
    path: str  # cleaned, as CHP keys it
    data: dict  # what the Hub posted (target and its own keys), plus "host" under --host-routing
    activity: Activity
    created: float = field(default_factory=time.time)  # wall clock, with ``activity`` at creation
    created_mono: float = field(default_factory=monotonic)
    target: Target | None = None  # data["target"], parsed once
    compiled: tuple | None = None  # (options, labelled, Route): compile_routes reuses it while they hold

    def last_activity(self) -> float:
        """The Unix time of the last activity (the time the route was added if none since)."""
        return self.created + (self.activity.last - self.created_mono)


@dataclass(frozen=True)
class Forwarding:
    """How requests reach targets: CHP's --no-prepend-path, --no-include-prefix and --insecure."""

    prepend_path: bool = True  # the target's own path goes in front of the request's
    include_prefix: bool = True  # the route's prefix stays in the request path
    insecure: bool = False  # https targets' certificates are not checked


class ProxyRoutes:
    """The store behind the REST API: CHP's MemoryStore (routes by cleaned path)."""

    def __init__(self, host_routing: bool = False, forwarding: Forwarding = Forwarding()):
        self.host_routing = host_routing
        self.forwarding = forwarding
        self.routes: dict[str, ProxyRoute] = {}
        self.version = 0  # bumped on every change
        self.tls: dict[str, TargetTLS] = {}  # per https target host: one context, one upstream pool key

    def add(self, path: str, data: dict) -> ProxyRoute:
        path = clean_path(path)
        target = Target.parse(data["target"])  # refused before anything changes
        data = dict(data)
        if self.host_routing and path != "/":
            data["host"] = path.split("/")[1]
        old = self.routes.get(path)
        route = ProxyRoute(path, data, old.activity if old else Activity(monotonic(), path), target=target)
        if old is not None:  # CHP stamps last_activity on every add
            route.activity.last = route.created_mono
        self.routes[path] = route
        self.version += 1
        return route

    def get(self, path: str | None) -> ProxyRoute | None:
        return self.routes.get(clean_path(path))

    def remove(self, path: str | None) -> ProxyRoute | None:
        route = self.routes.pop(clean_path(path), None)
        if route is not None:
            self.version += 1
        return route

    def observe(self, stamps: dict[str, float]) -> None:
        """Activity seen elsewhere (worker processes), by route path: the latest counts."""
        for path, last in stamps.items():
            route = self.routes.get(path)
            if route is not None and last > route.activity.last:
                route.activity.last = last

    def sample(self) -> None:
        """Fold websocket traffic since the last call into ``last_activity``."""
        now = monotonic()
        for route in self.routes.values():
            if route.activity.tunnels:
                route.activity.sample_tunnels(now)

    def lookup(self, path: str) -> ProxyRoute | None:
        """The trie's answer for a request path (``/host/path`` under --host-routing): the longest
        segment-wise prefix. For tests and listings; requests use ``compile_table``'s table."""
        parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
        for end in range(len(parts), -1, -1):
            route = self.routes.get("/" + "/".join(parts[:end]))
            if route is not None:
                return route
        return None


def route_options(proxy_timeout: float | None, *, headers: tuple = (), x_forward: bool = True,
                  error_pages=None, timeout: float | None = None) -> RouteOptions:
    """CHP's per-request behaviour: no body limit; the target's reply awaited for --proxy-timeout
    (else --timeout, CHP's idle limit on the client's socket, which an unanswered request also
    reaches; else no limit); --custom-header lines; X-Forwarded-* unless --no-x-forward."""
    wait = proxy_timeout or timeout or 24 * 3600.0
    return RouteOptions(body_size_limit=None, read_timeout=wait, send_timeout=wait, ssl_redirect=False,
                        request_headers=headers, x_forward=x_forward, error_pages=error_pages)


def _options_for(store: ProxyRoutes, base: RouteOptions, target: Target, prefix: str,
                 cache: dict) -> RouteOptions:
    """``base`` with what this route's target needs: a path edit, TLS (one object per distinct need)."""
    forwarding = store.forwarding
    edit = path_edit(target, prefix, prepend_path=forwarding.prepend_path, include_prefix=forwarding.include_prefix)
    tls = None
    if target.scheme == "https":
        tls = store.tls.get(target.host)
        if tls is None:
            tls = store.tls[target.host] = TargetTLS(target.host, forwarding.insecure)
    if edit is None and tls is None:
        return base
    key = (edit, target.host if tls else None)
    options = cache.get(key)
    if options is None:
        options = cache[key] = replace(base, path_edit=edit, upstream_tls=tls)
    return options


def compile_routes(store: ProxyRoutes, options: RouteOptions) -> tuple[HostRoutes, dict[str, HostRoutes], Route | None]:
    """The store as ingressd routes: (routes for any host, routes per host under --host-routing,
    the root route or None)."""
    any_host = HostRoutes()
    by_host: dict[str, HostRoutes] = {}
    root = None
    cache: dict = {}
    for index, proxy_route in enumerate(sorted(store.routes.values(), key=lambda r: r.path)):
        path = proxy_route.path
        host = ""
        rest = path
        if store.host_routing and path != "/":
            host, _, rest = path[1:].partition("/")
            host = host.lower()
            rest = "/" + rest
        labelled = index < MAX_ROUTE_LABELS
        compiled = proxy_route.compiled
        if compiled is not None and compiled[0] is options and compiled[1] == labelled:
            route = compiled[2]  # unchanged since the last compile: a route change costs O(1) routes
        else:
            target = proxy_route.target
            backend = Backend(CHP_NAMESPACE, target.host, str(target.port), ((target.host, target.port),))
            route = Route(host, path, "Prefix", namespace=CHP_NAMESPACE, ingress="chp", backend=backend,
                          options=_options_for(store, options, target, rest, cache),
                          labels=(CHP_NAMESPACE, "chp", target.host if labelled else "_", host or UNDEFINED_HOST,
                                  path if labelled else "_"),
                          activity=proxy_route.activity)
            proxy_route.compiled = (options, labelled, route)
        if path == "/":
            root = route
            continue
        routes = by_host.setdefault(host, HostRoutes()) if host else any_host
        routes.prefix["" if rest == "/" else rest.rstrip("/")] = route
    return any_host, by_host, root


def health_route(host: str = "") -> Route:
    """CHP's /_chp_healthz, answered by ingressd itself."""
    return Route(host, HEALTH_PATH, "Exact", namespace=CHP_NAMESPACE, ingress="chp",
                 options=RouteOptions(static=HEALTH_ANSWER, ssl_redirect=False),
                 labels=(CHP_NAMESPACE, "chp", "", host or UNDEFINED_HOST, HEALTH_PATH))


def compile_table(store: ProxyRoutes, options: RouteOptions, not_found: Route | None = None) -> RouteTable:
    """A route table serving exactly the store (``ingressd chp``): /_chp_healthz, longest prefix,
    then the root route, then ``not_found`` (CHP's 404, with ``options``' error pages)."""
    any_host, by_host, root = compile_routes(store, options)
    default = root or not_found or Route("", "", "Default", options=options,
                                         labels=(CHP_NAMESPACE, "chp", "", UNDEFINED_HOST, ""))
    table = RouteTable(default=default)
    any_host.fallback = default
    any_host.exact[HEALTH_PATH] = health_route()
    table.any_host = any_host
    for host, routes in by_host.items():
        routes.fallback = default
        routes.exact[HEALTH_PATH] = health_route(host)
        table.hosts[host] = routes
    return table
