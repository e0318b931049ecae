"""The IO side of leader election: runs :class:`~ingressd.kube.election.LeaderElection` against the
API through a small :class:`LeaseClient` (get, create, replace one Lease), and tells the rest of the
process when leadership starts and stops.

Leadership ends on time even while a request hangs: a timer fires at the election's
``leader_until`` and flips ``leading`` off, whatever the request is doing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Protocol

from .election import LeaderElection, LeaseRecord, ObservedLease, Read, Timings, Wait, Write

log = logging.getLogger("ingressd.leader")


class Conflict(Exception):
    """HTTP 409: the Lease was written by someone else first (or already exists)."""


class LeaseClient(Protocol):
    async def get_lease(self, namespace: str, name: str) -> dict | None:
        """The Lease object, or None (404)."""

    async def create_lease(self, namespace: str, body: dict) -> dict:
        """Create it; raises :class:`Conflict` when it exists."""

    async def replace_lease(self, namespace: str, name: str, body: dict) -> dict:
        """PUT it (``body.metadata.resourceVersion`` set); raises :class:`Conflict` when stale."""


def lease_body(namespace: str, name: str, record: LeaseRecord, resource_version: str | None) -> dict:
    metadata: dict = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": record.to_spec()}


def observed(obj: dict) -> ObservedLease:
    return ObservedLease(LeaseRecord.from_spec(obj.get("spec")), str(obj.get("metadata", {}).get("resourceVersion", "")))


class Elector:
    """Keeps running the election; ``on_change(leading)`` is called on every change (in the loop)."""

    def __init__(self, client: LeaseClient, namespace: str, name: str, identity: str,
                 timings: Timings = Timings(), on_change: Callable[[bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.election = LeaderElection(identity, timings)
        self.on_change = on_change
        self.clock = clock
        self.leading = False
        self.request_timeout = timings.renew_deadline / 2
        self.last_error = ""
        self._timer: asyncio.TimerHandle | None = None
        self._wake: asyncio.Event | None = None

    def _update(self) -> None:
        """Report a change of leadership, and arm the timer that ends it on time."""
        now = self.clock()
        leading = self.election.leading(now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if leading:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, self.election.leader_until - now), self._update)
        if leading != self.leading:
            self.leading = leading
            if leading:
                log.info("leading: this replica (%s) holds Lease %s/%s", self.election.identity, self.namespace,
                         self.name)
            else:
                log.warning("no longer leading (Lease %s/%s%s)", self.namespace, self.name,
                            f": {self.last_error}" if self.last_error else "")
            if self.on_change is not None:
                try:
                    self.on_change(leading)
                except Exception:  # noqa: BLE001 - a callback bug must not stop the election
                    log.exception("leadership change handler failed")

    async def run(self) -> None:
        self._wake = asyncio.Event()
        try:
            while True:
                action = self.election.next(self.clock())
                self._update()
                if isinstance(action, Wait):
                    delay = max(0.0, min(action.until, self.clock() + 3600) - self.clock())
                    try:
                        await asyncio.wait_for(self._wake.wait(), delay)
                    except asyncio.TimeoutError:
                        pass
                    self._wake.clear()
                    continue
                await self._perform(action)
                self._update()
        finally:
            if self._timer is not None:
                self._timer.cancel()

    async def _perform(self, action: Read | Write) -> None:
        election = self.election
        try:
            if isinstance(action, Read):
                obj = await asyncio.wait_for(self.client.get_lease(self.namespace, self.name), self.request_timeout)
                election.read(self.clock(), observed(obj) if obj is not None else None)
            else:
                body = lease_body(self.namespace, self.name, action.record, action.resource_version)
                if action.resource_version is None:
                    call = self.client.create_lease(self.namespace, body)
                else:
                    call = self.client.replace_lease(self.namespace, self.name, body)
                obj = await asyncio.wait_for(call, self.request_timeout)
                election.written(self.clock(), observed(obj))
            self.last_error = ""
        except asyncio.CancelledError:
            raise
        except Conflict:
            self.last_error = "409 Conflict: written by another replica first"
            election.failed(self.clock(), self.last_error)
        except asyncio.TimeoutError:
            self.last_error = f"no answer from the API in {self.request_timeout:.0f} s"
            election.failed(self.clock(), self.last_error)
        except Exception as error:  # noqa: BLE001 - API down, RBAC, network: retry, never crash
            self.last_error = f"{type(error).__name__}: {error}"
            log.debug("leader election request failed: %s", self.last_error)
            election.failed(self.clock(), self.last_error)

    async def release(self) -> None:
        """Give the Lease up (on shutdown) so the other replica takes over within a retry period."""
        write = self.election.release(self.clock())
        self._update()
        if write is None:
            return
        body = lease_body(self.namespace, self.name, write.record, write.resource_version)
        try:
            obj = await asyncio.wait_for(self.client.replace_lease(self.namespace, self.name, body), 2.0)
            self.election.written(self.clock(), observed(obj))
            log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as error:  # noqa: BLE001 - it expires by itself
            log.warning("could not release Lease %s/%s (%s); it expires in %.0f s", self.namespace, self.name,
                        error, self.election.timings.lease_duration)
