"""Ingress status: ``status.loadBalancer.ingress`` of every Ingress ingressd serves, as ingress-nginx
writes it. Only the leader writes (see :mod:`ingressd.kube.election`).

The addresses come from ``--publish-status-address`` (fixed, IPs or host names) or else from
``--publish-service NAMESPACE/NAME``: that Service's load-balancer addresses (ingress-nginx's rules:
a LoadBalancer Service's ``status.loadBalancer.ingress`` and ``externalIPs``, an ExternalName's
name, a ClusterIP's or NodePort's cluster IP, or its external IPs). Without either flag ingressd
writes no status.

:class:`StatusPlanner` is the sans-IO part: given the served Ingresses, the Ingresses present and
the addresses, it says which status to write, and only where it differs from what the Ingress has
(no write storms: a snapshot that changes nothing writes nothing). The caller performs the writes
(a merge patch of the ``status`` subresource) and reports them back.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..objects import Service

IngressKey = tuple[str, str]  # (namespace, name)

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, order=True)
class Address:
    """One entry of ``status.loadBalancer.ingress``: an IP or a host name."""

    ip: str = ""
    hostname: str = ""

    def to_dict(self) -> dict:
        return {"ip": self.ip} if self.ip else {"hostname": self.hostname}

    @classmethod
    def parse(cls, value: str) -> "Address":
        """``--publish-status-address``: an IP address or a DNS name."""
        value = value.strip()
        try:
            return cls(ip=str(ipaddress.ip_address(value)))
        except ValueError:
            pass
        name = value.lower().rstrip(".")
        if not _HOSTNAME_RE.match(name):
            raise ValueError(f"{value!r} is neither an IP address nor a host name")
        return cls(hostname=name)


Addresses = tuple[Address, ...]


def normalized(addresses: Iterable[Address]) -> Addresses:
    """Sorted, without duplicates: two equal sets compare equal (ingress-nginx sorts too)."""
    return tuple(sorted(set(addresses)))


def parse_status_addresses(values: Iterable[str]) -> Addresses:
    """The repeatable ``--publish-status-address`` flag; commas separate addresses too (ingress-nginx)."""
    return normalized(Address.parse(part) for value in values for part in value.split(",") if part.strip())


def from_status(status: object) -> Addresses:
    """An Ingress's (or Service's) ``status`` as the API returns it; malformed entries are skipped."""
    balancer = status.get("loadBalancer") if isinstance(status, dict) else None
    entries = balancer.get("ingress") if isinstance(balancer, dict) else None
    found = []
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            ip, hostname = entry.get("ip"), entry.get("hostname")
            if isinstance(ip, str) and ip:
                found.append(Address(ip=ip))
            elif isinstance(hostname, str) and hostname:
                found.append(Address(hostname=hostname))
    return normalized(found)


def service_addresses(service: Service) -> Addresses:
    """Where ``--publish-service`` is reachable, by the Service's type (ingress-nginx's rules)."""
    if service.type == "ExternalName":
        return (Address(hostname=service.external_name),) if service.external_name else ()
    if service.type == "LoadBalancer":
        found = [Address(ip=ip) if ip else Address(hostname=hostname) for ip, hostname in service.load_balancer]
        return normalized(found + [Address(ip=ip) for ip in service.external_ips])
    if service.external_ips:  # ClusterIP or NodePort with external IPs
        return normalized(Address(ip=ip) for ip in service.external_ips)
    if service.cluster_ip and service.cluster_ip != "None":
        return (Address(ip=service.cluster_ip),)
    return ()


def status_patch(addresses: Addresses) -> dict:
    """The merge patch of the ``status`` subresource that sets ``addresses`` (empty: clears them)."""
    return {"status": {"loadBalancer": {"ingress": [a.to_dict() for a in addresses]}}}


class StatusPlanner:
    """Which Ingress statuses to write. Sans-IO.

    ``known`` is the status each Ingress has, as last read from the API (``observed``) or written by
    us (``written``). ``plan`` sets ``addresses`` on every served Ingress whose status differs, and
    clears the status of Ingresses present but no longer served that carry ours (we wrote them, or
    they hold exactly our addresses: a previous leader did), never one another controller wrote.
    """

    def __init__(self) -> None:
        self.known: dict[IngressKey, Addresses] = {}
        self.ours: set[IngressKey] = set()  # Ingresses we set a non-empty status on

    def observed(self, statuses: Mapping[IngressKey, Addresses]) -> None:
        """The statuses as listed from the API (all Ingresses): replaces what was known."""
        self.known = {key: normalized(value) for key, value in statuses.items()}
        self.ours &= self.known.keys()

    def plan(self, served: Iterable[IngressKey], present: Iterable[IngressKey],
             addresses: Addresses | None) -> list[tuple[IngressKey, Addresses]]:
        """The writes to make, as (Ingress, addresses); ``addresses`` None: not known yet (the
        published Service is not there), so nothing is written."""
        if addresses is None:
            return []
        addresses = normalized(addresses)
        served = set(served)
        writes = [(key, addresses) for key in sorted(served) if self.known.get(key, ()) != addresses]
        for key in sorted(set(present) - served):
            current = self.known.get(key, ())
            if current and (key in self.ours or current == addresses):
                writes.append((key, ()))
        return writes

    def written(self, key: IngressKey, addresses: Addresses) -> None:
        self.known[key] = normalized(addresses)
        if addresses:
            self.ours.add(key)
        else:
            self.ours.discard(key)

    def forget(self, present: Iterable[IngressKey]) -> None:
        """Drop what is known of Ingresses that no longer exist."""
        present = set(present)
        for key in self.known.keys() - present:
            del self.known[key]
        self.ours &= present
