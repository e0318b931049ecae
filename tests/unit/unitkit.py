"""Builders for manifest documents and a one-call translate, shared by the unit tests.

Documents are plain dicts shaped like decoded YAML, so every test goes through ``parse_object``
exactly as a manifest would.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from ingressd.config import Settings, Snapshot
from ingressd.objects import parse_object
from ingressd.routing import normalize_path
from ingressd.translate import translate

NGINX = "nginx.ingress.kubernetes.io/"


def backend(service: str, port: int | str = 80) -> dict:
    port_spec = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": port_spec}}


def path(p: str | None, service: str = "svc", port: int | str = 80, path_type: str | None = "Prefix") -> dict:
    item: dict = {"backend": backend(service, port)}
    if p is not None:
        item["path"] = p
    if path_type is not None:
        item["pathType"] = path_type
    return item


def rule(host: str | None, *paths: dict) -> dict:
    r: dict = {"http": {"paths": list(paths)}}
    if host is not None:
        r["host"] = host
    return r


def ingress(name: str, *rules: dict, namespace: str | None = None, created: str | None = None,
            class_name: str | None = None, annotations: dict | None = None, tls: list | None = None,
            default_backend: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if created is not None:
        meta["creationTimestamp"] = created
    if annotations:
        meta["annotations"] = dict(annotations)
    spec: dict = {}
    if rules:
        spec["rules"] = list(rules)
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if tls is not None:
        spec["tls"] = tls
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def ingress_class(name: str, controller: str, default: bool = False) -> dict:
    meta: dict = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def service(name: str, ports=((None, 80, 8080),), namespace: str | None = None, type_: str | None = None,
            external_name: str | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    spec: dict = {"ports": []}
    for port_name, number, target in ports:
        p: dict = {"port": number}
        if port_name:
            p["name"] = port_name
        if target is not None:
            p["targetPort"] = target
        spec["ports"].append(p)
    if type_:
        spec["type"] = type_
    if external_name:
        spec["externalName"] = external_name
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint_slice(name: str, service_name: str, addresses, ports=((None, 8080),), namespace: str | None = None,
                   not_ready=()) -> dict:
    meta: dict = {"name": name, "labels": {"kubernetes.io/service-name": service_name}}
    if namespace is not None:
        meta["namespace"] = namespace
    endpoints = [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]
    endpoints += [{"addresses": [a], "conditions": {"ready": False}} for a in not_ready]
    slice_ports = []
    for port_name, number in ports:
        p: dict = {"port": number, "protocol": "TCP"}
        if port_name is not None:
            p["name"] = port_name
        slice_ports.append(p)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": "IPv4", "endpoints": endpoints, "ports": slice_ports}


def svc_with_endpoints(name: str, addresses=("10.0.0.1",), namespace: str | None = None) -> list[dict]:
    """A ClusterIP Service on port 80 (unnamed) and a slice with ``addresses`` on 8080."""
    return [service(name, namespace=namespace),
            endpoint_slice(name + "-abcde", name, addresses, namespace=namespace)]


def tls_secret(name: str, cert_pem: bytes, key_pem: bytes, namespace: str | None = None,
               string_data: bool = False) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    doc: dict = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": meta}
    if string_data:
        doc["stringData"] = {"tls.crt": cert_pem.decode(), "tls.key": key_pem.decode()}
    else:
        doc["data"] = {"tls.crt": base64.b64encode(cert_pem).decode(),
                       "tls.key": base64.b64encode(key_pem).decode()}
    return doc


@lru_cache(maxsize=None)
def cert_for(*names: str) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) of a self-signed certificate for ``names``; cached, generation is slow-ish."""
    from ingressd.certs import self_signed
    cert = self_signed(tuple(names))
    return cert.cert_pem, cert.key_pem


def objects(*docs):
    result = []
    for doc in docs:
        if isinstance(doc, list):
            result += objects(*doc)
        else:
            result += parse_object(doc, "test.yaml")
    return tuple(result)


def compile_config(*docs, **settings):
    return translate(Snapshot(objects(*docs)), Settings(**settings))


def lookup(config, host: str, raw_path: str):
    """What the data plane does per request: normalize the path (query removed) and look up."""
    p = normalize_path(raw_path.partition("?")[0])
    assert p is not None
    return config.table.lookup(host, p)


def served_by(config, host: str, raw_path: str) -> str | None:
    """The service name that answers, or None for the built-in 404 default backend."""
    route = lookup(config, host, raw_path)
    return route.backend.service if route.backend else None


def messages(config, severity: str | None = None) -> list[str]:
    return [str(d) for d in config.diagnostics if severity is None or d.severity == severity]
