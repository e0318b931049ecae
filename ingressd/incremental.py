"""Incremental translation: recompile only the hosts a change touches.

:func:`~ingressd.translate.translate` is pure and compiles a whole snapshot; with 10,000 Ingresses
that takes about a second. :class:`Translator` gives the same result for a snapshot that differs
little from the previous one by translating only a *closure* of Ingresses and merging it into the
previous configuration:

1. The seeds: the Ingresses that changed (before and after), and the Ingresses whose backends or TLS
   Secrets are Services, EndpointSlices or Secrets that changed.
2. The closure: every Ingress sharing a host (rule or TLS host) with an Ingress in it, transitively.
   Each host's routes depend only on the Ingresses naming it (oldest wins, regex hosts, TLS), so
   translating the closure alone gives, for its hosts, exactly what a full translation gives.
3. The merge: the closure's hosts (before and after) replaced in copies of the previous host maps;
   every other host keeps its very same ``HostRoutes`` and ``Route`` objects (and metric labels).

Anything with effects across hosts falls back to a full translation: other settings, an
IngressClass or ConfigMap changed, wildcard hosts in the closure, ``spec.defaultBackend`` or
``server-alias``/``from-to-www-redirect`` on a changed Ingress (or aliases anywhere), a Secret the
annotations read, the default certificate's Secret, or a change touching a large part of the
snapshot. The equivalence with :func:`translate` is tested on random edits
(``tests/unit/test_incremental.py``).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from .config import Config, Settings, Snapshot
from .hosts import HostMap, is_wildcard, parent
from .objects import ConfigMap, EndpointSlice, Ingress, IngressClass, ObjectKey, Secret, Service
from .routing import RouteTable
from .translate import is_served, translate

_ALIAS_ANNOTATIONS = ("nginx.ingress.kubernetes.io/server-alias", "nginx.ingress.kubernetes.io/from-to-www-redirect")
FULL_FRACTION = 0.25  # a closure larger than this share of the Ingresses: translate everything


def _hosts(ingress: Ingress) -> set[str]:
    hosts = {rule.host for rule in ingress.rules}
    for entry in ingress.tls:
        hosts.update(entry.hosts)
    return hosts


def _services(ingress: Ingress) -> set[tuple[str, str]]:
    """The Services an Ingress's routes use (an annotation that names a Service must add it here)."""
    namespace = ingress.meta.namespace
    return {(namespace, path.backend.service) for rule in ingress.rules for path in rule.paths}


def _secrets(ingress: Ingress) -> set[tuple[str, str]]:
    return {(ingress.meta.namespace, entry.secret_name) for entry in ingress.tls if entry.secret_name}


def _has_aliases(ingress: Ingress) -> bool:
    annotations = ingress.meta.annotations
    return any(name in annotations for name in _ALIAS_ANNOTATIONS)


class _Index:
    """Who names what: hosts, Services and TLS Secrets to the Ingresses naming them (all Ingresses,
    served or not: whether one is served depends only on IngressClasses, which force a full pass)."""

    def __init__(self, snapshot: Snapshot):
        self.by_host: dict[str, set[ObjectKey]] = defaultdict(set)
        self.by_service: dict[tuple[str, str], set[ObjectKey]] = defaultdict(set)
        self.by_secret: dict[tuple[str, str], set[ObjectKey]] = defaultdict(set)
        self.defaults: set[ObjectKey] = set()  # Ingresses with spec.defaultBackend
        self.aliases: set[ObjectKey] = set()  # Ingresses with server-alias / from-to-www-redirect
        self.ingresses = 0
        for obj in snapshot.objects:
            if isinstance(obj, Ingress):
                self.add(obj)

    def add(self, ingress: Ingress) -> None:
        key = ingress.meta.key
        self.ingresses += 1
        for host in _hosts(ingress):
            self.by_host[host].add(key)
        for service in _services(ingress):
            self.by_service[service].add(key)
        for secret in _secrets(ingress):
            self.by_secret[secret].add(key)
        if ingress.default_backend is not None:
            self.defaults.add(key)
        if _has_aliases(ingress):
            self.aliases.add(key)

    def remove(self, ingress: Ingress) -> None:
        key = ingress.meta.key
        self.ingresses -= 1
        for index, names in ((self.by_host, _hosts(ingress)), (self.by_service, _services(ingress)),
                             (self.by_secret, _secrets(ingress))):
            for name in names:
                keys = index.get(name)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[name]
        self.defaults.discard(key)
        self.aliases.discard(key)


