"""Wiring of one ingressd process: a source, the translator, the data plane, the metrics port."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

from .admin import metrics_handler, serve_admin
from .config import Config, Settings, Snapshot
from .dataplane.server import DataPlane
from .diagnostics import ERROR
from .metrics import make_registry
from .sources.manifests import ManifestDirectory
from .translate import translate

log = logging.getLogger("ingressd")


@dataclass(frozen=True)
class ServeOptions:
    manifests: str
    listen: str | None
    http_port: int
    https_port: int
    metrics_port: int
    settings: Settings
    hsts: bool = True
    metrics_per_undefined_host: bool = False


class Controller:
    """Turns each snapshot from the source into a configuration and hands it to the data plane."""

    def __init__(self, options: ServeOptions, plane: DataPlane):
        self.options = options
        self.plane = plane
        self.source = ManifestDirectory(options.manifests)
        self._reported: set = set()
        self.applied_at = 0.0

    async def apply(self, snapshot: Snapshot) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            config = await loop.run_in_executor(None, translate, snapshot, self.options.settings)
        except Exception:  # a translator bug must not take down what is serving
            log.exception("translating the new objects failed; keeping the previous configuration")
            return
        self.plane.apply(config)
        self.applied_at = time.time()
        self.report(config)
        log.info("configuration applied: %d ingresses, %d routes, %d certificates in %.0f ms",
                 config.ingress_count, len(config.table.routes()),
                 len(set(config.certificates.values()) | set(config.wildcard_certificates.values())),
                 (time.perf_counter() - started) * 1000)

    def report(self, config: Config) -> None:
        """Log translation diagnostics once each (file errors are logged by the source as read)."""
        current = {d for d in config.diagnostics if d.object or not d.origin}
        for diagnostic in config.diagnostics:
            if diagnostic in current and diagnostic not in self._reported:
                log.log(logging.ERROR if diagnostic.severity == ERROR else logging.WARNING, "%s", diagnostic)
        self._reported = current

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.source.scan)
        await self.apply(self.source.snapshot())
        await self.source.watch(self.apply)


async def serve(options: ServeOptions) -> None:
    plane = DataPlane(https_port=options.https_port, hsts=options.hsts)
    controller = Controller(options, plane)
    registry = make_registry(plane, options.settings.ingress_classes[0], options.metrics_per_undefined_host)
    admin = await serve_admin(options.listen, options.metrics_port, {
        "/metrics": metrics_handler(registry),
        "/healthz": lambda: (200, "text/plain", b"ok\n"),
        "/readyz": lambda: (200, "text/plain", b"ready\n") if plane.ready else
        (503, "text/plain", b"waiting for the first configuration\n"),
    })
    await plane.listen(options.listen, options.http_port, options.https_port)
    log.info("serving HTTP on %s:%d, HTTPS on %s:%d, metrics on %s:%d", options.listen or "*", options.http_port,
             options.listen or "*", options.https_port, options.listen or "*", options.metrics_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(controller.run())
    stopping = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({watcher, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if watcher in done and watcher.exception() is not None:
        log.error("the manifest watcher stopped", exc_info=watcher.exception())
    watcher.cancel()
    stopping.cancel()
    admin.close()
    await plane.close()
    log.info("stopped")
