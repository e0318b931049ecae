"""``limit-rps`` / ``limit-rpm`` (+ ``limit-burst-multiplier``, ``limit-whitelist``): nginx's ``limit_req``
per client address, with ingress-nginx's ``burst = rate x multiplier`` (default 5) and ``nodelay``;
``limit-connections`` (+ ``limit-whitelist``): nginx's ``limit_conn`` (``ConnectionLimit``).

The leaky bucket of ``ngx_http_limit_req_module``: each address has an *excess* that drains at the
rate and grows by one per request; a request that would raise it above the burst is refused
(``limit-req-status-code``, 503 by default) and does not count. Every Ingress with these annotations
has its own buckets, as each has its own nginx zone; they start empty with each configuration, as
nginx's zones do with each reload. Memory is bounded: past ``MAX_ADDRESSES`` drained buckets are
dropped, and if none is drained, all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ADDRESSES = 65536


def parse_rate(value: str) -> int:
    if not value.strip().isdigit() or int(value) <= 0:
        raise ValueError("expected a whole number of requests greater than 0")
    return int(value)


def parse_multiplier(value: str) -> int:
    if not value.strip().isdigit() or int(value) <= 0:
        raise ValueError("expected a whole number greater than 0")
    return int(value)


@dataclass(frozen=True, slots=True, eq=False)
class RequestRate:
    """One ``limit_req`` zone: ``rate`` requests per second, ``burst`` more at once."""

    rate: float
    burst: float
    exempt: object = None  # options.ranges.SourceRanges of addresses never limited (limit-whitelist)
    status: int = 503
    _buckets: dict = field(default_factory=dict, compare=False, repr=False)  # address -> [excess, at]

    def admits(self, address: str, now: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            if self.exempt is not None and self.exempt.permits(address):
                return True
            if len(self._buckets) >= MAX_ADDRESSES:
                self._trim(now)
            self._buckets[address] = [1.0, now]
            return True
        excess = max(bucket[0] - (now - bucket[1]) * self.rate, 0.0) + 1.0
        if excess > self.burst + 1.0:
            return False
        bucket[0], bucket[1] = excess, now
        return True

    def _trim(self, now: float) -> None:
        drained = [a for a, (excess, at) in self._buckets.items() if excess - (now - at) * self.rate <= 0]
        for address in drained:
            del self._buckets[address]
        if len(self._buckets) >= MAX_ADDRESSES:
            self._buckets.clear()

    def describe(self) -> str:
        return f"limit={self.rate:g}r/s burst {self.burst:g}"


@dataclass(frozen=True, slots=True, eq=False)
class ConnectionLimit:
    """``limit-connections``: at most ``limit`` connections per client address with a request in
    progress on the Ingress's routes (nginx's ``limit_conn``: a keep-alive connection between requests
    does not count; a websocket counts until it closes). Past it: ``status`` (``limit-conn-status-code``,
    503). Counted per worker process: with ``--workers N`` a client may get up to N times the limit
    (nginx's zone is shared by its workers)."""

    limit: int
    exempt: object = None  # options.ranges.SourceRanges (limit-whitelist)
    status: int = 503
    _counts: dict = field(default_factory=dict, compare=False, repr=False)  # address -> connections

    def exempts(self, address: str) -> bool:
        return self.exempt is not None and self.exempt.permits(address)

    def acquire(self, address: str) -> bool:
        """Count one more connection of ``address``; False (not counted) past the limit."""
        count = self._counts.get(address, 0)
        if count >= self.limit:
            return False
        self._counts[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._counts.get(address, 0) - 1
        if count > 0:
            self._counts[address] = count
        else:
            self._counts.pop(address, None)

    def describe(self) -> str:
        return f"limit-connections={self.limit}"
