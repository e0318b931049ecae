"""The API calls of leader election and Ingress status, on the client wrapper
(:class:`~ingressd.kube.client.KubeClient`): one :class:`ClusterApi` is both the election's
:class:`~ingressd.kube.leader.LeaseClient` and the status writer's
:class:`~ingressd.kube.publisher.StatusClient`. The Kubernetes source offers it as ``source.cluster``.
"""

from __future__ import annotations

from .client import INGRESSES, LEASES, KubeClient, KubeError
from .leader import Conflict
from .publisher import NotFound


class ClusterApi:
    def __init__(self, client: KubeClient, namespaces: tuple[str, ...] = ()):
        self.client = client
        self.namespaces = namespaces  # --watch-namespace (empty: all)

    # --- LeaseClient -----------------------------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> dict | None:
        return await self.client.get(LEASES, namespace, name)

    async def create_lease(self, namespace: str, body: dict) -> dict:
        try:
            return await self.client.create(LEASES, namespace, body)
        except KubeError as error:
            if error.code == 409:
                raise Conflict(error.message) from None
            raise

    async def replace_lease(self, namespace: str, name: str, body: dict) -> dict:
        try:
            return await self.client.replace(LEASES, namespace, name, body)
        except KubeError as error:
            if error.code == 409:
                raise Conflict(error.message) from None
            raise

    # --- StatusClient ----------------------------------------------------------------------------

    async def list_ingress_statuses(self) -> dict[tuple[str, str], dict]:
        statuses = {}
        for namespace in self.namespaces or (None,):
            items, _ = await self.client.list(INGRESSES, namespace)
            for item in items:
                meta = item.get("metadata") or {}
                statuses[(meta.get("namespace") or "default", meta.get("name"))] = item.get("status") or {}
        return statuses

    async def patch_ingress_status(self, namespace: str, name: str, patch: dict) -> dict:
        try:
            return await self.client.patch(INGRESSES, namespace, name, patch, subresource="status")
        except KubeError as error:
            if error.code == 404:
                raise NotFound(f"Ingress {namespace}/{name}") from None
            raise
