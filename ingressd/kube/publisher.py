"""The IO side of Ingress status: while this replica leads, keep ``status.loadBalancer.ingress`` of
the Ingresses it serves in line with the published addresses (:mod:`ingressd.kube.status` decides
what to write).

The current statuses are listed from the API when leadership starts and every ``RESYNC`` seconds
(catching edits by others), and updated from each write's answer in between, so a snapshot that
changes nothing writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Protocol

from ..config import Settings, Snapshot
from ..objects import Ingress, Service
from ..translate import served_ingresses
from .status import Addresses, IngressKey, StatusPlanner, from_status, parse_status_addresses, service_addresses, \
    status_patch

log = logging.getLogger("ingressd.status")

RESYNC = 300.0  # seconds between full re-reads of the statuses (ingress-nginx re-syncs too)
RETRY = 5.0  # after a failed list or write


class NotFound(Exception):
    """HTTP 404: the Ingress is gone."""


class StatusClient(Protocol):
    async def list_ingress_statuses(self) -> dict[IngressKey, dict]:
        """Every (watched) Ingress's ``status``, by (namespace, name)."""

    async def patch_ingress_status(self, namespace: str, name: str, patch: dict) -> dict:
        """Merge-patch the ``status`` subresource; returns the Ingress; raises :class:`NotFound`."""


class StatusPublisher:
    def __init__(self, client: StatusClient, settings: Settings, *, publish_service: str | None = None,
                 publish_addresses: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.settings = settings
        self.fixed: Addresses | None = parse_status_addresses(publish_addresses) if publish_addresses else None
        self.publish_service = tuple(publish_service.split("/", 1)) if publish_service else None
        self.enabled = self.fixed is not None or self.publish_service is not None
        self.planner = StatusPlanner()
        self.clock = clock
        self.leading = False
        self.snapshot: Snapshot | None = None
        self.writes = 0
        self._listed_at: float | None = None
        self._wake = asyncio.Event()
        self._missing_reported = False

    def update(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._wake.set()

    def set_leading(self, leading: bool) -> None:
        self.leading = leading
        if leading:
            self._listed_at = None  # a new leader reads what is there first
        self._wake.set()

    def addresses(self, snapshot: Snapshot) -> Addresses | None:
        if self.fixed is not None:
            return self.fixed
        namespace, name = self.publish_service
        service = snapshot.by_key.get(("Service", namespace, name))
        if not isinstance(service, Service):
            if not self._missing_reported:
                log.warning("--publish-service %s/%s: no such Service (yet); Ingress status is not written",
                            namespace, name)
                self._missing_reported = True
            return None
        self._missing_reported = False
        return service_addresses(service)

    async def run(self) -> None:
        if not self.enabled:
            return
        while True:
            delay = RESYNC
            if self.leading and self.snapshot is not None:
                try:
                    delay = await self.sync()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - API trouble: retry, keep serving
                    log.warning("writing Ingress status failed (%s); retrying in %.0f s", error, RETRY)
                    self._listed_at = None
                    delay = RETRY
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def sync(self) -> float:
        """One pass: list if due, then write what differs. Returns the seconds until the next resync."""
        now = self.clock()
        if self._listed_at is None or now - self._listed_at >= RESYNC:
            statuses = await self.client.list_ingress_statuses()
            self.planner.observed({key: from_status(status) for key, status in statuses.items()})
            self._listed_at = now
        snapshot = self.snapshot
        present = [(o.meta.namespace, o.meta.name) for o in snapshot.objects if isinstance(o, Ingress)]
        served = [(i.meta.namespace, i.meta.name) for i in served_ingresses(snapshot.objects, self.settings)]
        for (namespace, name), addresses in self.planner.plan(served, present, self.addresses(snapshot)):
            if not self.leading:
                break
            try:
                answer = await self.client.patch_ingress_status(namespace, name, status_patch(addresses))
            except NotFound:
                continue
            self.planner.written((namespace, name), from_status(answer.get("status")))
            self.writes += 1
            log.info("Ingress %s/%s: status.loadBalancer.ingress set to [%s]", namespace, name,
                     ", ".join(a.ip or a.hostname for a in addresses))
        self.planner.forget(present)
        return max(0.0, RESYNC - (self.clock() - self._listed_at))
