"""Wiring of one ingressd process: a source, the translator, the data plane, the metrics port."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import signal
import time
from dataclasses import dataclass

from .admin import metrics_handler, serve_admin
from .certmanager import CertificateCollector, CertificateManager, CertSettings
from .config import Config, Settings, Snapshot
from .dataplane.server import DataPlane, bind_listeners
from .dataplane.stats import Counters, Histogram
from .diagnostics import Reporter
from .objects import Ingress
from .metrics import make_registry
from .sources import Source, SourceOptions, open_source
from .status import status_handlers
from .incremental import Translator
from .translate import required_objects
from .workers import WorkerPool

log = logging.getLogger("ingressd")

ACCEPTED_LOG_LIMIT = 100  # more Ingresses accepted at once are logged in one line (and each at debug)
APPLY_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ServeOptions:
    source: SourceOptions
    listen: str | None
    http_port: int
    https_port: int
    metrics_port: int
    settings: Settings
    hsts: bool = True
    metrics_per_undefined_host: bool = False
    access_log: bool = True
    log_format: str = "text"
    log_level: str = "info"
    workers: int = 1  # data-plane processes; 1 serves from the control plane's own process
    certificates: CertSettings = CertSettings()  # --state-dir, --default-issuer, --acme-*
    # in a cluster: leader election (--election-id, --election-ttl) and Ingress status (--publish-*)
    election_id: str = "ingressd-leader"
    election_ttl: float = 15.0
    publish_service: str | None = None
    publish_status_addresses: tuple[str, ...] = ()
    http2: bool = True  # --http2 / --no-http2: ALPN offers h2 on the HTTPS listener
    h2c: bool = False  # --h2c: the HTTP listener serves HTTP/2 with prior knowledge too
    max_connections: int = 16384  # client connections per worker (ingress-nginx max-worker-connections)
    ssl_passthrough: bool = False  # --enable-ssl-passthrough (ingress-nginx's flag): honour ssl-passthrough
    # --proxy-api ADDR:PORT: configurable-http-proxy's REST API for JupyterHub (ingressd.chp.hub)
    proxy_api: tuple[str | None, int] | None = None
    proxy_api_token: str | None = None  # CONFIGPROXY_AUTH_TOKEN
    proxy_api_host_routing: bool = False  # the first segment of a Hub route is its host


class Controller:
    """Turns each snapshot from the source into a configuration and hands it to the data plane."""

    def __init__(self, options: ServeOptions, plane: DataPlane, source: Source | None = None, hub=None):
        self.options = options
        self.plane = plane
        self.hub = hub  # ingressd.chp.hub.HubRoutes with --proxy-api: adds the Hub's routes to each configuration
        self.source = source if source is not None else open_source(options.source)
        self.reporter = Reporter(log)  # every diagnostic, from the source, translator and planner, logged once
        self.certs = CertificateManager.for_source(self.source, options.certificates, options.settings,
                                                   plane.set_challenges, self.reporter)
        self.leadership = self._leadership()  # in a cluster: None for the manifest directory
        events = getattr(self.source, "event_recorder", None)  # in a cluster: diagnostics as Events too
        if events is not None:
            self.reporter.sinks.append(events(lambda: self.leading))
        self.snapshot: Snapshot | None = None  # the last one applied
        self._ingresses: set = set()  # keys of the Ingresses reported
        self.snapshot_reported: Snapshot | None = None
        # what the controller metrics report (ingress-nginx's "reload" is ingressd's apply)
        self.config: Config | None = None
        self.config_hash = 0
        self.last_apply_ok = True
        self.last_success_at = 0.0
        self.successes = self.failures = 0
        self.apply_durations = Histogram(APPLY_BUCKETS)
        self._required: frozenset = frozenset()  # objects asked of the source besides its own kinds
        self.translator = Translator(options.settings)  # recompiles only the hosts a change touches

    def _leadership(self):
        """In a cluster, only the elected replica orders certificates and writes Ingress status. The
        Kubernetes source offers the API calls that needs as ``source.cluster`` (a LeaseClient and
        StatusClient, see ingressd.kube.leader and .publisher)."""
        client = getattr(self.source, "cluster", None)
        if client is None:
            return None
        from .kube.leadership import Leadership

        options = self.options
        return Leadership(client, options.settings, self.certs, election_id=options.election_id,
                          ttl=options.election_ttl, publish_service=options.publish_service,
                          publish_addresses=options.publish_status_addresses)

    @property
    def leading(self) -> bool:
        """For ``leader_election_status``: the manifest directory has a single instance, always leading."""
        return self.leadership is None or self.leadership.leading

    async def apply(self, snapshot: Snapshot) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            if self.translator.is_small(snapshot):
                # a few objects changed: milliseconds; on the loop, without two thread hand-offs
                # (and the GIL shared with the requests the loop serves meanwhile)
                config = self.translator.translate(snapshot)
            else:  # a whole pass (seconds with 10,000 Ingresses): requests go on between its slices
                config = await loop.run_in_executor(None, self.translator.translate, snapshot)
        except Exception:  # a translator bug must not take down what is serving
            log.exception("translating the new objects failed; keeping the previous configuration")
            self.failures += 1
            self.last_apply_ok = False
            return
        self.plane.apply(self.hub.apply(config, snapshot) if self.hub is not None else config)
        self.config = config
        if config.required != self._required:  # Secrets the annotations name (auth, upstream CA)
            self._required = config.required
            self.source.require(config.required)
        self.snapshot = snapshot
        self.certs.update(snapshot, config)
        if self.leadership is not None:
            self.leadership.update(snapshot)
        self.config_hash = int(hashlib.sha256(f"{snapshot.version}{self.options.settings}".encode())
                               .hexdigest()[:13], 16)
        self.successes += 1
        self.last_apply_ok = True
        self.last_success_at = time.time()
        self.apply_durations.observe(time.perf_counter() - started)
        self.report(snapshot, config)
        log.info("configuration applied: %d ingresses, %d hosts, %d certificates in %.0f ms (%s)",
                 config.ingress_count, len(config.table.hosts), len({id(c) for c in config.certificates.values()}),
                 (time.perf_counter() - started) * 1000, self.translator.last_mode)

    def report(self, snapshot: Snapshot, config: Config) -> None:
        """Log each new diagnostic once (the source's are in the configuration's), and each Ingress
        that appeared, changed or went away: only the keys the source says changed are looked at.
        More than ``ACCEPTED_LOG_LIMIT`` at once (a start with thousands of Ingresses) are counted
        in one line at INFO, each one at DEBUG."""
        self.reporter.update("config", config.diagnostics)
        by_key = snapshot.by_key
        changed = snapshot.changes_since(self.snapshot_reported)
        keys = by_key.keys() | self._ingresses if changed is None else changed
        accepted, removed = [], []
        for key in keys:
            if key[0] != "Ingress":
                continue
            ingress = by_key.get(key)
            if ingress is None:
                if key in self._ingresses:
                    self._ingresses.discard(key)
                    removed.append(key)
            else:
                self._ingresses.add(key)
                accepted.append(ingress)
        self.snapshot_reported = snapshot
        many = len(accepted) > ACCEPTED_LOG_LIMIT
        for ingress in accepted if not many or log.isEnabledFor(logging.DEBUG) else ():
            log.log(logging.DEBUG if many else logging.INFO, "%s accepted", ingress.meta.ref,
                    extra={"object": ingress.meta.ref, "file": ingress.meta.origin, "event": "accepted"})
        if many:
            log.info("%d Ingresses accepted (each one logged at debug level)", len(accepted),
                     extra={"event": "accepted"})
        for key in removed:
            ref = f"Ingress {key[1]}/{key[2]}"
            log.info("%s removed", ref, extra={"object": ref, "event": "removed"})

    async def load(self) -> None:
        """Read the source completely once and apply the result: done before any port opens, so
        that nothing partial is ever served.

        The cyclic collector is off meanwhile: reading 10,000 Ingresses allocates millions of
        objects, none of them garbage in a cycle, and the full collections that allocation triggers
        over the growing heap cost a sixth of the start's CPU time for nothing. The data plane
        freezes what is left out of the collector once the configuration is applied."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            await self._load()
        finally:
            if collecting:
                gc.enable()

    async def _load(self) -> None:
        self._required = frozenset(required_objects(self.options.settings))
        self.source.require(self._required)  # the controller ConfigMap, before the first configuration
        await self.source.start()
        await self.source.synced()
        if await self.certs.start(self.source.snapshot()):  # temporary certificates before the first config
            await self.source.settle()
        await self.apply(self.source.snapshot())

    async def run(self) -> None:
        """Apply every change of the source (bursts coalesced by the source), forever."""
        certs = asyncio.get_running_loop().create_task(self.certs.run())
        if self.leadership is not None:
            self.leadership.start()  # after the ports opened: a new leader can answer HTTP-01 at once
        try:
            while True:
                await self.source.changed()
                snapshot = self.source.snapshot()
                if snapshot is not self.snapshot:
                    await self.apply(snapshot)
        finally:
            certs.cancel()
            await self.certs.close()
            if self.leadership is not None:
                await self.leadership.close()  # releases the Lease: the other replica takes over at once
            await self.source.close()


