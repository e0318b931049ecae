"""Prometheus metrics, named as ingress-nginx names them so that existing dashboards keep working.

The request path only bumps plain dict counters in the data plane; this collector turns them into
samples when Prometheus scrapes, so metrics cost the request path one dict update.
"""

from __future__ import annotations

import os
import socket
from typing import Callable

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from . import __version__
from .dataplane.stats import Counters

PREFIX = "nginx_ingress_controller_"
REQUEST_LABELS = ("namespace", "ingress", "service", "host", "path")


def controller_labels(ingress_class: str) -> dict[str, str]:
    return {
        "controller_namespace": os.environ.get("POD_NAMESPACE", ""),
        "controller_class": ingress_class,
        "controller_pod": os.environ.get("POD_NAME", socket.gethostname()),
    }


def _histogram(name: str, documentation: str, samples) -> Metric:
    """A histogram family from (labels, ingressd.dataplane.stats.Histogram) pairs."""
    family = Metric(name, documentation, "histogram")
    for labels, histogram in samples:
        count = 0
        for le, count in histogram.cumulative():
            family.add_sample(name + "_bucket", dict(labels, le=le), count)
        family.add_sample(name + "_sum", labels, histogram.sum)
        family.add_sample(name + "_count", labels, count)
    return family


def _gauge(name: str, documentation: str, value: float, labels: dict | None = None) -> Metric:
    family = Metric(name, documentation, "gauge")
    family.add_sample(name, labels or {}, value)
    return family


class DataPlaneCollector:
    """Request, connection and upstream metrics from data plane counters (one plane, or the sum of
    all worker processes' planes)."""

    def __init__(self, counters: Callable[[], Counters], constant: dict[str, str]):
        self.counters = counters
        self.constant = constant

    def collect(self):
        counters = self.counters()
        constant = self.constant
        requests = Metric(PREFIX + "requests", "The total number of client requests", "counter")
        per_route = []
        for (labels, method, status), stats in counters.stats.items():
            sample = dict(zip(REQUEST_LABELS, labels))
            sample.update(constant, method=method.decode("latin-1"), status=str(status),
                          canary=labels[5] if len(labels) > 5 else "")  # the canary backend that served
            requests.add_sample(PREFIX + "requests", sample, stats.count)
            per_route.append((sample, stats))
        yield requests
        for attribute, name, documentation in (
            ("duration", "request_duration_seconds", "The request processing time in seconds"),
            ("response", "response_duration_seconds", "The time spent receiving the response from the upstream"),
            ("header", "header_duration_seconds", "The time spent receiving the first header from the upstream"),
            ("connect", "connect_duration_seconds", "The time spent establishing a connection to the upstream"),
            ("request_size", "request_size", "The request length (including headers and body)"),
            ("response_size", "response_size", "The response length (including headers and body)"),
        ):
            # Upstream timings exist only for proxied requests: no empty series for local answers.
            always = attribute in ("duration", "request_size", "response_size")
            yield _histogram(PREFIX + name, documentation,
                             ((sample, getattr(stats, attribute)) for sample, stats in per_route
                              if always or any(getattr(stats, attribute).counts)))

        connections = Metric(PREFIX + "nginx_process_connections", "current number of client connections with state",
                             "gauge")
        for state in ("active", "reading", "writing", "waiting"):
            connections.add_sample(connections.name, dict(constant, state=state), getattr(counters, state))
        yield connections
        # prometheus_client names counter families without "_total" and adds it back on exposition.
        accepted = Metric(PREFIX + "nginx_process_connections", "total number of connections with state", "counter")
        for state, value in (("accepted", counters.accepted), ("handled", counters.accepted - counters.refused)):
            accepted.add_sample(PREFIX + "nginx_process_connections_total", dict(constant, state=state), value)
        yield accepted
        refused = Metric("ingressd_connections_refused", "Client connections closed at once because the worker "
                         "had --max-worker-connections open", "counter")
        refused.add_sample("ingressd_connections_refused_total", {"reason": "limit"}, counters.refused)
        yield refused
        goaway = Metric("ingressd_http2_goaway", "HTTP/2 client connections ingressd ended with GOAWAY, by error "
                        "code (ENHANCE_YOUR_CALM: a flood or rapid reset; NO_ERROR: idle)", "counter")
        for code, count in sorted(getattr(counters, "h2_goaways", {}).items()):
            goaway.add_sample("ingressd_http2_goaway_total", {"code": code}, count)
        yield goaway
        total = Metric(PREFIX + "nginx_process_requests", "total number of client requests", "counter")
        total.add_sample(PREFIX + "nginx_process_requests_total", constant,
                         sum(stats.count for stats in counters.stats.values()))
        yield total
        yield _gauge(PREFIX + "nginx_process_resident_memory_bytes", "number of bytes of memory in use",
                     counters.rss, constant)
        cpu = Metric(PREFIX + "nginx_process_cpu_seconds", "Cpu usage in seconds", "counter")
        cpu.add_sample(PREFIX + "nginx_process_cpu_seconds_total", constant, counters.cpu)
        yield cpu

        yield _gauge("ingressd_upgraded_connections", "Open upgraded (websocket) connections", counters.upgraded)
        yield _histogram("ingressd_upgraded_connection_duration_seconds", "Lifetime of closed upgraded connections",
                         [({}, counters.upgraded_lifetimes)])
        yield _gauge("ingressd_upstream_idle_connections", "Idle keep-alive connections to upstreams",
                     counters.idle_upstream)
        upstream = Metric("ingressd_upstream_connections", "Upstream connections used for requests", "counter")
        upstream.add_sample("ingressd_upstream_connections_total", {"result": "new"}, counters.upstream_new)
        upstream.add_sample("ingressd_upstream_connections_total", {"result": "reused"}, counters.upstream_reused)
        yield upstream
        yield _gauge(PREFIX + "build_info", "ingressd build information", 1,
                     dict(constant, release=__version__, build="ingressd", repository="ingressd"))


