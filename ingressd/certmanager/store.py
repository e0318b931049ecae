"""Where managed Secrets, ACME account keys and per-certificate status are kept.

The manager talks to two small interfaces: :class:`SecretStore` (Kubernetes-shaped Secrets) and
:class:`StatusStore` (backoff and renewal bookkeeping). With ``--manifests`` both are files under
``--state-dir``: each Secret a ``kind: Secret`` manifest (mode 0600, directories 0700) that the
manifest source loads like the user's own, so a certificate is served exactly as a user Secret is.
The Kubernetes source implements the same interfaces with real Secrets and a ConfigMap; a source
hands out its stores (``Source.secrets``, ``Source.statuses``), so the manager does not know which.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Protocol

import yaml

from ..objects import Secret, parse_secret

log = logging.getLogger("ingressd.certmanager")

SECRETS_DIR = "secrets"
STATUS_FILE = ".ingressd-certificates.json"  # a dot-file: never read as a manifest
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


class NotOwned(OSError):
    """A write to a Secret that ingressd did not create (a user's, cert-manager's): refused."""


class SecretStore(Protocol):
    """Where the certificate manager reads and writes Secrets; a source hands out its own.

    Writes may raise OSError (:class:`NotOwned` for a Secret ingressd does not own); the manager
    keeps what it could not write and tries again later."""

    def get(self, namespace: str, name: str) -> Secret | None: ...

    def put(self, secret: Secret) -> None: ...

    def list(self) -> list[Secret]:
        """The Secrets ingressd manages (certificates, account keys)."""
        ...

    def owns(self, secret: Secret) -> bool:
        """Whether ``secret`` (as the source serves it) is one ingressd manages and may overwrite."""
        ...


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


def secret_document(secret: Secret) -> dict:
    metadata: dict = {"name": secret.name, "namespace": secret.namespace}
    if secret.labels:
        metadata["labels"] = dict(sorted(secret.labels.items()))
    if secret.annotations:
        metadata["annotations"] = dict(sorted(secret.annotations.items()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret.type,
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in sorted(secret.data.items())},
    }


class FileSecretStore:
    """Secrets as ``DIR/secrets/NAMESPACE/NAME.yaml``; thread-safe."""

    def __init__(self, state_dir: str | os.PathLike, on_write: Callable[[], None] | None = None):
        self.root = Path(state_dir)
        self.dir = self.root / SECRETS_DIR
        self.on_write = on_write  # the source that reads the state directory: look again soon
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[int, int, int], Secret | None]] = {}

    def path(self, namespace: str, name: str) -> Path:
        return self.dir / namespace / f"{name}.yaml"

    def _read(self, path: Path) -> Secret | None:
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
            secret = parse_secret(doc, str(path)) if isinstance(doc, dict) and doc.get("kind") == "Secret" else None
        except (OSError, ValueError, yaml.YAMLError) as error:
            log.error("cannot read %s: %s", path, error)
            secret = None
        self._cache[path] = (signature, secret)
        return secret

    def get(self, namespace: str, name: str) -> Secret | None:
        with self._lock:
            return self._read(self.path(namespace, name))

    def owns(self, secret: Secret) -> bool:
        """Files of the state directory are ingressd's; a Secret from the user's manifests is not."""
        origin = secret.origin
        return bool(origin) and os.path.abspath(origin).startswith(os.path.abspath(self.dir) + os.sep)

    def put(self, secret: Secret) -> None:
        path = self.path(secret.namespace, secret.name)
        text = "# Written by ingressd; edits are overwritten.\n" + yaml.safe_dump(secret_document(secret),
                                                                                sort_keys=False)
        with self._lock:
            _private_dir(self.root)
            _private_dir(self.dir)
            _write_private(path, text.encode())
            self._cache.pop(path, None)
        if self.on_write is not None:
            self.on_write()

    def list(self) -> list[Secret]:
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
        self.secrets: dict[tuple[str, str], Secret] = {}

    def get(self, namespace: str, name: str) -> Secret | None:
        return self.secrets.get((namespace, name))

    def put(self, secret: Secret) -> None:
        self.secrets[secret.key] = secret

    def list(self) -> list[Secret]:
        return list(self.secrets.values())

    def owns(self, secret: Secret) -> bool:
        return secret.key in self.secrets
