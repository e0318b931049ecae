"""Prometheus metrics, named as ingress-nginx names them so that existing dashboards keep working.

The request path only bumps plain dict counters in the data plane; this collector turns them into
samples when Prometheus scrapes, so metrics cost the request path one dict update.
"""

from __future__ import annotations

import os
import socket

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from . import __version__
from .dataplane.server import DataPlane

PREFIX = "nginx_ingress_controller_"
REQUEST_LABELS = ("namespace", "ingress", "service", "host", "path")


def controller_labels(ingress_class: str) -> dict[str, str]:
    return {
        "controller_namespace": os.environ.get("POD_NAMESPACE", ""),
        "controller_class": ingress_class,
        "controller_pod": os.environ.get("POD_NAME", socket.gethostname()),
    }


class DataPlaneCollector:
    def __init__(self, plane: DataPlane, constant: dict[str, str], per_undefined_host: bool = False):
        self.plane = plane
        self.constant = constant
        self.per_undefined_host = per_undefined_host

    def collect(self):
        plane = self.plane
        requests = Metric(PREFIX + "requests", "The total number of client requests", "counter")
        for (labels, method, status), count in list(plane.stats.items()):
            if not labels[1] and not self.per_undefined_host:
                continue  # requests no Ingress defines, as ingress-nginx leaves them out
            sample = dict(zip(REQUEST_LABELS, labels))
            sample.update(self.constant, method=method.decode("latin-1"), status=str(status), canary="")
            requests.add_sample(PREFIX + "requests", sample, count)
        yield requests

        connections = Metric(PREFIX + "nginx_process_connections", "current number of client connections",
                             "gauge")
        active = len(plane.connections)
        for state, value in (("active", active), ("reading", 0), ("writing", active), ("waiting", 0)):
            connections.add_sample(connections.name, dict(self.constant, state=state), value)
        yield connections
        accepted = Metric(PREFIX + "nginx_process_connections_total", "total number of connections", "counter")
        for state in ("accepted", "handled"):
            accepted.add_sample(PREFIX + "nginx_process_connections_total", dict(self.constant, state=state),
                                plane.accepted)
        yield accepted

        upgraded = Metric("ingressd_upgraded_connections", "Open upgraded (websocket) connections", "gauge")
        upgraded.add_sample(upgraded.name, {}, plane.upgraded)
        yield upgraded
        pool = Metric("ingressd_upstream_idle_connections", "Idle keep-alive connections to upstreams", "gauge")
        pool.add_sample(pool.name, {}, plane.pool.count())
        yield pool
        build = Metric(PREFIX + "build_info", "ingressd build information", "gauge")
        build.add_sample(build.name, dict(self.constant, release=__version__, build="ingressd",
                                          repository="ingressd"), 1)
        yield build


def make_registry(plane: DataPlane, ingress_class: str, per_undefined_host: bool = False) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(DataPlaneCollector(plane, controller_labels(ingress_class), per_undefined_host))
    return registry


# ingress-nginx's counters carry no ``_total`` suffix; prometheus_client names counter families with
# one. Dashboards query the samples, but the family name should match them for typed scrapes.
_BARE_COUNTERS = (PREFIX + "requests",)


def render(registry: CollectorRegistry) -> bytes:
    text = generate_latest(registry)
    for name in _BARE_COUNTERS:
        encoded = name.encode()
        text = text.replace(b"# HELP " + encoded + b"_total ", b"# HELP " + encoded + b" ", 1)
        text = text.replace(b"# TYPE " + encoded + b"_total counter", b"# TYPE " + encoded + b" counter", 1)
    return text
