"""Diagnostics as Kubernetes Events on the objects they are about (``kubectl describe ingress``).

:class:`EventRecorder` is a sink of the one diagnostics :class:`~ingressd.diagnostics.Reporter`:
the reporter hands it each diagnostic when it first appears, the recorder writes a core/v1 Event
(reason ``Rejected`` for errors, ``Warning`` for warnings) on the named object. Only the leader
writes (the replicas would repeat each other). :class:`EventLimiter` (sans-IO) bounds the rate:
the same object and message at most once per ``repeat`` seconds, and a token bucket for the
total, so a broken ConfigMap touching hundreds of Ingresses cannot flood the API.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from typing import Callable

from ..diagnostics import ERROR, Diagnostic
from .client import EVENTS, KubeClient

log = logging.getLogger("ingressd.kube")

COMPONENT = "ingressd"
API_VERSIONS = {"Ingress": "networking.k8s.io/v1", "IngressClass": "networking.k8s.io/v1", "Service": "v1",
                "Secret": "v1", "ConfigMap": "v1", "EndpointSlice": "discovery.k8s.io/v1",
                "ClusterIssuer": "cert-manager.io/v1", "Issuer": "cert-manager.io/v1"}


class EventLimiter:
    """Whether an Event may be written now. Sans-IO: the caller passes the time.

    >>> limiter = EventLimiter(burst=2, per_second=0.5, repeat=600)
    >>> [limiter.allow(("a", "m"), 0.0), limiter.allow(("a", "m"), 1.0), limiter.allow(("b", "m"), 1.0)]
    [True, False, True]
    """

    def __init__(self, burst: int = 25, per_second: float = 1.0, repeat: float = 600.0):
        self.burst, self.per_second, self.repeat = burst, per_second, repeat
        self.tokens = float(burst)
        self.updated = 0.0
        self.sent: dict[tuple, float] = {}
        self.dropped = 0

    def allow(self, key: tuple, now: float) -> bool:
        last = self.sent.get(key)
        if last is not None and now - last < self.repeat:
            return False
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            self.dropped += 1
            return False
        self.tokens -= 1
        self.sent[key] = now
        if len(self.sent) > 10000:  # forget the oldest half
            for old in sorted(self.sent, key=self.sent.get)[:5000]:
                del self.sent[old]
        return True


def parse_ref(ref: str | None) -> tuple[str, str, str] | None:
    """``Kind namespace/name`` or ``Kind name`` -> (kind, namespace, name)."""
    if not ref or " " not in ref:
        return None
    kind, _, rest = ref.partition(" ")
    namespace, _, name = rest.rpartition("/")
    return (kind, namespace, name) if name else None


def event_body(diagnostic: Diagnostic, kind: str, namespace: str, name: str, uid: str | None, now: float,
               host: str = "") -> dict:
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"kind": kind, "name": name, "apiVersion": API_VERSIONS.get(kind, "v1")}
    if namespace:
        involved["namespace"] = namespace
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace or "default"},
        "involvedObject": involved,
        "reason": "Rejected" if diagnostic.severity == ERROR else "Warning",
        "message": diagnostic.message[:1024],
        "type": "Warning",
        "source": {"component": COMPONENT, **({"host": host} if host else {})},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


class EventRecorder:
    """A Reporter sink writing Events through ``client`` (in the background, errors logged once)."""

    def __init__(self, client: KubeClient, uid_of: Callable[[str, str, str], str | None],
                 leading: Callable[[], bool] = lambda: True, limiter: EventLimiter | None = None,
                 clock: Callable[[], float] = time.time, host: str = ""):
        self.client, self.uid_of, self.leading = client, uid_of, leading
        self.limiter = limiter or EventLimiter()
        self.clock, self.host = clock, host
        self.written = 0
        self._tasks: set[asyncio.Task] = set()
        self._failing = False

    def __call__(self, diagnostic: Diagnostic) -> None:
        ref = parse_ref(diagnostic.object)
        if ref is None or not self.leading():
            return
        kind, namespace, name = ref
        now = self.clock()
        if not self.limiter.allow((ref, diagnostic.message), now):
            return
        body = event_body(diagnostic, kind, namespace, name, self.uid_of(kind, namespace, name), now, self.host)
        task = asyncio.get_running_loop().create_task(self._write(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, body: dict) -> None:
        try:
            await self.client.create(EVENTS, body["metadata"]["namespace"], body)
            self.written += 1
            self._failing = False
        except Exception as error:  # noqa: BLE001 - Events are best effort
            if not self._failing:
                log.warning("cannot write an Event on %s %s: %s", body["involvedObject"]["kind"],
                            body["involvedObject"]["name"], error)
            self._failing = True
