"""What the translator consumes (a snapshot of objects, settings) and produces (a configuration).

All three are immutable values: the control plane builds a new ``Config`` for every change and the
data plane swaps its single reference to it, so a request sees either the old or the new
configuration, never a mix, and open connections are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .certs import Certificate
from .diagnostics import Diagnostic
from .hosts import HostMap
from .objects import KubeObject, ObjectKey
from .routing import RouteTable

CONTROLLER_NAME = "ingressd.io/ingress-controller"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every object a source currently holds, plus what went wrong reading them.

    Keys (``obj.meta.key``: kind, namespace, name) are unique. A source keeps an object that did
    not change as the *same* Python object from one snapshot to the next, and says which keys
    changed since the snapshot it handed out before (``since``/``changed``), so that work can be
    limited to what changed (:meth:`changes_since`)."""

    objects: tuple[KubeObject, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    version: str = ""  # changes whenever the source's content changes
    since: str | None = None  # the version of the snapshot ``changed`` is relative to
    changed: frozenset[ObjectKey] = frozenset()  # keys added, changed or removed since then
    _index: dict | None = field(default=None, compare=False, repr=False)

    @property
    def by_key(self) -> dict[ObjectKey, KubeObject]:
        """The objects by ``meta.key`` (built once per snapshot; do not modify)."""
        index = self._index
        if index is None:
            index = {obj.meta.key: obj for obj in self.objects}
            object.__setattr__(self, "_index", index)
        return index

    def changes_since(self, previous: "Snapshot | None") -> frozenset[ObjectKey] | None:
        """The keys whose object was added, changed or removed since ``previous``; None when
        unknown (no previous snapshot: everything is new)."""
        if previous is None:
            return None
        if previous is self or (previous.version and previous.version == self.version):
            return frozenset()
        if self.since is not None and self.since == previous.version:
            return self.changed
        old, new = previous.by_key, self.by_key  # unrelated snapshots: compare by identity
        return frozenset({k for k, obj in new.items() if old.get(k) is not obj} | (old.keys() - new.keys()))


@dataclass(frozen=True, slots=True)
class Settings:
    """The command-line choices that shape translation."""

    ingress_classes: tuple[str, ...] = ("ingressd",)
    default_backend_service: str | None = None  # "namespace/name:port"
    default_ssl_certificate: str | None = None  # "namespace/secret"
    # Serve Ingresses that name no class when no default IngressClass says otherwise. On for the
    # manifest directory; in a cluster ingress-nginx's --watch-ingress-without-class (off by default).
    watch_ingress_without_class: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    table: RouteTable
    certificates: HostMap[Certificate] = field(default_factory=HostMap)  # by host pattern (spec.tls hosts)
    default_certificate: Certificate | None = None  # from --default-ssl-certificate
    diagnostics: tuple[Diagnostic, ...] = ()
    ingress_count: int = 0
    orphans: tuple[tuple[str, str, str], ...] = ()  # (namespace, ingress, "no-service" | "no-endpoint")

    def certificate_for(self, host: str) -> Certificate | None:
        return self.certificates.get(host)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]
