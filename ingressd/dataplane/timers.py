"""A coarse clock and the deadlines of connections, kept off the request path.

Connections set ``deadline`` (an instant of ``Timers.now``, 0 for none) and implement
``on_timeout()``; they register with ``add``. Every ``TICK`` the sweep advances ``now`` and fires
the expired deadlines, so a request costs an attribute write, not a timer handle. Tests drive a
``Timers`` by hand with ``advance``, without an event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Protocol

log = logging.getLogger("ingressd.dataplane")

TICK = 0.25  # resolution of every timeout


class Timed(Protocol):
    deadline: float

    def on_timeout(self) -> None: ...


class Timers:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.now = clock()
        self.items: set[Timed] = set()
        self.on_tick: list[Callable[[], None]] = []  # e.g. flushing the access log

    def add(self, item: Timed) -> None:
        self.items.add(item)

    def discard(self, item: Timed) -> None:
        self.items.discard(item)

    def sweep(self) -> None:
        """Advance ``now`` from the clock and fire what expired."""
        self.now = now = self.clock()
        for callback in self.on_tick:
            callback()
        limit = now - TICK  # never fire early: ``now`` may have been a tick old when a deadline was set
        for item in [item for item in self.items if 0.0 < item.deadline < limit]:
            try:
                item.on_timeout()
            except Exception:
                log.exception("timeout handling failed for %r", item)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.sweep()


class ManualClock:
    """A clock for tests: ``timers = Timers(clock := ManualClock())``, then ``clock.advance(60)``."""

    def __init__(self, start: float = 1000.0):
        self.time = start

    def __call__(self) -> float:
        return self.time

    def advance(self, seconds: float, timers: Timers | None = None) -> None:
        self.time += seconds
        if timers is not None:
            timers.sweep()
