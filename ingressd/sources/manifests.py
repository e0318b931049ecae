"""A directory of YAML/JSON manifests as a source of objects, watched for changes.

Each file keeps its last good objects: a file that stops parsing, or an object in it that becomes
invalid, is reported and the previous version keeps serving until the file is fixed or deleted.

The directory is polled (stat of every file, four times a second) rather than watched with inotify:
polling sees ConfigMap volume updates (an atomic swap of a symlinked ``..data`` directory) and
network filesystems alike, and costs microseconds per file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import yaml

from ..config import Snapshot
from ..diagnostics import ERROR, WARNING, Diagnostic, InvalidObject
from ..objects import KubeObject, describe, flatten, parse_object

log = logging.getLogger("ingressd.manifests")

EXTENSIONS = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 64 << 20
POLL_INTERVAL = 0.25
RECENT_SECONDS = 2.0

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class _FileState:
    signature: tuple[int, int, int]
    digest: bytes
    objects: list[KubeObject] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks, as a ConfigMap volume needs
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _digest(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read(MAX_FILE_BYTES + 1)).digest()
    except OSError:
        return b""


def _decode(path: str, data: bytes) -> list:
    text = data.decode("utf-8")
    if path.endswith(".json"):
        return [json.loads(text)]
    return [doc for doc in yaml.load_all(text, Loader=_YAML_LOADER) if doc is not None]


def parse_file(path: str, previous: list[KubeObject] | None = None) -> tuple[list[KubeObject], list[Diagnostic]]:
    """The objects of one file and what was wrong with it.

    ``previous`` is the file's last good objects: when the file no longer parses they are kept
    whole, and an object that became invalid keeps its previous version.
    """
    previous = previous or []
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
        documents = _decode(path, data)
    except (OSError, ValueError, yaml.YAMLError, RecursionError) as error:
        reason = str(error).replace("\n", " ")
        kept = "; keeping its previous version" if previous else ""
        return previous, [Diagnostic(ERROR, f"cannot parse file: {reason}{kept}", path, code="unparsable")]

    objects: list[KubeObject] = []
    diagnostics: list[Diagnostic] = []
    for document in documents:
        for doc in flatten(document):
            try:
                objects.extend(parse_object(doc, path))
            except InvalidObject as error:
                ref = describe(doc)
                kept = [obj for obj in previous if obj.meta.ref == ref] if ref else []
                objects.extend(kept)
                suffix = "; keeping its previous version" if kept else ""
                diagnostics.append(Diagnostic(ERROR, f"{error}{suffix}", path, ref, "invalid"))
            except RecursionError:
                diagnostics.append(Diagnostic(ERROR, "document is nested too deeply", path, describe(doc), "invalid"))
    return objects, diagnostics


class ManifestDirectory:
    """All manifests under one or more directories, recursively; dot-files and dot-directories
    ignored. When two files define the same object, the earlier root (then path order) wins."""

    def __init__(self, *roots: str | os.PathLike):
        self.roots = [str(root) for root in roots]
        self.root = self.roots[0]
        self._files: dict[str, _FileState] = {}
        self._missing: set[str] = set()

    def _paths(self) -> list[str]:
        found = []
        for root in self.roots:
            in_root = []
            for directory, subdirs, files in os.walk(root, followlinks=True):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                in_root += [os.path.join(directory, name) for name in files
                            if not name.startswith(".") and name.endswith(EXTENSIONS)]
            found += sorted(in_root)
        return found

    def scan(self) -> bool:
        """Re-read what changed on disk. True when the snapshot may differ from the last one."""
        changed = False
        seen = set()
        paths = self._paths()
        for path in paths:
            signature = _signature(path)
            if signature is None:
                continue
            seen.add(path)
            state = self._files.get(path)
            digest = b""
            if state is not None and state.signature == signature:
                # Same size and timestamp can still hide a rewrite on filesystems with coarse
                # timestamps: compare contents while a file is fresh.
                if time.time() - signature[0] / 1e9 > RECENT_SECONDS:
                    continue
                digest = _digest(path)
                if digest == state.digest:
                    continue
            objects, diagnostics = parse_file(path, state.objects if state else None)
            self._files[path] = _FileState(signature, digest or _digest(path), objects, diagnostics)
            for diagnostic in diagnostics:
                log.log(logging.ERROR if diagnostic.severity == ERROR else logging.WARNING, "%s", diagnostic,
                        extra={"object": diagnostic.object, "file": diagnostic.origin, "event": "rejected"})
            changed = True
        for path in set(self._files) - seen:
            del self._files[path]
            log.info("manifest %s removed", path)
            changed = True
        if changed:  # keep files in root order, then path order, for deterministic precedence
            order = {path: i for i, path in enumerate(paths)}
            self._files = dict(sorted(self._files.items(), key=lambda item: order.get(item[0], len(order))))
        missing = {root for root in self.roots if not Path(root).is_dir()}
        for root in missing - self._missing:
            log.error("manifest directory %s does not exist (yet)", root)
        self._missing = missing
        return changed

    def snapshot(self) -> Snapshot:
        objects: list[KubeObject] = []
        diagnostics: list[Diagnostic] = []
        owners: dict[tuple[str, str, str], str] = {}
        for path, state in self._files.items():
            diagnostics += state.diagnostics
            for obj in state.objects:
                owner = owners.setdefault(obj.meta.key, path)
                if owner != path:
                    diagnostics.append(Diagnostic(WARNING, f"also defined in {owner}, which wins; ignored here",
                                                  path, obj.meta.ref, "duplicate"))
                    continue
                objects.append(obj)
        version = hashlib.sha256(repr([(path, state.signature) for path, state in self._files.items()])
                                 .encode()).hexdigest()
        return Snapshot(tuple(objects), tuple(diagnostics), version)

    async def watch(self, on_change: Callable[[Snapshot], Awaitable[None] | None],
                    interval: float = POLL_INTERVAL) -> None:
        """Call ``on_change`` with a new snapshot whenever the directory changes (forever)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                changed = await loop.run_in_executor(None, self.scan)
            except Exception:  # never let one bad scan stop the watch
                log.exception("scanning %s failed; will retry", ", ".join(self.roots))
                continue
            if changed:
                result = on_change(self.snapshot())
                if asyncio.iscoroutine(result):
                    await result
