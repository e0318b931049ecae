"""The one interface between where objects come from and the rest of the control plane.

A :class:`Source` (the manifest directory, the Kubernetes API) keeps the current objects and hands
out immutable :class:`~ingressd.config.Snapshot` values. The translator, the certificate manager
and the data plane never know which source they read; certificate management writes back through
the source's own stores (``Source.secrets``, ``Source.statuses``).

How the control plane uses a source::

    await source.start()             # begin reading (in the background)
    await source.synced()            # every kind read completely once: nothing partial is served
    snapshot = source.snapshot()
    while True:
        await source.changed()       # coalesced: one wake-up per burst of events
        snapshot = source.snapshot() # unchanged objects are the very same Python objects;
        ...                          # snapshot.changes_since(previous) says which keys changed

Bursts are coalesced by :class:`Coalescer` (sans-IO, a fake clock in tests): a change is handed
out ``QUIET`` seconds after the last event of a burst, and never later than ``MAX_DELAY`` after
its first event, so a rollout's EndpointSlice churn costs a few translations, not hundreds, and a
single change in a quiet cluster is served within tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Protocol

from ..config import Snapshot
from ..objects import ObjectKey

if TYPE_CHECKING:  # pragma: no cover
    from ..certmanager.store import SecretStore, StatusStore

QUIET = 0.025  # seconds without events that end a burst
MAX_DELAY = 0.25  # a burst that goes on is still handed out this often


@dataclass(frozen=True)
class SourceState:
    """How a source is doing, for the metrics and the status page."""

    kind: str  # "manifests" or "kubernetes"
    description: str  # "manifests in DIR", "Kubernetes API https://..."
    synced: bool = False  # every kind read completely once
    connected: bool = True  # the API answers (always True for files)
    last_error: str = ""


class Source(Protocol):
    """Where the objects come from. Implementations: ``ManifestDirectory``, ``KubernetesSource``."""

    secrets: "SecretStore | None"  # where certificates are written (None: certificates cannot be managed)
    statuses: "StatusStore | None"  # where per-certificate state (backoff, ARI) is kept

    async def start(self) -> None:
        """Begin reading; returns at once, reading goes on in the background."""

    async def synced(self) -> None:
        """Return once every kind has been read completely once (it may take long: the API may be down)."""

    def snapshot(self) -> Snapshot:
        """The current objects: the same Snapshot object as long as nothing changed."""

    async def changed(self) -> None:
        """Return when ``snapshot()`` would differ from the one last returned (bursts coalesced)."""

    async def settle(self, timeout: float = 10.0) -> None:
        """Return once what was written through ``secrets`` is visible in ``snapshot()``."""

    def require(self, keys: Iterable[ObjectKey]) -> None:
        """Objects the configuration refers to that the source does not read by default (a
        ConfigMap, an Opaque Secret): read them too from now on (they appear in a later snapshot).
        Replaces the previous set. The manifest directory reads everything and ignores this."""

    @property
    def state(self) -> SourceState: ...

    async def close(self) -> None: ...


class Coalescer:
    """When a burst of change events should be handed out. Sans-IO: the caller passes the time.

    >>> c = Coalescer(quiet=0.1, max_delay=1.0)
    >>> c.event(10.0); c.event(10.05); c.due(10.05)
    0.1
    """

    def __init__(self, quiet: float = QUIET, max_delay: float = MAX_DELAY):
        self.quiet = quiet
        self.max_delay = max_delay
        self.first: float | None = None
        self.last: float | None = None

    def event(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def due(self, now: float) -> float | None:
        """Seconds until the pending changes should be handed out (0: now); None when none are pending."""
        if self.first is None:
            return None
        return round(max(0.0, min(self.last + self.quiet, self.first + self.max_delay) - now), 9)

    def taken(self) -> None:
        """The pending changes were handed out."""
        self.first = self.last = None


class ChangeFeed:
    """The asyncio side of :class:`Coalescer`: sources ``notify()``, the control plane awaits ``wait()``.

    ``notify`` may be called from any thread (the manifest scan runs in an executor)."""

    def __init__(self, quiet: float = QUIET, max_delay: float = MAX_DELAY):
        self.coalescer = Coalescer(quiet, max_delay)
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()

    def notify(self) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._notify()
        else:
            loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        self.coalescer.event(self._loop.time())
        self._event.set()

    def taken(self) -> None:
        """The current state was handed out (``snapshot()``): later events start a new burst."""
        self.coalescer.taken()
        if self._event is not None:
            self._event.clear()

    async def wait(self) -> None:
        self.bind()
        loop = self._loop
        while True:
            due = self.coalescer.due(loop.time())
            if due is None:
                self._event.clear()
                await self._event.wait()
            elif due > 0:
                await asyncio.sleep(due)
            else:
                return
