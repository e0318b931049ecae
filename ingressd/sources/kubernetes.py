"""The Kubernetes API as a source of objects: one watch cache per kind (and namespace).

What is read: Ingress, Service, EndpointSlice, TLS Secrets (a field selector on ``type``: no other
Secret's data is ever cached), in every namespace or the ``--watch-namespace`` ones; IngressClass;
cert-manager's ClusterIssuer and Issuer when their CRDs exist (their absence is normal; they are
looked for again every few seconds); and the objects named by ``require`` (the controller
ConfigMap), each by a field selector on its name.

Every cache keeps the raw objects of its :class:`~ingressd.kube.client.Reflector`; each raw object
is parsed once when it changes, and an object that parses equal to the previous one stays the very
same Python object, so snapshots share unchanged objects and ``Snapshot.changed`` names exactly
the keys that changed. When the API cannot be reached the caches keep what they had (the last
snapshot keeps serving), retry with backoff, and ``state`` says so (metric, status page).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Iterable

from ..config import Snapshot
from ..diagnostics import ERROR, Diagnostic, InvalidObject
from ..kube.client import (CLUSTER_ISSUERS, CONFIG_MAPS, ENDPOINT_SLICES, INGRESS_CLASSES, INGRESSES, ISSUERS,
                           SECRETS, SERVICES, KubeClient, Reflector, ResourceType)
from ..objects import CORE_KINDS, Kinds, KubeObject, ObjectKey
from .base import ChangeFeed, SourceState

log = logging.getLogger("ingressd.kubernetes")

TLS_SECRETS = "type=kubernetes.io/tls"
REQUIRABLE = {"ConfigMap": CONFIG_MAPS, "Secret": SECRETS}

RawKey = tuple[str, str, str]  # (resource plural, namespace, name)


class KubernetesSource:
    """Objects from the API server ``client`` talks to (see the module docstring)."""

    def __init__(self, client: KubeClient, *, kinds: Kinds = CORE_KINDS, namespaces: Iterable[str] = (),
                 certificates: bool = True, require: Iterable[ObjectKey] = ()):
        self.client = client
        self.kinds = kinds
        self.namespaces = tuple(dict.fromkeys(namespaces))
        self.certificates = certificates
        self.secrets = self.statuses = None  # certificates as Secrets, their state in a ConfigMap
        self._written: dict[tuple[str, str], str] = {}  # TLS Secrets written -> resourceVersion, for settle()
        if certificates and client._sync_factory is not None:
            from ..kube.stores import KubeSecretStore, KubeStatusStore

            sync = client.sync()
            self.secrets = KubeSecretStore(sync, self.namespaces, on_write=self._on_write)
            self.statuses = KubeStatusStore(sync, client.namespace)
        self.feed = ChangeFeed()
        self._entries: dict[RawKey, tuple[tuple[KubeObject, ...], tuple[Diagnostic, ...]]] = {}
        self._touched: set[ObjectKey] = set()
        self._plurals: set[str] = set()  # the resources _entries holds objects of
        self._dirty = True
        self._snapshot: Snapshot | None = None
        self._version = 0
        self._reflectors: list[Reflector] = []
        self._required: dict[ObjectKey, Reflector] = {}
        self._errors: dict[str, str] = {}  # reflector name -> its last error (cleared when it recovers)
        self._last_error = ""
        self._started = False
        self.cluster = _cluster_api(client, self.namespaces)
        self.require(require)

    # --- the caches ------------------------------------------------------------------------------

    def _reflector(self, rt: ResourceType, namespace: str | None, **options) -> Reflector:
        reflector = Reflector(self.client, rt, namespace, self._event_handler(rt),
                              on_state=self._state_handler(rt, namespace), **options)
        return reflector

    def _plan(self) -> list[Reflector]:
        namespaces = self.namespaces or (None,)
        reflectors = [self._reflector(INGRESS_CLASSES, None)]
        for ns in namespaces:
            reflectors += [self._reflector(INGRESSES, ns), self._reflector(SERVICES, ns),
                           self._reflector(ENDPOINT_SLICES, ns),
                           self._reflector(SECRETS, ns, field_selector=TLS_SECRETS)]
        if self.certificates:
            reflectors.append(self._reflector(CLUSTER_ISSUERS, None, optional=True))
            reflectors += [self._reflector(ISSUERS, ns, optional=True) for ns in namespaces]
        return reflectors

    def _event_handler(self, rt: ResourceType):
        def on_event(what: str, key: tuple[str, str], obj: dict | None) -> None:
            raw = (rt.plural, *key)
            self._plurals.add(rt.plural)
            old_objects, old_diagnostics = self._entries.get(raw, ((), ()))
            if what == "delete" or obj is None:
                self._entries.pop(raw, None)
                new_objects, new_diagnostics = (), ()
            else:
                new_objects, new_diagnostics = self._parse(obj, old_objects)
                self._entries[raw] = (new_objects, new_diagnostics)
            old_by_key = {o.meta.key: o for o in old_objects}
            new_by_key = {o.meta.key: o for o in new_objects}
            changed = {k for k in old_by_key.keys() | new_by_key.keys() if old_by_key.get(k) is not new_by_key.get(k)}
            if changed or old_diagnostics != new_diagnostics:
                self._touched |= changed
                self._dirty = True
                self.feed.notify()
        return on_event

    def _parse(self, doc: dict, previous: tuple[KubeObject, ...]) -> tuple[tuple[KubeObject, ...], tuple[Diagnostic, ...]]:
        try:
            parsed = self.kinds.parse(doc)
        except InvalidObject as error:
            return (), (Diagnostic(ERROR, str(error), None, self.kinds.describe(doc), "invalid"),)
        except Exception as error:  # noqa: BLE001 - one odd object must not stop the cache
            return (), (Diagnostic(ERROR, f"cannot read: {error}", None, self.kinds.describe(doc), "invalid"),)
        old = {o.meta.key: o for o in previous}
        return tuple(old[o.meta.key] if old.get(o.meta.key) == o else o for o in parsed), ()

    def _state_handler(self, rt: ResourceType, namespace: str | None):
        name = rt.plural + (f" in {namespace}" if namespace else "")

        def on_state(connected: bool, error: str) -> None:
            if connected:
                if self._errors.pop(name, None) is not None and not self._errors:
                    log.info("Kubernetes API reachable again")
            else:
                self._errors[name] = error
                self._last_error = error
        return on_state

    # --- the Source protocol ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.feed.bind()
        self._reflectors = self._plan()
        for reflector in self._reflectors + list(self._required.values()):
            reflector.start()

    async def synced(self) -> None:
        for reflector in self._reflectors + list(self._required.values()):
            await reflector.synced.wait()

    def snapshot(self) -> Snapshot:
        previous = self._snapshot
        if previous is not None and not self._dirty:
            self.feed.taken()
            return previous
        self._dirty = False
        touched, self._touched = self._touched, set()
        self.feed.taken()
        built = self._patched(previous, touched) if previous is not None else None
        if built is None:
            built = self._whole()
        objects, diagnostics, index = built
        self._version += 1
        since, changed = (previous.version, frozenset(touched)) if previous is not None else (None, frozenset())
        snapshot = Snapshot(objects, diagnostics, f"k{self._version}", since, changed, index)
        self._snapshot = snapshot
        return snapshot

    def _whole(self):
        objects: list[KubeObject] = []
        diagnostics: list[Diagnostic] = []
        index: dict[ObjectKey, KubeObject] = {}
        for objs, diags in self._entries.values():
            diagnostics += diags
            for obj in objs:
                if obj.meta.key not in index:
                    index[obj.meta.key] = obj
                    objects.append(obj)
        return tuple(objects), tuple(diagnostics), index

    def _patched(self, previous: Snapshot, touched: set[ObjectKey]):
        """``_whole()`` from the previous snapshot's index when a few keys changed and no key is
        held twice (then every cached object is in the snapshot): an edit among 10,000 Ingresses
        costs a dict copy, not a pass over every object. None: build it whole."""
        if len(touched) * 4 > len(previous.objects):
            return None
        index = dict(previous.by_key)
        for key in touched:
            index.pop(key, None)
        current = {}
        for raw in self._raw_keys(touched):
            for obj in self._entries.get(raw, ((), ()))[0]:
                current[obj.meta.key] = obj
        for key in touched:
            obj = current.get(key)
            if obj is not None:
                index[key] = obj
        entries = self._entries.values()
        objects = tuple(itertools.chain.from_iterable(objs for objs, _ in entries))
        if len(objects) != len(index):
            return None  # a key held twice (or a miss): the whole pass decides which wins
        diagnostics = tuple(itertools.chain.from_iterable(diags for _, diags in entries))
        return objects, diagnostics, index

    def _raw_keys(self, touched: set[ObjectKey]):
        """The cache entries that may hold ``touched`` objects: by namespace and name (each
        resource's entries are keyed by its plural, namespace and name)."""
        names = {(key[1], key[2]) for key in touched}
        return [raw for raw in ((plural, *name) for plural in self._plurals for name in names) if raw in self._entries]

    async def changed(self) -> None:
        await self.feed.wait()

    def _on_write(self, secret, resource_version: str) -> None:  # from executor threads
        if secret.is_tls:
            self._written[secret.key] = resource_version

    def _visible(self, key: tuple[str, str], resource_version: str) -> bool:
        for reflector in self._reflectors:
            if reflector.rt is SECRETS:
                obj = reflector.objects.get(key)
                if obj is not None and ((obj.get("metadata") or {}).get("resourceVersion") == resource_version
                                        or _newer(obj, resource_version)):
                    return True
        return False

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every TLS Secret written through ``secrets`` is in the caches (and so in the
        next snapshot), at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            pending = {k: v for k, v in list(self._written.items()) if not self._visible(k, v)}
            if not pending:
                for key in list(self._written):
                    self._written.pop(key, None)
                return
            await asyncio.sleep(0.02)

    def require(self, keys: Iterable[ObjectKey]) -> None:
        wanted = {key for key in keys if key[0] in REQUIRABLE}
        for key in list(self._required):
            if key not in wanted:
                reflector = self._required.pop(key)
                asyncio.ensure_future(reflector.stop()) if self._started else None
                for raw in [r for r in self._entries if r[0] == REQUIRABLE[key[0]].plural and r[1:] == key[1:]]:
                    self._event_handler(REQUIRABLE[key[0]])("delete", raw[1:], None)
        for key in wanted - self._required.keys():
            kind, namespace, name = key
            reflector = self._reflector(REQUIRABLE[kind], namespace, field_selector=f"metadata.name={name}")
            self._required[key] = reflector
            if self._started:
                reflector.start()

    def event_recorder(self, leading):
        """A diagnostics sink writing Events on the objects (only while ``leading()``)."""
        from ..kube.events import EventRecorder

        return EventRecorder(self.client, self._uid_of, leading, host=os.environ.get("POD_NAME", ""))

    def _uid_of(self, kind: str, namespace: str, name: str) -> str | None:
        for reflector in self._reflectors + list(self._required.values()):
            if reflector.rt.kind == kind:
                obj = reflector.objects.get((namespace, name))
                if obj is not None:
                    return (obj.get("metadata") or {}).get("uid")
        return None

    @property
    def state(self) -> SourceState:
        synced = self._started and all(r.synced.is_set() for r in self._reflectors)
        return SourceState("kubernetes", f"Kubernetes API {self.client.server}", synced,
                           connected=not self._errors, last_error=next(iter(self._errors.values()), self._last_error))

    async def close(self) -> None:
        for reflector in self._reflectors + list(self._required.values()):
            await reflector.stop()
        await self.client.close()


def _cluster_api(client: KubeClient, namespaces: tuple[str, ...]):
    """kubeapi's leader election / Ingress status API on this client (None until it is there)."""
    try:
        from ..kube.cluster import ClusterApi
    except ImportError:
        return None
    return ClusterApi(client, namespaces)


def _newer(obj: dict, resource_version: str) -> bool:
    """resourceVersions are opaque, but in practice (etcd revisions) integers: compare when they are."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0) > int(resource_version)
    except ValueError:
        return False
