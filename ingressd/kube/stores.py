"""The certificate manager's stores in the cluster: real Secrets, and a ConfigMap for status.

:class:`KubeSecretStore` writes ``kubernetes.io/tls`` Secrets (certificates) and Opaque ones (ACME
account keys, in each issuer's ``privateKeySecretRef``) with the ownership label
``ingressd.io/managed-by: ingressd`` and the annotations the manager sets (cert-manager's names).
It creates a Secret that does not exist, and updates one only when it carries that label, with
the resourceVersion just read (a concurrent change is a 409: the manager tries again later). A
Secret someone else owns is never overwritten: :class:`~ingressd.certmanager.store.NotOwned`.

:class:`KubeStatusStore` keeps per-certificate state (backoff, ARI) as JSON in the ConfigMap
``ingressd-certificates`` of the pod's namespace, so a new leader continues where the old one was.

Both are called from executor threads (the manager's IO), so they use the blocking client.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict

from ..certmanager.plan import MANAGED_LABEL, MANAGED_VALUE
from ..certmanager.store import CertStatus, NotOwned, secret_document
from ..objects import Secret, parse_secret
from .client import CONFIG_MAPS, SECRETS, KubeError, SyncKubeClient

log = logging.getLogger("ingressd.certmanager")

STATUS_CONFIGMAP = "ingressd-certificates"
STATUS_KEY = "certificates.json"


def _owned(doc: dict) -> bool:
    return ((doc.get("metadata") or {}).get("labels") or {}).get(MANAGED_LABEL) == MANAGED_VALUE


class KubeSecretStore:
    """Secrets in the API (see the module docstring). ``on_write(secret, resourceVersion)`` tells
    the source what to wait for in ``settle``."""

    def __init__(self, client: SyncKubeClient, namespaces: tuple[str, ...] = (), on_write=None):
        self.client = client
        self.namespaces = namespaces
        self.on_write = on_write
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str) -> Secret | None:
        doc = self.client.get(SECRETS, namespace, name)
        return parse_secret(doc) if doc is not None else None

    def owns(self, secret: Secret) -> bool:
        return secret.labels.get(MANAGED_LABEL) == MANAGED_VALUE

    def put(self, secret: Secret) -> None:
        body = secret_document(secret)
        body["metadata"].setdefault("labels", {})[MANAGED_LABEL] = MANAGED_VALUE
        with self._lock:
            try:
                current = self.client.get(SECRETS, secret.namespace, secret.name)
                if current is None:
                    written = self.client.create(SECRETS, secret.namespace, body)
                elif not _owned(current):
                    raise NotOwned(f"Secret {secret.namespace}/{secret.name} exists and is not managed by ingressd "
                                   f"(no {MANAGED_LABEL}={MANAGED_VALUE} label): not overwritten")
                else:
                    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    written = self.client.replace(SECRETS, secret.namespace, secret.name, body)
            except KubeError as error:  # 409 Conflict (changed meanwhile), 403...: tried again later
                raise OSError(f"cannot write Secret {secret.namespace}/{secret.name}: {error}") from error
        if self.on_write is not None:
            self.on_write(secret, str(written["metadata"].get("resourceVersion") or ""))

    def list(self) -> list[Secret]:
        selector = f"{MANAGED_LABEL}={MANAGED_VALUE}"
        docs: list[dict] = []
        for namespace in self.namespaces or (None,):
            docs += self.client.list(SECRETS, namespace, label_selector=selector)[0]
        out = []
        for doc in docs:
            try:
                out.append(parse_secret(doc))
            except ValueError as error:
                log.error("cannot read managed Secret %s: %s", (doc.get("metadata") or {}).get("name"), error)
        return out


class KubeStatusStore:
    """Per-certificate state as JSON in one ConfigMap of the pod's namespace."""

    def __init__(self, client: SyncKubeClient, namespace: str, name: str = STATUS_CONFIGMAP):
        self.client, self.namespace, self.name = client, namespace, name

    def load(self) -> dict[str, CertStatus]:
        try:
            doc = self.client.get(CONFIG_MAPS, self.namespace, self.name)
        except (KubeError, OSError, Exception) as error:  # noqa: BLE001 - the API may be down at start
            log.warning("cannot read certificate status from ConfigMap %s/%s: %s", self.namespace, self.name, error)
            return {}
        if doc is None:
            return {}
        try:
            raw = json.loads((doc.get("data") or {}).get(STATUS_KEY) or "{}")
            return {k: CertStatus.from_dict(v) for k, v in raw.items() if isinstance(v, dict)}
        except (ValueError, TypeError) as error:
            log.error("ConfigMap %s/%s: unreadable certificate status (%s); starting afresh", self.namespace, self.name, error)
            return {}

    def save(self, statuses: dict[str, CertStatus]) -> None:
        data = {STATUS_KEY: json.dumps({k: asdict(v) for k, v in sorted(statuses.items())}, sort_keys=True)}
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": {MANAGED_LABEL: MANAGED_VALUE}},
                "data": data}
        try:
            current = self.client.get(CONFIG_MAPS, self.namespace, self.name)
            if current is None:
                self.client.create(CONFIG_MAPS, self.namespace, body)
            elif (current.get("data") or {}) != data:
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.client.replace(CONFIG_MAPS, self.namespace, self.name, body)
        except KubeError as error:
            raise OSError(f"cannot write ConfigMap {self.namespace}/{self.name}: {error}") from error
