"""Where objects come from: one :class:`~ingressd.sources.base.Source` protocol, one factory.

``open_source(options)`` is what ``serve``, ``check``, ``routes`` and ``certs`` call; the kinds a
source parses are passed to it explicitly (``source_kinds``), never registered globally.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import Snapshot
from ..objects import CORE_KINDS, Kinds
from .base import Source, SourceState

__all__ = ["Source", "SourceOptions", "SourceState", "open_source", "read_once", "source_kinds"]


@dataclass(frozen=True)
class SourceOptions:
    """The command-line choices that say where objects come from."""

    manifests: str | None = None  # --manifests DIR
    state_dir: str | None = None  # --state-dir: managed Secrets and certificate status, read back as manifests
    certificates: bool = True  # read ClusterIssuers and Issuers (off with --no-certificates)
    kubernetes: bool = False  # --kubernetes: the API server (in-cluster, or --kubeconfig/--context)
    kubeconfig: str | None = None
    context: str | None = None
    watch_namespaces: tuple[str, ...] = ()  # --watch-namespace (repeatable); () = all
    require: tuple = ()  # object keys read besides the defaults (the controller ConfigMap)


def source_kinds(certificates: bool = True) -> Kinds:
    """The parser table: the core kinds, plus cert-manager's issuers when certificates are managed."""
    if not certificates:
        return CORE_KINDS
    from ..certmanager.issuers import with_issuer_kinds

    return with_issuer_kinds(CORE_KINDS)


def open_source(options: SourceOptions) -> Source:
    from .manifests import ManifestDirectory

    if options.kubernetes:
        from ..kube.client import KubeClient
        from .kubernetes import KubernetesSource

        client = KubeClient.connect(options.kubeconfig, options.context)
        return KubernetesSource(client, kinds=source_kinds(options.certificates), namespaces=options.watch_namespaces,
                                certificates=options.certificates, require=options.require)
    if options.manifests is None:
        raise ValueError("no source: give --manifests DIR or --kubernetes")
    return ManifestDirectory(options.manifests, kinds=source_kinds(options.certificates), state_dir=options.state_dir)


async def read_once(source: Source, timeout: float | None = None) -> Snapshot:
    """Start ``source``, wait until it has read everything once, and return that snapshot (then stop)."""
    await source.start()
    try:
        await asyncio.wait_for(source.synced(), timeout)
        return source.snapshot()
    finally:
        await source.close()
