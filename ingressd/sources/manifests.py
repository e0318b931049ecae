"""A directory of YAML/JSON manifests as a source of objects, watched for changes.

Each file keeps its last good objects: a file that stops parsing, or an object in it that becomes
invalid, is reported and the previous version keeps serving until the file is fixed or deleted.

The directories are watched with inotify (through ``watchfiles``): an edit is read within
milliseconds, and an idle directory costs nothing. A slow poll (stat of every file every two
seconds, microseconds per file) stays on as a safety net for what inotify cannot see (network
filesystems); where inotify is unavailable the poll runs four times a second instead. Both see
ConfigMap volume updates (an atomic swap of a symlinked ``..data`` directory).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..certmanager.store import FileSecretStore, FileStatusStore
from ..config import Snapshot
from ..diagnostics import ERROR, WARNING, Diagnostic, InvalidObject
from ..objects import CORE_KINDS, Kinds, KubeObject, ObjectKey, flatten
from ..yamlread import load_all
from .base import ChangeFeed, SourceState

log = logging.getLogger("ingressd.manifests")
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch of changes at INFO

EXTENSIONS = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 64 << 20
POLL_INTERVAL = 0.25  # without inotify
SAFETY_POLL_INTERVAL = 2.0  # with inotify: for what it cannot see
WATCH_STEP_MS = 5  # inotify events are grouped while more arrive this quickly (a file replaced in pieces)
WATCH_MAX_MS = 50  # ... but for no longer than this
RECENT_SECONDS = 2.0
FILE_QUIET = 0.002  # seconds after a scan that found changes before they are handed out


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
    return load_all(text)  # yaml_rs where it reads as PyYAML does, else PyYAML's CSafeLoader


def _same(new: KubeObject, old: KubeObject) -> bool:
    """Whether ``old`` can stand for ``new``: equal content read from the same file."""
    return new == old and new.meta.origin == old.meta.origin


def parse_file(path: str, previous: list[KubeObject] | None = None,
               kinds: Kinds = CORE_KINDS) -> tuple[list[KubeObject], list[Diagnostic]]:
    """The objects of one file and what was wrong with it.

    ``previous`` is the file's last good objects: when the file no longer parses they are kept
    whole, an object that became invalid keeps its previous version, and an object that did not
    change is returned as the previous (identical) Python object.
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

    before = {obj.meta.key: obj for obj in previous}
    objects: list[KubeObject] = []
    diagnostics: list[Diagnostic] = []
    for document in documents:
        for doc in flatten(document):
            try:
                for obj in kinds.parse(doc, path):
                    old = before.get(obj.meta.key)
                    objects.append(old if old is not None and _same(obj, old) else obj)
            except InvalidObject as error:
                ref = kinds.describe(doc)
                kept = [obj for obj in previous if obj.meta.ref == ref] if ref else []
                objects.extend(kept)
                suffix = "; keeping its previous version" if kept else ""
                diagnostics.append(Diagnostic(ERROR, f"{error}{suffix}", path, ref, "invalid"))
            except RecursionError:
                diagnostics.append(Diagnostic(ERROR, "document is nested too deeply", path, kinds.describe(doc),
                                              "invalid"))
    return objects, diagnostics


