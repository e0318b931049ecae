"""In a cluster: the leader election, and what only the leader does.

Every replica serves. The one holding the Lease (``--election-id`` in the pod's namespace) orders
and writes certificates (the :class:`~ingressd.certmanager.CertificateManager` is gated through
``set_leading``) and writes Ingress status (:class:`~ingressd.kube.publisher.StatusPublisher`).
Losing the Lease stops both at once. The leader's HTTP-01 answers are shared with every replica
(:mod:`ingressd.kube.challenges`), since the CA's validation may reach any of them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

from ..config import Settings, Snapshot
from .election import Timings
from .leader import Elector, LeaseClient
from .publisher import StatusClient, StatusPublisher

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace(environ=os.environ, account_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """Where the Lease lives: ``POD_NAMESPACE`` (downward API), else the service account's namespace."""
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return account_file.read_text().strip() or "default"
    except OSError:
        return "default"


def pod_identity(environ=os.environ) -> str:
    """The Lease holder's name: ``POD_NAME``, else host name plus a random suffix (client-go's)."""
    return environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4()}"


class Leadership:
    def __init__(self, client: "LeaseClient | StatusClient", settings: Settings, certs, *,
                 election_id: str, ttl: float = 15.0, publish_service: str | None = None,
                 publish_addresses: tuple[str, ...] = (), namespace: str | None = None, identity: str | None = None):
        self.election_id = election_id
        self.namespace = namespace or pod_namespace()
        self.identity = identity or pod_identity()
        self.certs = certs
        certs.set_leading(False)  # until elected
        self.publisher = StatusPublisher(client, settings, publish_service=publish_service,
                                         publish_addresses=publish_addresses)
        self.elector = Elector(client, self.namespace, election_id, self.identity, Timings.for_ttl(ttl),
                               on_change=self._changed)
        self.challenges = None  # the leader's HTTP-01 answers, shared with every replica
        kube = getattr(client, "client", None)
        if kube is not None and certs.on_challenges is not None:
            from .challenges import SharedChallenges, configmap_name

            self.challenges = SharedChallenges(kube, self.namespace, configmap_name(election_id), certs.on_challenges)
            certs.on_challenges = self.challenges.publish
        self._tasks: list[asyncio.Task] = []

    @property
    def leading(self) -> bool:
        return self.elector.leading

    def _changed(self, leading: bool) -> None:
        if self.challenges is not None:
            self.challenges.set_leading(leading)
        self.certs.set_leading(leading)
        self.publisher.set_leading(leading)

    def update(self, snapshot: Snapshot) -> None:
        self.publisher.update(snapshot)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.elector.run()), loop.create_task(self.publisher.run())]
        if self.challenges is not None:
            self.challenges.start()

    async def close(self) -> None:
        """Stop; give the Lease up if held, so the other replica takes over at once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.challenges is not None:
            await self.challenges.close()
        await self.elector.release()
