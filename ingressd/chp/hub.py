"""``ingressd serve --proxy-api ADDR:PORT``: JupyterHub's routes beside the Ingresses, in one ingressd.

An Ingress annotated ``ingressd.io/proxy-api: "true"`` hands its hosts to the Hub: the routes the
Hub adds through CHP's REST API (``/user/alice`` -> the user's server) are served under each of
those hosts, with the host's certificate and the Ingress's options (HTTPS redirect, timeouts,
allowed ranges ...). The longest path prefix wins across both; at equal length the Hub's route
wins, so the Hub's ``/`` replaces the Ingress's ``/`` while an Ingress path such as
``/services/grafana`` stays the Ingress's. With host routing (``--proxy-api-host-routing``, JupyterHub's
``subdomain_host``) a route ``/alice.hub.example.org/user/alice`` is served under that host only, if a
handing Ingress serves it (a wildcard ``*.hub.example.org`` rule hands every such host). Hosts no such Ingress names never see Hub routes; a
handing Ingress's rule without a host hands every host that has no rules of its own.

The overlay is pure (``overlay``): each new configuration from the translator, and each change of
the Hub's routes, gives a new immutable configuration that the data plane swaps in. With
``--workers N`` the workers' ``last_activity`` stamps are gathered every second (``sync``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from ..config import Config, Snapshot
from ..objects import Ingress
from ..routing import UNDEFINED_HOST, Backend, HostRoutes, Route, RouteTable
from .routes import CHP_NAMESPACE, MAX_ROUTE_LABELS, ProxyRoutes, _options_for

log = logging.getLogger("ingressd.chp")

PROXY_API_ANNOTATION = "ingressd.io/proxy-api"
SYNC_INTERVAL = 1.0  # seconds between gatherings of the workers' activity


def handing_ingresses(snapshot: Snapshot) -> frozenset[tuple[str, str]]:
    """(namespace, name) of the Ingresses that hand their hosts to the Hub."""
    return frozenset((obj.meta.namespace, obj.meta.name) for obj in snapshot.objects
                     if isinstance(obj, Ingress)
                     and obj.meta.annotations.get(PROXY_API_ANNOTATION, "").strip().lower() == "true")


def _template(routes: HostRoutes, handing: frozenset) -> Route | None:
    """The handing Ingress's route that Hub routes take their options from: its ``/``, else any."""
    candidates = [routes.prefix.get(""), routes.fallback, *routes.prefix.values(), *routes.exact.values()]
    for route in candidates:
        if route is not None and (route.namespace, route.ingress) in handing:
            return route
    return None


def overlay(config: Config, handing: frozenset, store: ProxyRoutes) -> Config:
    """``config`` with the Hub's routes under every host a handing Ingress serves (with the store's
    host routing, a ``/HOST/path`` route under HOST only, if a handing Ingress serves HOST)."""
    if not handing:
        return config
    base = config.table
    shared, by_host = _split(store)
    hosts = type(base.hosts)()
    hosts.exact, hosts.wildcard = dict(base.hosts.exact), dict(base.hosts.wildcard)
    changed = False
    for pattern, routes in base.hosts.items():
        template = _template(routes, handing)
        if template is not None and shared:
            hosts[pattern] = _merged(pattern, routes, template, shared, store)
            changed = True
    any_host = base.any_host
    template = _template(any_host, handing) if any_host is not None else None
    if template is not None and shared:  # rules without a host: the Hub's routes for every other host too
        any_host = _merged("", any_host, template, shared, store)
        changed = True
    for host, entries in by_host.items():
        original = base.hosts.get(host) or base.any_host  # what serves the host: its name, a wildcard, no host
        template = _template(original, handing) if original is not None else None
        if template is None:
            continue  # a host no handing Ingress serves: not the Hub's to route
        current = hosts.get(host) or any_host  # with the shared routes merged in above
        hosts[host] = _merged(host, current, template, entries, store)
        changed = True
    if not changed:
        return config
    table = RouteTable(hosts=hosts, any_host=any_host, default=base.default)
    return replace(config, table=table)


def _split(store: ProxyRoutes) -> tuple[list, dict[str, list]]:
    """The Hub's routes as (path, route) entries: those for every handed host, and by host
    (``/HOST/path`` routes under host routing)."""
    shared: list = []
    by_host: dict[str, list] = {}
    for proxy_route in sorted(store.routes.values(), key=lambda r: r.path):
        path = proxy_route.path
        if store.host_routing and path != "/":
            host, _, rest = path[1:].partition("/")
            by_host.setdefault(host.lower(), []).append(("/" + rest, proxy_route))
        else:
            shared.append((path, proxy_route))
    return shared, by_host


def _merged(host: str, routes: HostRoutes, template: Route, entries: list, store: ProxyRoutes) -> HostRoutes:
    options = replace(template.options, rewrite=None, rewrite_target=None, redirect=None, app_root=None,
                      use_regex=False, static=None)
    cache: dict = {}
    prefix = dict(routes.prefix)
    for index, (path, proxy_route) in enumerate(entries):
        target = proxy_route.target
        labelled = index < MAX_ROUTE_LABELS
        key = path.rstrip("/")
        prefix[key] = Route(
            host, path, "Prefix", namespace=template.namespace, ingress=template.ingress,
            backend=Backend(CHP_NAMESPACE, target.host, str(target.port), ((target.host, target.port),)),
            options=_options_for(store, options, target, path, cache), https_redirect=template.https_redirect,
            labels=(template.namespace, template.ingress, target.host if labelled else "_", host or UNDEFINED_HOST,
                    proxy_route.path if labelled else "_"),
            activity=proxy_route.activity)
    return HostRoutes(exact=routes.exact, prefix=prefix, fallback=routes.fallback, tls=routes.tls,
                      regex=routes.regex)


class HubRoutes:
    """The Hub's route store and REST API inside ``ingressd serve``; ``apply`` stands between the
    translator and the data plane."""

    def __init__(self, plane, token: str | None, host_routing: bool = False):
        from .server import ProxyAPI

        self.plane = plane
        self.store = ProxyRoutes(host_routing=host_routing)
        self.api = ProxyAPI(self.store, token, self._changed)
        self.base: Config | None = None
        self.handing: frozenset = frozenset()
        self._server: asyncio.AbstractServer | None = None
        self._sync: asyncio.Task | None = None

    def apply(self, config: Config, snapshot: Snapshot) -> Config:
        """The configuration to serve for the translator's ``config``."""
        self.base = config
        handing = handing_ingresses(snapshot)
        if handing != self.handing:
            log.info("hosts handed to the proxy API by %s", ", ".join(f"{ns}/{name}" for ns, name in sorted(handing))
                     or "no Ingress")
        self.handing = handing
        return overlay(config, handing, self.store)

    def _changed(self) -> None:
        if self.base is not None:
            self.plane.apply(overlay(self.base, self.handing, self.store))

    async def start(self, host: str | None, port: int) -> None:
        from .server import APIConnection

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: APIConnection(self.api), host, port, reuse_address=True)
        self._sync = loop.create_task(self._sync_activity())
        log.info("proxy API (configurable-http-proxy's) on %s:%d", host or "*", port)

    async def _sync_activity(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self.sync()
            except Exception:  # never let a bookkeeping error stop the API
                log.exception("gathering last_activity from the workers failed")

    async def sync(self) -> None:
        """Fold the data plane's activity stamps (workers' too) into the store."""
        gather = getattr(self.plane, "gather_activity", None)
        if gather is not None:
            self.store.observe(await gather())
        self.store.sample()

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.cancel()
        if self._server is not None:
            self._server.close()