class ControllerCollector:
    """Configuration and certificate metrics from the control plane (``app.Controller``)."""

    def __init__(self, controller, constant: dict[str, str]):
        self.controller = controller
        self.constant = constant

    def collect(self):
        controller, constant = self.controller, self.constant
        yield _gauge(PREFIX + "config_hash", "Running configuration hash actually running", controller.config_hash,
                     constant)
        yield _gauge(PREFIX + "config_last_reload_successful", "Whether the last configuration apply succeeded",
                     1 if controller.last_apply_ok else 0, constant)
        yield _gauge(PREFIX + "config_last_reload_successful_timestamp_seconds",
                     "Timestamp of the last successful configuration apply", controller.last_success_at, constant)
        for name, value, documentation in (("success", controller.successes, "Cumulative successful applies"),
                                           ("errors", controller.failures, "Cumulative failed applies")):
            family = Metric(PREFIX + name, documentation, "counter")
            family.add_sample(PREFIX + name, constant, value)
            yield family
        yield _gauge(PREFIX + "leader_election_status", "Gauge reporting status of the leader election, 0 indicates "
                     "follower, 1 indicates leader. 'name' is the string used to identify the lease",
                     1 if getattr(controller, "leading", True) else 0,
                     dict(constant, name=getattr(getattr(controller, "options", None), "election_id", "ingressd-leader")))
        yield _histogram("ingressd_config_apply_duration_seconds", "Time to compile and apply a configuration",
                         [({}, controller.apply_durations)])
        source = getattr(controller, "source", None)
        state = getattr(source, "state", None)
        if state is not None and state.kind == "kubernetes":
            yield _gauge("ingressd_kubernetes_api_connected", "Whether every watch of the Kubernetes API is "
                         "connected (0: the API cannot be reached; the last configuration keeps serving)",
                         1 if state.connected else 0, {})

        config = controller.config
        expire = Metric(PREFIX + "ssl_expire_time_seconds", "Number of seconds since 1970 to the SSL Certificate "
                        "expire", "gauge")
        info = Metric(PREFIX + "ssl_certificate_info", "Hold all labels associated to a certificate", "gauge")
        orphans = Metric(PREFIX + "orphan_ingress", "Gauge reporting status of ingress orphanity, 1 indicates "
                         "orphaned ingress", "gauge")
        rejected = Metric("ingressd_objects_rejected", "Objects or files rejected, by kind and reason", "gauge")
        if config is not None:
            hosts = list(config.certificates.items())
            for host, cert in hosts:
                namespace, _, secret = cert.source.partition("/")
                labels = dict(constant, namespace=namespace, host=host, secret_name=secret, identifier=cert.serial,
                              **{"class": constant["controller_class"]})
                expire.add_sample(expire.name, labels, cert.not_after.timestamp())
                info.add_sample(info.name, dict(labels, issuer_organization=cert.issuer_organization,
                                                issuer_common_name=cert.issuer_common_name,
                                                serial_number=cert.serial,
                                                public_key_algorithm=cert.public_key_algorithm), 1)
            for namespace, ingress, kind in config.orphans:
                orphans.add_sample(orphans.name, dict(constant, namespace=namespace, ingress=ingress, type=kind), 1)
            counts: dict[tuple[str, str], int] = {}
            for diagnostic in config.diagnostics:
                if diagnostic.severity == "error":
                    key = (diagnostic.kind, diagnostic.code or "invalid")
                    counts[key] = counts.get(key, 0) + 1
            for (kind, reason), count in sorted(counts.items()):
                rejected.add_sample(rejected.name, {"kind": kind, "reason": reason}, count)
        yield expire
        yield info
        yield orphans
        yield rejected


