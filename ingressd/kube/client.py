"""ingressd's thin side of the Kubernetes API: connect, plain JSON requests, list+watch caches.

Connection, authentication and TLS come from `lightkube`_ (``KubeConfig``: in-cluster service
account with token refresh, ``--kubeconfig``, ``--context``, exec plugins, client certificates)
and its ``httpx.AsyncClient``. Objects stay plain JSON dicts: ingressd's own parsers
(:mod:`ingressd.objects`) read them, so no typed model is built and thrown away per event.

The list+watch loop (:class:`Reflector`) is ingressd's, because the details decide whether the
cache is right: client-go's rules are followed (list, then watch from the list's
resourceVersion; resume after a closed watch from the last seen version, bookmarks included;
on 410 Gone list again and diff, so objects deleted meanwhile are removed; errors retried with
capped exponential backoff and jitter). lightkube's own ``watch`` restarts from "now" after a 410
and would lose those deletions.

.. _lightkube: https://lightkube.readthedocs.io/
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable

if TYPE_CHECKING:  # lightkube brings its HTTP client: httpx before 1.0, httpx2 since
    import httpx

from .. import __version__

log = logging.getLogger("ingressd.kube")

MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = f"ingressd/{__version__}"  # how the API server's audit log names ingressd
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class ResourceType:
    """One kind of API object and where it lives."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


