"""Where managed Secrets, ACME account keys and per-certificate status are kept.

The manager talks to two small interfaces: :class:`SecretStore` (Kubernetes-shaped Secrets) and
:class:`StatusStore` (backoff and renewal bookkeeping). With ``--manifests`` both are files under
``--state-dir``: each Secret a ``kind: Secret`` manifest (mode 0600, directories 0700) that the
manifest source loads like the user's own, so a certificate is served exactly as a user Secret is.
A Kubernetes API source can later implement the same interfaces with real Secrets.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import yaml

log = logging.getLogger("ingressd.certmanager")

SECRETS_DIR = "secrets"
STATUS_FILE = ".ingressd-certificates.json"  # a dot-file: never read as a manifest
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class StoredSecret:
    namespace: str
    name: str
    type: str
    data: dict[str, bytes] = field(default_factory=dict, compare=False)
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    origin: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass
class CertStatus:
    """What the manager remembers about one certificate between attempts and restarts."""

    failures: int = 0
    next_attempt: float = 0.0  # epoch seconds; no order before this (backoff)
    last_error: str = ""
    last_attempt: float = 0.0
    last_success: float = 0.0
    ari_cert_id: str = ""  # the certificate the ARI fields below are about
    ari_renew_at: float | None = None
    ari_next_poll: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict) -> "CertStatus":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


class SecretStore(Protocol):
    def get(self, namespace: str, name: str) -> StoredSecret | None: ...

    def put(self, secret: StoredSecret) -> None: ...

    def list(self) -> list[StoredSecret]: ...


class StatusStore(Protocol):
    def load(self) -> dict[str, CertStatus]: ...

    def save(self, statuses: dict[str, CertStatus]) -> None: ...


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only."""
    _private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # a dot-file: not a manifest
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def secret_document(secret: StoredSecret) -> dict:
    metadata: dict = {"name": secret.name, "namespace": secret.namespace}
    if secret.annotations:
        metadata["annotations"] = dict(sorted(secret.annotations.items()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret.type,
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(secret.data.items())},
    }


def secret_from_document(doc, origin: str | None = None) -> StoredSecret | None:
    if not isinstance(doc, dict) or doc.get("kind") != "Secret":
        return None
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace") or "default"
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    data: dict[str, bytes] = {}
    for key, value in (doc.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(value).encode(), validate=True)
        except (binascii.Error, ValueError):
            return None
    for key, value in (doc.get("stringData") or {}).items():
        data[str(key)] = str(value).encode()
    annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
    return StoredSecret(namespace, name, str(doc.get("type") or "Opaque"), data, annotations, origin)


class FileSecretStore:
    """Secrets as ``DIR/secrets/NAMESPACE/NAME.yaml``; thread-safe."""

    def __init__(self, state_dir: str | os.PathLike):
        self.root = Path(state_dir)
        self.dir = self.root / SECRETS_DIR
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int, int], StoredSecret | None]] = {}

    def path(self, namespace: str, name: str) -> Path:
        return self.dir / namespace / f"{name}.yaml"

    def _read(self, path: Path) -> StoredSecret | None:
        try:
            st = path.stat()
        except OSError:
            return None
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        try:
            doc = yaml.load(path.read_bytes(), Loader=_LOADER)
            secret = secret_from_document(doc, str(path))
        except (OSError, ValueError, yaml.YAMLError) as error:
            log.error("cannot read %s: %s", path, error)
            secret = None
        self._cache[path] = (signature, secret)
        return secret

    def get(self, namespace: str, name: str) -> StoredSecret | None:
        with self._lock:
            return self._read(self.path(namespace, name))

    def put(self, secret: StoredSecret) -> None:
        path = self.path(secret.namespace, secret.name)
        text = "# Written by ingressd; edits are overwritten.\n" + yaml.safe_dump(secret_document(secret),
                                                                                sort_keys=False)
        with self._lock:
            _private_dir(self.root)
            _private_dir(self.dir)
            _write_private(path, text.encode())
            self._cache.pop(path, None)

    def list(self) -> list[StoredSecret]:
        with self._lock:
            paths = sorted(self.dir.glob("*/*.yaml")) if self.dir.is_dir() else []
            for gone in set(self._cache) - set(paths):
                del self._cache[gone]
            return [s for s in (self._read(p) for p in paths) if s is not None]


class FileStatusStore:
    """All certificates' status in one JSON dot-file in the state directory."""

    def __init__(self, state_dir: str | os.PathLike):
        self.path = Path(state_dir) / STATUS_FILE
        self._lock = threading.Lock()

    def load(self) -> dict[str, CertStatus]:
        try:
            raw = json.loads(self.path.read_text())
            return {key: CertStatus.from_dict(value) for key, value in raw.get("certificates", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as error:
            log.error("cannot read %s (%s); starting without certificate status", self.path, error)
            return {}

    def save(self, statuses: dict[str, CertStatus]) -> None:
        data = json.dumps({"version": 1, "certificates": {k: asdict(v) for k, v in sorted(statuses.items())}},
                          indent=1)
        with self._lock:
            _write_private(self.path, data.encode())


class MemorySecretStore:
    """An in-memory :class:`SecretStore` (tests, and the shape a Kubernetes store will have)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], StoredSecret] = {}

    def get(self, namespace: str, name: str) -> StoredSecret | None:
        return self.secrets.get((namespace, name))

    def put(self, secret: StoredSecret) -> None:
        self.secrets[secret.key] = secret

    def list(self) -> list[StoredSecret]:
        return list(self.secrets.values())