class _Others:
    """A snapshot's objects other than Ingresses, as the sub-translations take them: Services and
    EndpointSlices by namespace (in snapshot order), everything else, and the IngressClasses."""

    def __init__(self, snapshot: Snapshot):
        self.backends: dict[str, list] = defaultdict(list)
        self.cluster_wide: list = []
        self.classes: dict[str, IngressClass] = {}
        for obj in snapshot.objects:
            if isinstance(obj, Ingress):
                continue
            if isinstance(obj, (Service, EndpointSlice)):
                self.backends[obj.meta.namespace].append(obj)
            else:
                self.cluster_wide.append(obj)
                if isinstance(obj, IngressClass):
                    self.classes[obj.meta.name] = obj


class Translator:
    """``translate`` with memory: ``Translator(settings).translate(snapshot)`` per change.

    Not thread-safe: one caller at a time (the control plane translates one snapshot after another).
    ``last_mode`` says how the last call went ("full" or "incremental: N Ingresses, M hosts").
    """

    def __init__(self, settings: Settings = Settings()):
        self.settings = settings
        self._snapshot: Snapshot | None = None
        self._config: Config | None = None
        self._index: _Index | None = None
        self._others: _Others | None = None
        self.last_mode = ""

    def is_small(self, snapshot: Snapshot, limit: int = 50) -> bool:
        """Whether ``snapshot`` differs from the last one translated by at most ``limit`` Ingresses
        and nothing else (its translation then takes milliseconds: the caller may run it on the
        event loop). A Service, Secret or class that changed may concern every Ingress: not small."""
        if self._snapshot is None:
            return False
        changed = snapshot.changes_since(self._snapshot)
        return changed is not None and len(changed) <= limit and all(key[0] == "Ingress" for key in changed)

    def translate(self, snapshot: Snapshot, settings: Settings | None = None) -> Config:
        if settings is not None and settings != self.settings:
            self.settings, self._snapshot = settings, None
        config = None
        if self._snapshot is not None:
            try:
                config = self._incremental(snapshot)
            except Exception:  # never worse than a full translation
                config = None
        if config is None:
            config = translate(snapshot, self.settings)
            self._index = _Index(snapshot)
            self._others = _Others(snapshot)
            self.last_mode = "full"
        self._snapshot, self._config = snapshot, config
        return config

    # --- the incremental pass ----------------------------------------------------------------

    def _incremental(self, snapshot: Snapshot) -> Config | None:
        previous, config, index = self._snapshot, self._config, self._index
        changed = snapshot.changes_since(previous)
        if changed is None:
            return None
        if not changed:  # the same objects; the source's diagnostics may differ (a file that broke)
            self.last_mode = "unchanged"
            if snapshot.diagnostics == previous.diagnostics:
                return config
            stale = set(previous.diagnostics)
            return dataclasses.replace(config, diagnostics=tuple(dict.fromkeys(
                [*snapshot.diagnostics, *(d for d in config.diagnostics if d not in stale)])))
        old, new = previous.by_key, snapshot.by_key
        settings = self.settings
        seeds: set[ObjectKey] = set()
        changed_refs: set[str] = set()
        default_cert = (settings.default_ssl_certificate or "").rpartition("/")
        default_service = (settings.default_backend_service or "").rpartition("/")
        for key in changed:
            for obj in (old.get(key), new.get(key)):
                if obj is None:
                    continue
                changed_refs.add(obj.meta.ref)
                if isinstance(obj, (IngressClass, ConfigMap)):
                    return None
                if isinstance(obj, Ingress):
                    if obj.default_backend is not None or _has_aliases(obj):
                        return None
                    seeds.add(key)
                elif isinstance(obj, (Service, EndpointSlice)):
                    service = obj.meta.name if isinstance(obj, Service) else obj.service_name
                    if (obj.meta.namespace, service) in self._global_services(default_service):
                        return None
                    seeds.update(index.by_service.get((obj.meta.namespace, service), ()))
                elif isinstance(obj, Secret):
                    if key in config.required or (obj.meta.namespace, obj.meta.name) == (
                            default_cert[0] or "default", default_cert[2]):
                        return None
                    seeds.update(index.by_secret.get((obj.meta.namespace, obj.meta.name), ()))
                else:
                    return None  # a kind this pass does not know (issuers...): be safe
        if index.aliases:
            return None
        for key in seeds:  # the index follows the new snapshot
            before, after = old.get(key), new.get(key)
            if before is not after:
                if isinstance(before, Ingress):
                    index.remove(before)
                if isinstance(after, Ingress):
                    index.add(after)
        closure, hosts = self._closure(seeds, old, new, index)
        if closure is None:
            self._index = None  # rebuilt by the full pass
            return None
        # The sub-snapshot: the closure, the default-backend Ingresses (they decide every host's
        # fallback), and every other kind (Services, slices, Secrets, classes) as they are.
        # Services and EndpointSlices only of the namespaces those Ingresses are in (backends are
        # namespaced): the translator's index of them is most of the cost of a small change.
        extra = index.defaults - closure
        namespaces = {key[1] for key in closure | extra}
        namespaces.add(default_service[0] or "default")
        if any(key[0] != "Ingress" for key in changed):
            self._others = _Others(snapshot)  # one pass over the snapshot, only when more than Ingresses changed
        others = self._others
        # every kind translates from its own index, Ingresses in their age order: only the order of
        # each Service's EndpointSlices matters (endpoint order), and _Others keeps the snapshot's
        objects = [new[key] for key in closure | extra if isinstance(new.get(key), Ingress)]
        objects += others.cluster_wide
        for namespace in namespaces:
            objects += others.backends.get(namespace, ())
        sub = translate(Snapshot(objects=tuple(objects)), settings)
        return self._merge(snapshot, config, sub, closure, extra, hosts, changed_refs, old, new)

    def _global_services(self, default_service) -> set[tuple[str, str]]:
        found = set()
        if default_service[2]:
            found.add((default_service[0] or "default", default_service[2].partition(":")[0]))
        table_default = self._config.table.default
        if table_default.backend is not None and table_default.backend.service:
            found.add((table_default.backend.namespace, table_default.backend.service))
        return found

    def _closure(self, seeds, old, new, index):
        """The Ingresses connected to ``seeds`` through shared hosts, and their hosts (before and after)."""
        closure: set[ObjectKey] = set()
        hosts: set[str] = set()
        frontier = list(seeds)
        limit = max(50, int(index.ingresses * FULL_FRACTION))
        while frontier:
            key = frontier.pop()
            if key in closure:
                continue
            closure.add(key)
            if len(closure) > limit:
                return None, None
            for obj in (old.get(key), new.get(key)):
                if not isinstance(obj, Ingress):
                    continue
                for host in _hosts(obj):
                    if host in hosts:
                        continue
                    if is_wildcard(host):
                        return None, None
                    above = parent(host)
                    if above is not None and ("*." + above) in index.by_host:
                        return None, None  # a wildcard TLS or rule host covers it
                    hosts.add(host)
                    frontier.extend(index.by_host.get(host, ()))
        return closure, hosts

    def _merge(self, snapshot, config, sub, closure, extra, hosts, changed_refs, old, new) -> Config:
        table, previous_table = sub.table, config.table
        merged = HostMap()
        merged.exact = dict(previous_table.hosts.exact)
        merged.wildcard = dict(previous_table.hosts.wildcard)
        certificates = HostMap()
        certificates.exact = dict(config.certificates.exact)
        certificates.wildcard = dict(config.certificates.wildcard)
        any_host = previous_table.any_host
        for host in hosts:
            if not host:
                any_host = table.any_host
                continue
            for target, source in ((merged, table.hosts), (certificates, sub.certificates)):
                value = source.pattern_value(host)
                if value is None:
                    target.exact.pop(host, None)
                else:
                    target.exact[host] = value
        new_table = RouteTable(hosts=merged, any_host=any_host, default=previous_table.default)

        classes = self._others.classes  # an IngressClass that changed made this a full translation
        served_before = sum(1 for key in closure if isinstance(old.get(key), Ingress)
                            and is_served(old[key], classes, self.settings))
        served_extra = sum(1 for key in extra if is_served(new[key], classes, self.settings))
        ingress_count = config.ingress_count - served_before + sub.ingress_count - served_extra

        dropped = changed_refs | {obj.meta.ref for key in closure for obj in (old.get(key), new.get(key))
                                  if obj is not None}
        stale = set(self._snapshot.diagnostics)
        kept = [d for d in config.diagnostics if d not in stale and d.object not in dropped]
        diagnostics = tuple(dict.fromkeys([*snapshot.diagnostics, *kept, *sub.diagnostics]))

        names = {(key[1], key[2]) for key in closure}
        orphans = tuple(dict.fromkeys(
            [o for o in config.orphans if (o[0], o[1]) not in names]
            + [o for o in sub.orphans if (o[0], o[1]) in names]))
        self.last_mode = f"incremental: {len(closure)} Ingresses, {len(hosts)} hosts"
        return dataclasses.replace(config, table=new_table, certificates=certificates, diagnostics=diagnostics,
                                   ingress_count=ingress_count, orphans=orphans,
                                   required=config.required | sub.required)


