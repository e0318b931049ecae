"""HTTP-01 answers of the leader's orders, served by every replica.

The load balancer sends the CA's validation request to any replica, but only the leader orders and
knows the answers. So the leader also writes them into a ConfigMap in its own namespace
(``<election-id>-http01``: token -> key authorization) and every other replica watches it and serves
them too. The leader tells the CA to validate only after the ConfigMap is written and ``SPREAD``
seconds have passed for the other replicas' watches to deliver it (milliseconds in practice).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Callable

from .client import CONFIG_MAPS, KubeClient, KubeError, Reflector

log = logging.getLogger("ingressd.certmanager")

SPREAD = 1.0  # seconds for the other replicas' watches to deliver a new answer


def configmap_name(election_id: str) -> str:
    return f"{election_id}-http01"


class SharedChallenges:
    def __init__(self, client: KubeClient, namespace: str, name: str, local: Callable[[dict[str, bytes]], object],
                 spread: float = SPREAD):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.local = local  # the data plane's set_challenges (may return an awaitable: workers confirm)
        self.spread = spread
        self.leading = False
        self.reflector = Reflector(client, CONFIG_MAPS, namespace, self._event, field_selector=f"metadata.name={name}")

    def start(self) -> None:
        self.reflector.start()

    async def close(self) -> None:
        await self.reflector.stop()

    def _leaders(self) -> dict[str, bytes]:
        obj = self.reflector.objects.get((self.namespace, self.name)) or {}
        return {token: answer.encode() for token, answer in (obj.get("data") or {}).items() if isinstance(answer, str)}

    def _event(self, kind: str, key, obj) -> None:
        if not self.leading:  # the leader's own answers are authoritative on the leader
            self._serve(self._leaders())

    def _serve(self, challenges: dict[str, bytes]):
        served = self.local(dict(challenges))
        if inspect.isawaitable(served):
            return asyncio.ensure_future(served)
        return None

    def set_leading(self, leading: bool) -> None:
        self.leading = leading
        if not leading:
            self._serve(self._leaders())

    async def publish(self, challenges: dict[str, bytes]) -> None:
        """The certificate manager's ``on_challenges``: serve here, and, as the leader, everywhere."""
        served = self._serve(challenges)
        if served is not None:
            await served
        if not self.leading:
            return
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "ingressd"}},
                "data": {token: answer.decode("ascii") for token, answer in challenges.items()}}
        try:
            current = await self.client.get(CONFIG_MAPS, self.namespace, self.name)
            if current is None:
                await self.client.create(CONFIG_MAPS, self.namespace, body)
            else:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                await self.client.replace(CONFIG_MAPS, self.namespace, self.name, body)
        except (KubeError, OSError, Exception) as error:  # noqa: BLE001 - the order then fails and backs off
            log.warning("could not share the HTTP-01 answers with the other replicas (ConfigMap %s/%s: %s); "
                        "validation may reach a replica that does not know them", self.namespace, self.name, error)
            return
        await asyncio.sleep(self.spread)
