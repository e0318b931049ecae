"""Host names and wildcards, matched the one way Kubernetes and certificates both define it.

A pattern ``*.foo.com`` stands for exactly one extra label (``a.foo.com``, not ``foo.com`` nor
``a.b.foo.com``), and an exact name beats a wildcard. Route lookup, certificate choice, TLS hosts
and certificate checks all use this module, so they cannot disagree.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

V = TypeVar("V")


def parent(host: str) -> str | None:
    """``foo.com`` for ``a.foo.com``: the suffix a one-label wildcard would be stored under."""
    dot = host.find(".")
    return host[dot + 1:] if dot > 0 else None


def is_wildcard(pattern: str) -> bool:
    return pattern.startswith("*.")


def matches(pattern: str, host: str) -> bool:
    """Whether ``pattern`` (a name or ``*.`` wildcard, any case) covers ``host`` (lower case)."""
    pattern = pattern.lower()
    if pattern == host:
        return True
    return is_wildcard(pattern) and parent(host) == pattern[2:]


class HostMap(Generic[V]):
    """Values by host pattern; ``get(host)`` finds the exact name first, then its wildcard.

    Lookups cost one dict probe, two for a name served by a wildcard: this is on the request path.
    """

    __slots__ = ("exact", "wildcard")

    def __init__(self) -> None:
        self.exact: dict[str, V] = {}
        self.wildcard: dict[str, V] = {}  # ``*.foo.com`` stored under ``foo.com``

    def get(self, host: str) -> V | None:
        value = self.exact.get(host)
        if value is None:
            dot = host.find(".")
            if dot > 0:
                return self.wildcard.get(host[dot + 1:])
        return value

    def _store(self, pattern: str) -> tuple[dict[str, V], str]:
        return (self.wildcard, pattern[2:]) if is_wildcard(pattern) else (self.exact, pattern)

    def __setitem__(self, pattern: str, value: V) -> None:
        store, key = self._store(pattern)
        store[key] = value

    def setdefault(self, pattern: str, value: V) -> V:
        store, key = self._store(pattern)
        return store.setdefault(key, value)

    def pattern_value(self, pattern: str) -> V | None:
        """The value stored for exactly this pattern (no wildcard fallback)."""
        store, key = self._store(pattern)
        return store.get(key)

    def __contains__(self, pattern: str) -> bool:
        store, key = self._store(pattern)
        return key in store

    def items(self) -> Iterator[tuple[str, V]]:
        """(pattern, value) pairs: exact names sorted, then wildcards sorted."""
        for key in sorted(self.exact):
            yield key, self.exact[key]
        for key in sorted(self.wildcard):
            yield "*." + key, self.wildcard[key]

    def values(self) -> list[V]:
        return [*self.exact.values(), *self.wildcard.values()]

    def __len__(self) -> int:
        return len(self.exact) + len(self.wildcard)

    def __bool__(self) -> bool:
        return bool(self.exact or self.wildcard)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostMap) and self.exact == other.exact and self.wildcard == other.wildcard

    def __repr__(self) -> str:
        return f"HostMap({dict(self.items())!r})"

    def __getstate__(self):  # pickled to worker processes
        return (self.exact, self.wildcard)

    def __setstate__(self, state) -> None:
        self.exact, self.wildcard = state
