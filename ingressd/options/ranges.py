"""Source address rules: ``whitelist-source-range`` / ``denylist-source-range`` / ``block-cidrs``.

ingress-nginx writes ``deny`` lines (denylist, then block-cidrs at the server) before ``allow``
lines followed by ``deny all``: an address in a deny range is refused even when an allow range
covers it. Refused requests get 403.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

_CACHE_LIMIT = 4096


def parse_ranges(value: str) -> tuple:
    """A comma list of CIDRs or addresses; ValueError naming a bad one."""
    networks = []
    for item in value.split(","):
        item = item.strip()
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True, eq=False)
class SourceRanges:
    """Which client addresses a route serves. ``allow`` empty: every address not denied."""

    allow: tuple = ()
    deny: tuple = ()
    # Decisions by address text: clients repeat, and parsing an address costs more than a probe.
    _seen: dict = field(default_factory=dict, compare=False, repr=False)

    def permits(self, address: str) -> bool:
        seen = self._seen
        verdict = seen.get(address)
        if verdict is None:
            verdict = self._decide(address)
            if len(seen) >= _CACHE_LIMIT:
                seen.clear()
            seen[address] = verdict
        return verdict

    def _decide(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return not self.allow  # no usable address (a Unix socket): only open routes serve it
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.deny if network.version == ip.version):
            return False
        return not self.allow or any(ip in network for network in self.allow if network.version == ip.version)

    def describe(self) -> str:
        parts = []
        if self.allow:
            parts.append("allow " + " ".join(map(str, self.allow)))
        if self.deny:
            parts.append("deny " + " ".join(map(str, self.deny)))
        return "; ".join(parts)