INGRESSES = ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress")
INGRESS_CLASSES = ResourceType("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False)
SERVICES = ResourceType("", "v1", "services", "Service")
ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
SECRETS = ResourceType("", "v1", "secrets", "Secret")
CONFIG_MAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
EVENTS = ResourceType("", "v1", "events", "Event")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
CLUSTER_ISSUERS = ResourceType("cert-manager.io", "v1", "clusterissuers", "ClusterIssuer", namespaced=False)
ISSUERS = ResourceType("cert-manager.io", "v1", "issuers", "Issuer")


class KubeError(Exception):
    """An API answer other than success: ``code`` (404, 409, 410...), ``reason`` (NotFound, Conflict...)."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message

    @classmethod
    def from_status(cls, code: int, body) -> "KubeError":
        if isinstance(body, dict) and body.get("kind") == "Status":
            return cls(int(body.get("code") or code), str(body.get("reason") or ""), str(body.get("message") or ""))
        return cls(code, "", str(body)[:200])


class Gone(KubeError):
    """410: the resourceVersion is too old; list again."""


class KubeClient:
    """A connection to one API server. Every method raises :class:`KubeError` for API errors and
    ``httpx.HTTPError``/``OSError`` when the server cannot be reached."""

    def __init__(self, http: httpx.AsyncClient, server: str, namespace: str = "default"):
        self.http = http
        self.server = server
        self.namespace = namespace  # the configuration's (or the pod's) namespace

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> "KubeClient":
        """In-cluster (service account) when neither is given and it is available, else the
        kubeconfig file (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) at ``context``."""
        from lightkube import KubeConfig
        from lightkube.config import client_adapter

        if kubeconfig:
            config = KubeConfig.from_file(kubeconfig)
        else:
            config = KubeConfig.from_env()
        single = config.get(context_name=context)
        for name in ("httpx", "httpx2", "httpcore"):  # one INFO line per request otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        params = client_adapter.ConnectionParams(timeout=10.0, trust_env=False)  # watches set their own
        http = client_adapter.AsyncClient(single, params)
        client = cls(http, single.cluster.server, os.environ.get("POD_NAMESPACE") or single.namespace or "default")
        client._sync_factory = lambda: client_adapter.Client(single, params)
        return client

    _sync_factory = None

    def sync(self) -> "SyncKubeClient":
        """A blocking client to the same server, for code that runs in executor threads (the
        certificate stores): the same methods, without ``watch``."""
        if self._sync_factory is None:
            raise RuntimeError("this client was not made by connect()")
        return SyncKubeClient(self._sync_factory(), self.server, self.namespace)

    async def close(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, *, params=None, body=None, content_type: str = "application/json",
                       timeout: float = 10.0) -> dict:
        content = None if body is None else json.dumps(body).encode()
        response = await self.http.request(method, path, params=params, content=content,
                                           headers={"Content-Type": content_type, "Accept": "application/json", "User-Agent": USER_AGENT},
                                           timeout=timeout)
        try:
            data = response.json()
        except ValueError:
            data = response.text
        if response.status_code >= 400:
            raise KubeError.from_status(response.status_code, data)
        return data

    async def get(self, rt: ResourceType, namespace: str | None, name: str, subresource: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return await self._request("GET", rt.path(namespace, name, subresource))
        except KubeError as error:
            if error.code == 404:
                return None
            raise

    async def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str = "",
                   field_selector: str = "") -> tuple[list[dict], str]:
        """Every object (of ``namespace``, or all) and the list's resourceVersion."""
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        body = await self._request("GET", rt.path(namespace), params=params, timeout=60.0)
        items = body.get("items") or []
        for item in items:  # list items come without kind/apiVersion
            item.setdefault("kind", rt.kind)
            item.setdefault("apiVersion", rt.api_version)
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(self, rt: ResourceType, namespace: str | None, resource_version: str, *,
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int = 300,
                    on_open: Callable[[], None] | None = None) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) events after ``resource_version``: ADDED, MODIFIED, DELETED, BOOKMARK.
        Raises :class:`Gone` for a 410 (the version is too old). Ends when the server ends it."""
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        # a plain number: httpx 0.29 mishandles Timeout objects on streams; a watch the server
        # never ends is cut after timeoutSeconds + 30 s
        async with self.http.stream("GET", rt.path(namespace), params=params, headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                                    timeout=timeout_seconds + 30.0) as response:
            if response.status_code >= 400:
                await response.aread()
                error = KubeError.from_status(response.status_code, _json_or_text(response))
                raise Gone(error.code, error.reason, error.message) if error.code == 410 else error
            if on_open is not None:
                on_open()
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                type_, obj = event.get("type"), event.get("object") or {}
                if type_ == "ERROR":
                    error = KubeError.from_status(500, obj)
                    raise Gone(error.code, error.reason, error.message) if error.code == 410 else error
                if type_ != "BOOKMARK":
                    obj.setdefault("kind", rt.kind)
                    obj.setdefault("apiVersion", rt.api_version)
                yield type_, obj

    async def create(self, rt: ResourceType, namespace: str | None, body: dict) -> dict:
        return await self._request("POST", rt.path(namespace), body=body)

    async def replace(self, rt: ResourceType, namespace: str | None, name: str, body: dict,
                      subresource: str | None = None) -> dict:
        """PUT: a ``metadata.resourceVersion`` in ``body`` makes it conditional (409 when stale)."""
        return await self._request("PUT", rt.path(namespace, name, subresource), body=body)

    async def patch(self, rt: ResourceType, namespace: str | None, name: str, body, *,
                    subresource: str | None = None, content_type: str = MERGE_PATCH) -> dict:
        return await self._request("PATCH", rt.path(namespace, name, subresource), body=body, content_type=content_type)

    async def delete(self, rt: ResourceType, namespace: str | None, name: str) -> dict | None:
        try:
            return await self._request("DELETE", rt.path(namespace, name))
        except KubeError as error:
            if error.code == 404:
                return None
            raise


def _json_or_text(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return response.text


class Backoff:
    """Capped exponential backoff with jitter (client-go's reflector: 0.8 s doubling to 30 s)."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0, rng: random.Random | None = None):
        self.initial, self.maximum = initial, maximum
        self.failures = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        delay = min(self.maximum, self.initial * (2 ** self.failures))
        self.failures += 1
        return delay * (0.5 + self.rng.random() / 2)

    def reset(self) -> None:
        self.failures = 0


Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
OnEvent = Callable[[str, Key, "dict | None"], None]  # ("set"|"delete", key, object)


class Reflector:
    """Keeps ``objects`` equal to the API's objects of one type (one namespace or all, with
    selectors), calling ``on_event`` for every change, forever (until ``stop``).

    ``synced`` is set after the first complete list. ``optional``: a 404 on list (a CRD that is
    not installed) counts as an empty, synced list and is retried every ``optional_retry`` s, so
    cert-manager's issuers appear when their CRDs are installed later."""

    def __init__(self, client: KubeClient, rt: ResourceType, namespace: str | None, on_event: OnEvent, *,
                 label_selector: str = "", field_selector: str = "", optional: bool = False,
                 optional_retry: float = 10.0, on_state: Callable[[bool, str], None] | None = None,
                 timeout_seconds: int | None = None):
        self.client, self.rt, self.namespace = client, rt, namespace
        self.on_event = on_event
        self.label_selector, self.field_selector = label_selector, field_selector
        self.optional, self.optional_retry = optional, optional_retry
        self.on_state = on_state or (lambda connected, error: None)
        self.objects: dict[Key, dict] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.backoff = Backoff()
        self.timeout_seconds = timeout_seconds
        self._task: asyncio.Task | None = None
        self.lists = 0  # how many times it listed (tests: a 410 made it list again)

    @property
    def name(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.rt.plural}{where}"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"reflector {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    @staticmethod
    def key_of(obj: dict) -> Key:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or "", meta.get("name") or "")

    async def list_once(self) -> None:
        """List and replace the cache: every object not listed any more is deleted."""
        try:
            items, rv = await self.client.list(self.rt, self.namespace, label_selector=self.label_selector,
                                               field_selector=self.field_selector)
        except KubeError as error:
            if not (self.optional and error.code == 404):
                raise
            items, rv = [], ""
        self.lists += 1
        fresh = {self.key_of(obj): obj for obj in items}
        for key in self.objects.keys() - fresh.keys():
            self.on_event("delete", key, None)
        for key, obj in fresh.items():
            old = self.objects.get(key)
            if old is None or _rv(old) != _rv(obj):
                self.on_event("set", key, obj)
        self.objects = fresh
        self.resource_version = rv
        self.synced.set()

    def _apply(self, type_: str, obj: dict) -> None:
        rv = _rv(obj)
        if rv:
            self.resource_version = rv
        if type_ == "BOOKMARK":
            return
        key = self.key_of(obj)
        if type_ == "DELETED":
            if self.objects.pop(key, None) is not None:
                self.on_event("delete", key, None)
        elif type_ in ("ADDED", "MODIFIED"):
            self.objects[key] = obj
            self.on_event("set", key, obj)

    def _opened(self) -> None:
        if self.backoff.failures:
            log.info("watch of %s resumed", self.name)
        self.backoff.reset()
        self.on_state(True, "")

    async def run(self) -> None:
        relist = True
        while True:
            try:
                if relist:
                    await self.list_once()
                    relist = False
                    self.on_state(True, "")
                    self.backoff.reset()
                if not self.resource_version:  # an optional type that is not served (yet)
                    await asyncio.sleep(self.optional_retry)
                    relist = True
                    continue
                timeout = self.timeout_seconds or random.randint(240, 300)
                async for type_, obj in self.client.watch(self.rt, self.namespace, self.resource_version,
                                                          label_selector=self.label_selector,
                                                          field_selector=self.field_selector, timeout_seconds=timeout,
                                                          on_open=self._opened):
                    self._apply(type_, obj)
                    self.backoff.reset()
                self.on_state(True, "")
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch of %s expired (410): listing again", self.name)
                relist = True
            except Exception as error:  # noqa: BLE001 - anything but cancellation is retried: the cache
                # must outlive every API or transport failure (httpx 0.29 raises httpx2 classes too)
                if isinstance(error, KubeError) and error.code == 404 and self.optional:
                    relist = True
                    continue
                message = f"{self.name}: {error.__class__.__name__}: {error}".rstrip(": ")
                self.on_state(False, message)
                delay = self.backoff.next()
                # the first failure is a warning, the retries of an outage are not repeated as such
                log.log(logging.WARNING if self.backoff.failures == 1 else logging.DEBUG,
                        "Kubernetes API: %s; retrying (backoff up to %.0f s)", message, self.backoff.maximum)
                await asyncio.sleep(delay)
                # resume the watch from the last seen version (a 410 then makes it list again)


def _rv(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


async def wait_all(events: list[asyncio.Event]) -> None:
    for event in events:
        await event.wait()



class SyncKubeClient:
    """The blocking twin of :class:`KubeClient` (get/list/create/replace/patch/delete)."""

    def __init__(self, http: httpx.Client, server: str, namespace: str):
        self.http, self.server, self.namespace = http, server, namespace

    def _request(self, method: str, path: str, *, params=None, body=None, content_type: str = "application/json") -> dict:
        content = None if body is None else json.dumps(body).encode()
        response = self.http.request(method, path, params=params, content=content,
                                     headers={"Content-Type": content_type, "Accept": "application/json", "User-Agent": USER_AGENT}, timeout=10.0)
        data = _json_or_text(response)
        if response.status_code >= 400:
            raise KubeError.from_status(response.status_code, data)
        return data

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict | None:
        try:
            return self._request("GET", rt.path(namespace, name))
        except KubeError as error:
            if error.code == 404:
                return None
            raise

    def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str = "",
             field_selector: str = "") -> tuple[list[dict], str]:
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        body = self._request("GET", rt.path(namespace), params=params)
        items = body.get("items") or []
        for item in items:
            item.setdefault("kind", rt.kind)
            item.setdefault("apiVersion", rt.api_version)
        return items, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def create(self, rt: ResourceType, namespace: str | None, body: dict) -> dict:
        return self._request("POST", rt.path(namespace), body=body)

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: dict) -> dict:
        return self._request("PUT", rt.path(namespace, name), body=body)

    def close(self) -> None:
        self.http.close()
