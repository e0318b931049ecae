"""The election's IO driver (ingressd.kube.leader.Elector) over an in-memory LeaseClient with the API
server's 409 semantics (the API emulator runs the same code in tests/integration), with short
timings on the real event loop."""

from __future__ import annotations

import asyncio
import copy
import time

from ingressd.kube.election import Timings
from ingressd.kube.leader import Conflict, Elector

FAST = Timings.for_ttl(3.0)  # renew deadline 2 s, retry 0.4 s


class MemoryLeases:
    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.version = 0
        self.hang = asyncio.Event()  # set: every request hangs (an API server that stopped answering)

    async def _maybe_hang(self):
        if self.hang.is_set():
            await asyncio.sleep(3600)

    def _store(self, namespace, body):
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(namespace, body["metadata"]["name"])] = body
        return copy.deepcopy(body)

    async def get_lease(self, namespace, name):
        await self._maybe_hang()
        found = self.objects.get((namespace, name))
        return copy.deepcopy(found) if found else None

    async def create_lease(self, namespace, body):
        await self._maybe_hang()
        if (namespace, body["metadata"]["name"]) in self.objects:
            raise Conflict("exists")
        return self._store(namespace, body)

    async def replace_lease(self, namespace, name, body):
        await self._maybe_hang()
        current = self.objects.get((namespace, name))
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion"):
            raise Conflict("stale")
        return self._store(namespace, body)


async def until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def test_one_leads_release_hands_over_within_a_retry_period_and_a_hung_api_ends_leadership_on_time():
    async def run():
        leases = MemoryLeases()
        changes = []
        a = Elector(leases, "ingressd", "ingressd-leader", "a", FAST, on_change=lambda v: changes.append(("a", v)))
        b = Elector(leases, "ingressd", "ingressd-leader", "b", FAST, on_change=lambda v: changes.append(("b", v)))
        task_a = asyncio.create_task(a.run())
        await until(lambda: a.leading, 1)
        task_b = asyncio.create_task(b.run())
        await asyncio.sleep(1.0)
        assert a.leading and not b.leading and changes == [("a", True)]
        spec = leases.objects[("ingressd", "ingressd-leader")]["spec"]
        assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 3

        task_a.cancel()  # a shuts down cleanly: it releases the Lease
        await a.release()
        assert not a.leading
        handover = await until(lambda: b.leading, 3)
        assert handover <= FAST.retry_period * 2.2 + 0.2
        assert leases.objects[("ingressd", "ingressd-leader")]["spec"]["leaseTransitions"] == 1

        leases.hang.set()  # b's renewals hang: it stops leading at its renew deadline, not later
        hung_at = time.monotonic()
        await until(lambda: not b.leading, FAST.renew_deadline + 1)
        assert time.monotonic() - hung_at <= FAST.renew_deadline + 0.1
        assert changes == [("a", True), ("a", False), ("b", True), ("b", False)]
        task_b.cancel()
        await asyncio.gather(task_a, task_b, return_exceptions=True)

    asyncio.run(run())