class ManifestDirectory:
    """All manifests under one or more directories, recursively; dot-files and dot-directories
    ignored. When two files define the same object, the earlier root (then path order) wins.

    A :class:`~ingressd.sources.base.Source`: the directory is polled (``start``), and with
    ``state_dir`` the certificate manager's Secrets and status are files there, read back as
    manifests (``secrets``, ``statuses``)."""

    def __init__(self, *roots: str | os.PathLike, kinds: Kinds = CORE_KINDS, state_dir: str | os.PathLike | None = None,
                 interval: float = POLL_INTERVAL):
        if state_dir is not None:
            roots = (*roots, state_dir)
        self.roots = [str(root) for root in roots]
        self.root = self.roots[0]
        self.kinds = kinds
        self.interval = interval
        self.secrets = FileSecretStore(state_dir) if state_dir is not None else None
        self.statuses = FileStatusStore(state_dir) if state_dir is not None else None
        # watchfiles has grouped a burst of file events already and each scan reads a directory
        # whole: hand a change out at once (the API source's QUIET is for its event bursts)
        self.feed = ChangeFeed(quiet=FILE_QUIET)
        self._files: dict[str, _FileState] = {}
        self._missing: set[str] = set()
        self._scan_lock = threading.Lock()  # one scan at a time (the poll loop, settle())
        self._lock = threading.Lock()  # guards what scan() hands to snapshot()
        self._touched: set[ObjectKey] = set()  # keys in files re-read since the last snapshot
        self._touched_paths: set[str] = set()  # files re-read or removed since the last snapshot
        self._snapshot_files: dict[str, _FileState] = {}  # the files the last snapshot was made of
        self._duplicates = False  # the last snapshot had a key defined twice: the next one is made whole
        self._dirty = False  # a file changed since the last snapshot (its diagnostics may have, alone)
        self._snapshot: Snapshot | None = None
        self._poller: asyncio.Task | None = None
        self._scanned = False

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
        with self._scan_lock:
            return self._scan()

    def _scan(self) -> bool:
        changed = False
        seen = set()
        files = dict(self._files)
        touched: set[ObjectKey] = set()
        touched_paths: set[str] = set()
        paths = self._paths()
        for path in paths:
            signature = _signature(path)
            if signature is None:
                continue
            seen.add(path)
            state = files.get(path)
            digest = b""
            if state is not None and state.signature == signature:
                # Same size and timestamp can still hide a rewrite on filesystems with coarse
                # timestamps: compare contents while a file is fresh.
                if time.time() - signature[0] / 1e9 > RECENT_SECONDS:
                    continue
                digest = _digest(path)
                if digest == state.digest:
                    continue
            objects, diagnostics = parse_file(path, state.objects if state else None, self.kinds)
            files[path] = _FileState(signature, digest or _digest(path), objects, diagnostics)
            touched.update(obj.meta.key for obj in objects)
            if state is not None:
                touched.update(obj.meta.key for obj in state.objects)
            touched_paths.add(path)
            changed = True
        for path in set(files) - seen:
            touched.update(obj.meta.key for obj in files.pop(path).objects)
            touched_paths.add(path)
            log.info("manifest %s removed", path)
            changed = True
        if changed:  # keep files in root order, then path order, for deterministic precedence
            order = {path: i for i, path in enumerate(paths)}
            files = dict(sorted(files.items(), key=lambda item: order.get(item[0], len(order))))
            with self._lock:
                self._files = files
                self._touched |= touched
                self._touched_paths |= touched_paths
                self._dirty = True
        missing = {root for root in self.roots if not Path(root).is_dir()}
        for root in missing - self._missing:
            log.error("manifest directory %s does not exist (yet)", root)
        self._missing = missing
        self._scanned = True
        return changed

    def snapshot(self) -> Snapshot:
        with self._lock:
            previous = self._snapshot
            if previous is not None and not self._dirty:
                self.feed.taken()
                return previous
            files, touched, touched_paths = self._files, self._touched, self._touched_paths
            self._touched, self._touched_paths = set(), set()
            self._dirty = False
            self.feed.taken()
        built = None
        if previous is not None and not self._duplicates:
            built = self._patched(previous, files, touched_paths)
        if built is None:
            built = self._whole(files)
        index, objects, diagnostics = built
        version = hashlib.sha256(repr([(path, state.signature) for path, state in files.items()])
                                 .encode()).hexdigest()
        since, changed = None, frozenset()
        if previous is not None:
            old = previous.by_key
            since = previous.version
            changed = frozenset(k for k in touched if index.get(k) is not old.get(k))
        snapshot = Snapshot(objects, diagnostics, version, since, changed, index)
        with self._lock:
            self._snapshot = snapshot
            self._snapshot_files = files
        return snapshot

    def _whole(self, files: dict[str, _FileState]):
        """The index, objects and diagnostics of ``files``; a key defined twice: the first wins."""
        index: dict[ObjectKey, KubeObject] = {}
        objects: list[KubeObject] = []
        diagnostics: list[Diagnostic] = []
        owners: dict[ObjectKey, str] = {}
        duplicates = False
        for path, state in files.items():
            diagnostics += state.diagnostics
            for obj in state.objects:
                key = obj.meta.key
                owner = owners.setdefault(key, path)
                if key in index:
                    where = "earlier in this file" if owner == path else f"in {owner}"
                    diagnostics.append(Diagnostic(WARNING, f"also defined {where}, which wins; ignored here",
                                                  path, obj.meta.ref, "duplicate"))
                    duplicates = True
                    continue
                index[key] = obj
                objects.append(obj)
        self._duplicates = duplicates
        return index, tuple(objects), tuple(diagnostics)

    def _patched(self, previous: Snapshot, files: dict[str, _FileState], touched_paths: set[str]):
        """``_whole(files)`` made from the previous snapshot when only ``touched_paths`` changed and
        no key is defined twice (then each object is in exactly one file): the previous index with
        those files' old objects taken out and their new ones put in. None: build it whole."""
        if len(touched_paths) * 4 > len(files):
            return None
        before = self._snapshot_files
        index = dict(previous.by_key)
        for path in touched_paths:
            state = before.get(path)
            for obj in state.objects if state is not None else ():
                index.pop(obj.meta.key, None)
        for path in touched_paths:
            state = files.get(path)
            for obj in state.objects if state is not None else ():
                key = obj.meta.key
                if key in index:
                    return None  # a duplicate now: the whole pass reports it
                index[key] = obj
        if len(index) != sum(len(state.objects) for state in files.values()):
            return None
        objects = tuple(itertools.chain.from_iterable(state.objects for state in files.values()))
        diagnostics = tuple(itertools.chain.from_iterable(state.diagnostics for state in files.values()))
        return index, objects, diagnostics

    # --- the Source protocol ----------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        return SourceState("manifests", "manifests in " + ", ".join(self.roots), synced=self._scanned)

    async def start(self) -> None:
        """Read the directories once (so that ``synced`` returns at once), then poll them."""
        self.feed.bind()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.scan)
        if self._poller is None:
            self._poller = loop.create_task(self._watch())

    async def synced(self) -> None:
        if not self._scanned:
            await asyncio.get_running_loop().run_in_executor(None, self.scan)

    async def changed(self) -> None:
        await self.feed.wait()

    async def settle(self, timeout: float = 10.0) -> None:
        """Files written through ``secrets`` are read at once."""
        if await asyncio.get_running_loop().run_in_executor(None, self.scan):
            self.feed.notify()

    def require(self, keys) -> None:
        """Every object of the directory is read already."""

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _watch(self) -> None:
        """Rescan on every inotify event, with a slow poll beside it; only the poll without inotify."""
        try:
            from watchfiles import awatch
        except ImportError:  # pragma: no cover - a dependency; kept working without it
            await self._poll(self.interval)
            return
        safety = asyncio.get_running_loop().create_task(self._poll(max(self.interval, SAFETY_POLL_INTERVAL)))
        try:
            # a file given as a root is replaced by editors and ConfigMap updates: watch its directory
            roots = sorted({root if os.path.isdir(root) else os.path.dirname(os.path.abspath(root))
                            for root in self.roots if os.path.exists(root)})
            if not roots:
                await safety
                return
            async for _ in awatch(*roots, watch_filter=None, step=WATCH_STEP_MS, debounce=WATCH_MAX_MS,
                                  recursive=True, ignore_permission_denied=True):
                await self._rescan()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # no inotify here (limits, filesystem): poll as often as before
            log.warning("cannot watch %s for changes (%s); polling every %.2f s instead",
                        ", ".join(self.roots), error, self.interval)
            safety.cancel()
            await self._poll(self.interval)
        finally:
            safety.cancel()

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._rescan()

    async def _rescan(self) -> None:
        try:
            changed = await asyncio.get_running_loop().run_in_executor(None, self.scan)
        except Exception:  # never let one bad scan stop the watch
            log.exception("scanning %s failed; will retry", ", ".join(self.roots))
            return
        if changed:
            self.feed.notify()