async def serve(options: ServeOptions) -> None:
    sockets = bind_listeners(options.listen, options.http_port, options.https_port)
    if options.workers > 1:
        plane = WorkerPool(options, options.workers, sockets)
    else:
        plane = DataPlane.from_options(options)
    hub = None
    if options.proxy_api is not None:
        from .chp.hub import HubRoutes

        hub = HubRoutes(plane, options.proxy_api_token, options.proxy_api_host_routing)
    controller = Controller(options, plane, hub=hub)
    latest = Counters()

    async def refresh_counters() -> None:
        nonlocal latest
        latest = await plane.gather_counters()

    registry = make_registry(lambda: latest, options.settings.ingress_classes[0], controller)
    registry.register(CertificateCollector(controller.certs))
    admin = await serve_admin(options.listen, options.metrics_port, {
        "/metrics": metrics_handler(registry, refresh_counters),
        "/healthz": lambda: (200, "text/plain", b"ok\n"),
        "/readyz": lambda: (200, "text/plain", b"ready\n") if plane.ready else
        (503, "text/plain", b"waiting for the first configuration\n"),
        **status_handlers(plane, certificates=controller.certs.status_entries,
                          source=lambda: controller.source.state),  # "/", assets, "/status.json"
    })
    if isinstance(plane, WorkerPool):
        plane.spawn()  # the workers start (import) while the source is read
    await controller.load()
    if isinstance(plane, WorkerPool):
        await plane.start()
    else:
        await plane.listen(sockets)
    if hub is not None:
        await hub.start(*options.proxy_api)
    where = options.listen or "*"
    log.info("serving with %d worker process(es): HTTP on %s:%d, HTTPS on %s:%d, metrics on %s:%d",
             options.workers, where, options.http_port, where, options.https_port, where, options.metrics_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(controller.run())
    stopping = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({watcher, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if watcher in done and watcher.exception() is not None:
        log.error("the source watcher stopped", exc_info=watcher.exception())
    watcher.cancel()
    stopping.cancel()
    await asyncio.gather(watcher, return_exceptions=True)  # its cleanup (Lease release) before the exit
    # worker-shutdown-timeout: requests in flight finish, websockets run on until the timeout.
    # A second SIGTERM or SIGINT ends the wait.
    config = plane.config
    drain = loop.create_task(plane.drain(config.shutdown_timeout if config is not None else 0.0))
    interrupted = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, interrupted.set)
    interrupt = loop.create_task(interrupted.wait())
    await asyncio.wait({drain, interrupt}, return_when=asyncio.FIRST_COMPLETED)
    drain.cancel()
    interrupt.cancel()
    admin.close()
    if hub is not None:
        await hub.close()
    await plane.close()
    log.info("stopped")
