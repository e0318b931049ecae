"""Concise builders for the Kubernetes objects ingressd reads, and a manifest directory."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Iterable

import yaml

ANN = "nginx.ingress.kubernetes.io/"
CONTROLLER = "ingressd.io/ingress-controller"


def _meta(name: str, namespace: str | None = "default", **extra) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


# --- Services and endpoints ---------------------------------------------------------------------


def service(name: str, ports: Iterable[dict], namespace: str | None = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace),
        "spec": {"type": "ClusterIP", "ports": list(ports)},
    }


def port_spec(name: str | None, port: int, target_port: int | str | None = None) -> dict:
    p: dict = {"port": port, "protocol": "TCP"}
    if name:
        p["name"] = name
    p["targetPort"] = target_port if target_port is not None else (name or port)
    return p


def endpoint_slice(service_name: str, ports: Iterable[tuple[str | None, int]], addresses: Iterable[str],
                   ready: bool = True, namespace: str | None = "default", name: str | None = None) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(name or f"{service_name}-abc12", namespace,
                          labels={"kubernetes.io/service-name": service_name}),
        "addressType": "IPv4",
        "ports": [({"name": n} if n else {}) | {"port": p, "protocol": "TCP"} for n, p in ports],
        "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses],
    }


def endpoints_v1(service_name: str, ports: Iterable[tuple[str | None, int]], addresses: Iterable[str],
                 namespace: str = "default") -> dict:
    """The older ``v1`` Endpoints object (named like its Service)."""
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta(service_name, namespace),
        "subsets": [{
            "addresses": [{"ip": a} for a in addresses],
            "ports": [({"name": n} if n else {}) | {"port": p, "protocol": "TCP"} for n, p in ports],
        }],
    }


def service_with_endpoints(name: str, port: int, addresses: Iterable[str] = ("127.0.0.1",),
                           namespace: str | None = "default", service_port: int = 80, port_name: str = "http",
                           ready: bool = True) -> list[dict]:
    """A ClusterIP Service with one named port and the EndpointSlice of its pods."""
    return [
        service(name, [port_spec(port_name, service_port, port_name)], namespace),
        endpoint_slice(name, [(port_name, port)], addresses, ready=ready, namespace=namespace),
    ]


def external_name_service(name: str, external_name: str, port: int, namespace: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace),
        "spec": {"type": "ExternalName", "externalName": external_name,
                 "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }


# --- Ingress ------------------------------------------------------------------------------------


def backend(service_name: str, port: int | str = 80) -> dict:
    ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service_name, "port": ref}}


def path(p: str, service_name: str, port: int | str = 80, type: str = "Prefix") -> dict:
    return {"path": p, "pathType": type, "backend": backend(service_name, port)}


def rule(host: str | None, *paths: dict) -> dict:
    r: dict = {"http": {"paths": list(paths)}}
    if host is not None:
        r["host"] = host
    return r


def ingress(name: str, rules: Iterable[dict] = (), tls: Iterable | None = None,
            annotations: dict[str, str] | None = None, default_backend: dict | None = None,
            class_name: str | None = None, creation_timestamp: str | None = None,
            namespace: str | None = "default", legacy_class: str | None = None) -> dict:
    """An Ingress. ``tls`` items are ``(hosts, secret_name)`` tuples or raw dicts.

    Annotation keys without a ``/`` get the ``nginx.ingress.kubernetes.io/`` prefix.
    """
    ann = {(k if "/" in k else ANN + k): v for k, v in (annotations or {}).items()}
    if legacy_class is not None:
        ann["kubernetes.io/ingress.class"] = legacy_class
    meta = _meta(name, namespace, creationTimestamp=creation_timestamp)
    if ann:
        meta["annotations"] = ann
    spec: dict = {}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    rules = list(rules)
    if rules:
        spec["rules"] = rules
    if tls is not None:
        items = []
        for t in tls:
            if isinstance(t, dict):
                items.append(t)
            else:
                hosts, secret = t
                item = {"hosts": list(hosts)}
                if secret:
                    item["secretName"] = secret
                items.append(item)
        spec["tls"] = items
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def ingress_class(name: str, controller: str = CONTROLLER, default: bool = False) -> dict:
    meta = _meta(name, None)
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def tls_secret(name: str, cert_pem: bytes, key_pem: bytes, namespace: str = "default",
               string_data: bool = False) -> dict:
    """A ``kubernetes.io/tls`` Secret, with ``data`` (base64) or ``stringData``."""
    doc: dict = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, namespace),
                 "type": "kubernetes.io/tls"}
    if string_data:
        doc["stringData"] = {"tls.crt": cert_pem.decode(), "tls.key": key_pem.decode()}
    else:
        doc["data"] = {"tls.crt": base64.b64encode(cert_pem).decode(),
                       "tls.key": base64.b64encode(key_pem).decode()}
    return doc


# --- Files --------------------------------------------------------------------------------------


def dump(docs: Iterable[dict]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


class ManifestDir:
    """A directory of manifests; writes are atomic (temporary dot-file, then rename)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str | bytes) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp"
        data = text.encode() if isinstance(text, str) else text
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        return target

    def write(self, name: str, docs: Iterable[dict]) -> Path:
        return self.write_text(name, dump(docs))

    def remove(self, name: str) -> None:
        (self.path / name).unlink()
