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
from .objects import KubeObject
from .routing import RouteTable

CONTROLLER_NAME = "ingressd.io/ingress-controller"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every object a source currently holds, plus what went wrong reading them."""

    objects: tuple[KubeObject, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    version: str = ""  # changes whenever the source's content changes


@dataclass(frozen=True, slots=True)
class Settings:
    """The command-line choices that shape translation."""

    ingress_classes: tuple[str, ...] = ("ingressd",)
    default_backend_service: str | None = None  # "namespace/name:port"
    default_ssl_certificate: str | None = None  # "namespace/secret"


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
