"""What changed between two configurations, small enough to send to worker processes.

Pickling a whole configuration of 10,000 Ingresses takes most of a second and unpickling it in
each worker a third of one: too slow for a change served within 100 ms. The incremental translator
(``incremental.py``) keeps every unchanged host's ``HostRoutes`` and every unchanged certificate
the very same object, so a change is found by identity: :func:`delta` lists the hosts whose routes
or certificate are different objects (or gone) and the other fields that are different objects;
:func:`apply_delta` rebuilds the new configuration from the worker's previous one.

>>> from ingressd.routing import HostRoutes, RouteTable
>>> old = Config(table=RouteTable())
>>> old.table.hosts["a.com"] = HostRoutes()
>>> new = dataclasses.replace(old, table=RouteTable(hosts=copy_map(old.table.hosts)), ingress_count=1)
>>> new.table.hosts["b.com"] = HostRoutes()
>>> d = delta(old, new)
>>> sorted(d.routes.exact), d.fields
(['b.com'], {'ingress_count': 1})
>>> rebuilt = apply_delta(old, d)
>>> sorted(rebuilt.table.hosts.exact), rebuilt.table.hosts.exact["a.com"] is old.table.hosts.exact["a.com"]
(['a.com', 'b.com'], True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import Config
from .hosts import HostMap
from .routing import RouteTable

_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in ("table", "certificates"))
_MISSING = object()
MAX_SHARE = 0.5  # more of the hosts changed than this: send the whole configuration


@dataclass
class MapDelta:
    """The entries of a HostMap that are new or different objects, and those removed."""

    exact: dict = field(default_factory=dict)
    wildcard: dict = field(default_factory=dict)
    removed_exact: tuple = ()
    removed_wildcard: tuple = ()

    def __len__(self) -> int:
        return len(self.exact) + len(self.wildcard) + len(self.removed_exact) + len(self.removed_wildcard)


@dataclass
class ConfigDelta:
    routes: MapDelta
    certificates: MapDelta
    any_host: object = _MISSING  # the table's any_host / default when they are different objects
    default: object = _MISSING
    fields: dict = field(default_factory=dict)  # other Config fields that are different objects

    def __getstate__(self):
        return (self.routes, self.certificates, self.any_host is _MISSING, None if self.any_host is _MISSING
                else self.any_host, self.default is _MISSING, None if self.default is _MISSING else self.default,
                self.fields)

    def __setstate__(self, state) -> None:
        self.routes, self.certificates, no_any, any_host, no_default, default, self.fields = state
        self.any_host = _MISSING if no_any else any_host
        self.default = _MISSING if no_default else default


def copy_map(source: HostMap) -> HostMap:
    copy = HostMap()
    copy.exact = dict(source.exact)
    copy.wildcard = dict(source.wildcard)
    return copy


def _diff(old: dict, new: dict) -> tuple[dict, tuple]:
    changed = {key: value for key, value in new.items() if old.get(key) is not value}
    removed = tuple(key for key in old.keys() - new.keys())
    return changed, removed


def _map_delta(old: HostMap, new: HostMap) -> MapDelta:
    exact, removed_exact = _diff(old.exact, new.exact)
    wildcard, removed_wildcard = _diff(old.wildcard, new.wildcard)
    return MapDelta(exact, wildcard, removed_exact, removed_wildcard)


def delta(old: Config, new: Config) -> ConfigDelta | None:
    """What makes ``new`` from ``old``; None when most of it changed (send ``new`` whole)."""
    routes = _map_delta(old.table.hosts, new.table.hosts)
    certificates = _map_delta(old.certificates, new.certificates)
    size = len(new.table.hosts) + len(new.certificates)
    if len(routes) + len(certificates) > MAX_SHARE * max(size, 1):
        return None
    result = ConfigDelta(routes, certificates)
    if new.table.any_host is not old.table.any_host:
        result.any_host = new.table.any_host
    if new.table.default is not old.table.default:
        result.default = new.table.default
    for name in _FIELDS:
        value = getattr(new, name)
        if value is not getattr(old, name):
            result.fields[name] = value
    return result


def _patched(base: HostMap, change: MapDelta) -> HostMap:
    patched = copy_map(base)
    for key in change.removed_exact:
        patched.exact.pop(key, None)
    for key in change.removed_wildcard:
        patched.wildcard.pop(key, None)
    patched.exact.update(change.exact)
    patched.wildcard.update(change.wildcard)
    return patched


def apply_delta(base: Config, change: ConfigDelta) -> Config:
    """The configuration ``change`` was computed for, from the one it was computed against."""
    table = RouteTable(hosts=_patched(base.table.hosts, change.routes),
                       any_host=base.table.any_host if change.any_host is _MISSING else change.any_host,
                       default=base.table.default if change.default is _MISSING else change.default)
    return dataclasses.replace(base, table=table, certificates=_patched(base.certificates, change.certificates),
                               **change.fields)