def make_registry(counters: Callable[[], Counters], ingress_class: str, controller=None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    constant = controller_labels(ingress_class)
    registry.register(DataPlaneCollector(counters, constant))
    if controller is not None:
        registry.register(ControllerCollector(controller, constant))
    return registry


# Every metric family ingressd exports (histograms by family name), for dashboards and their tests.
EXPORTED_SERIES = frozenset({PREFIX + name for name in (
    "requests", "request_duration_seconds", "response_duration_seconds", "header_duration_seconds",
    "connect_duration_seconds", "request_size", "response_size", "config_hash", "config_last_reload_successful",
    "config_last_reload_successful_timestamp_seconds", "success", "errors", "ssl_expire_time_seconds",
    "ssl_certificate_info", "orphan_ingress", "nginx_process_connections", "nginx_process_connections_total",
    "nginx_process_requests_total", "nginx_process_resident_memory_bytes", "nginx_process_cpu_seconds_total",
    "leader_election_status", "build_info")} | {
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
    "process_open_fds", "process_max_fds", "process_start_time_seconds", "python_info",
    "ingressd_upgraded_connections", "ingressd_upgraded_connection_duration_seconds",
    "ingressd_upstream_idle_connections", "ingressd_upstream_connections_total", "ingressd_certificate_orders_total",
    "ingressd_certificate_next_renewal_timestamp_seconds", "ingressd_objects_rejected",
    "ingressd_config_apply_duration_seconds", "ingressd_kubernetes_api_connected"})


# ingress-nginx's counters carry no ``_total`` suffix; prometheus_client names counter families with
# one. Dashboards query the samples, but the family name should match them for typed scrapes.
_BARE_COUNTERS = (PREFIX + "requests", PREFIX + "success", PREFIX + "errors")


def render(registry: CollectorRegistry) -> bytes:
    text = generate_latest(registry)
    for name in _BARE_COUNTERS:
        encoded = name.encode()
        text = text.replace(b"# HELP " + encoded + b"_total ", b"# HELP " + encoded + b" ", 1)
        text = text.replace(b"# TYPE " + encoded + b"_total counter", b"# TYPE " + encoded + b" counter", 1)
    return text
