"""Typed, immutable views of the Kubernetes objects ingressd reads.

``parse_object`` turns one decoded manifest document (a dict, as from YAML or the API) into one of
the classes below, or ``None`` for kinds ingressd does not use. Anything malformed raises
:class:`InvalidObject` with a message that says which field is wrong; nothing here does IO.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import InvalidObject

DEFAULT_NAMESPACE = "default"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")

# Bounds that keep a hostile manifest from costing unbounded time or memory.
MAX_LIST_ITEMS = 10_000
MAX_PEM_BYTES = 1 << 20

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOST_RE = re.compile(rf"^(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Meta:
    kind: str
    namespace: str
    name: str
    origin: str | None = field(default=None, compare=False)  # manifest file, for messages
    creation_timestamp: str = ""
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """How messages name the object: ``Ingress default/web``."""
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class BackendRef:
    service: str
    port_number: int | None = None
    port_name: str | None = None

    @property
    def port(self) -> str:
        return str(self.port_number) if self.port_number is not None else str(self.port_name)


@dataclass(frozen=True, slots=True)
class IngressPath:
    path: str
    path_type: str
    backend: BackendRef


@dataclass(frozen=True, slots=True)
class IngressRule:
    host: str  # "" when the rule has no host
    paths: tuple[IngressPath, ...]


@dataclass(frozen=True, slots=True)
class IngressTLS:
    hosts: tuple[str, ...]
    secret_name: str | None


@dataclass(frozen=True, slots=True)
class Ingress:
    meta: Meta
    class_name: str | None  # spec.ingressClassName, else the legacy annotation
    default_backend: BackendRef | None
    rules: tuple[IngressRule, ...]
    tls: tuple[IngressTLS, ...]


@dataclass(frozen=True, slots=True)
class IngressClass:
    meta: Meta
    controller: str
    is_default: bool


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: int | str | None


@dataclass(frozen=True, slots=True)
class Service:
    meta: Meta
    type: str
    ports: tuple[ServicePort, ...]
    external_name: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """An EndpointSlice, or an old ``v1`` Endpoints object flattened into the same shape."""

    meta: Meta
    service_name: str
    ports: tuple[EndpointPort, ...]
    ready_addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TLSSecret:
    meta: Meta
    cert_pem: bytes
    key_pem: bytes


KubeObject = Ingress | IngressClass | Service | EndpointSlice | TLSSecret


# --- field readers (also used by other object kinds, e.g. certmanager's issuers) ------------------

def mapping_field(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidObject(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def list_field(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidObject(f"{where} must be a list, not {type(value).__name__}")
    if len(value) > MAX_LIST_ITEMS:
        raise InvalidObject(f"{where} has {len(value)} items, more than {MAX_LIST_ITEMS}")
    return value


def string_field(value: Any, where: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidObject(f"{where} is required")
        return None
    if not isinstance(value, str):
        raise InvalidObject(f"{where} must be a string, not {type(value).__name__}")
    return value


def _port_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidObject(f"{where} must be a port number 1-65535, not {value!r}")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    result = {}
    for key, item in mapping_field(value, where).items():
        if not isinstance(key, str):
            raise InvalidObject(f"{where} keys must be strings")
        # Kubernetes requires strings; YAML users often write `true` or 60 unquoted.
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        elif item is None:
            item = ""
        elif not isinstance(item, str):
            raise InvalidObject(f"{where}.{key} must be a string")
        result[key] = item
    return result


def meta_of(doc: dict, kind: str, origin: str | None, *, namespaced: bool = True) -> Meta:
    metadata = mapping_field(doc.get("metadata"), "metadata")
    name = string_field(metadata.get("name"), "metadata.name", required=True)
    if len(name) > 253 or not _NAME_RE.match(name):
        raise InvalidObject(f"metadata.name {name!r} is not a valid Kubernetes name")
    namespace = ""
    if namespaced:
        namespace = string_field(metadata.get("namespace"), "metadata.namespace") or DEFAULT_NAMESPACE
        if len(namespace) > 63 or not _PORT_NAME_RE.match(namespace):
            raise InvalidObject(f"metadata.namespace {namespace!r} is not a valid namespace")
    created = _timestamp(metadata.get("creationTimestamp"))
    return Meta(
        kind=kind,
        namespace=namespace,
        name=name,
        origin=origin,
        creation_timestamp=created,
        annotations=_string_map(metadata.get("annotations"), "metadata.annotations"),
        labels=_string_map(metadata.get("labels"), "metadata.labels"),
    )


def _timestamp(value: Any) -> str:
    """creationTimestamp as a UTC string that sorts as time does ("" when absent: oldest)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise InvalidObject(f"metadata.creationTimestamp {value!r} is not an RFC 3339 time") from None
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime.datetime):  # YAML decodes unquoted timestamps itself
        raise InvalidObject(f"metadata.creationTimestamp {value!r} is not an RFC 3339 time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # the API's precision


def normalize_host(host: str, where: str) -> str:
    host = host.lower().rstrip(".")
    if len(host) > 253 or not _HOST_RE.match(host):
        raise InvalidObject(f"{where} {host!r} is not a valid DNS name (a wildcard only as '*.' first label)")
    return host


# --- Ingress ----------------------------------------------------------------------------------

def _backend(value: Any, where: str) -> BackendRef:
    backend = mapping_field(value, where)
    if backend.get("resource") is not None:
        raise InvalidObject(f"{where}.resource backends are not supported (use a service)")
    service = mapping_field(backend.get("service"), f"{where}.service")
    if not service:
        raise InvalidObject(f"{where}.service is required")
    name = string_field(service.get("name"), f"{where}.service.name", required=True)
    port = mapping_field(service.get("port"), f"{where}.service.port")
    number, port_name = port.get("number"), port.get("name")
    if number is not None and port_name is not None:
        raise InvalidObject(f"{where}.service.port must set number or name, not both")
    if number is not None:
        return BackendRef(name, port_number=_port_number(number, f"{where}.service.port.number"))
    if port_name is not None:
        port_name = string_field(port_name, f"{where}.service.port.name", required=True)
        return BackendRef(name, port_name=port_name)
    raise InvalidObject(f"{where}.service.port needs a number or a name")


def _ingress(doc: dict, origin: str | None) -> Ingress:
    meta = meta_of(doc, "Ingress", origin)
    spec = mapping_field(doc.get("spec"), "spec")
    class_name = string_field(spec.get("ingressClassName"), "spec.ingressClassName")
    if class_name is None:
        class_name = meta.annotations.get(LEGACY_CLASS_ANNOTATION) or None
    default_backend = None
    if spec.get("defaultBackend") is not None:
        default_backend = _backend(spec["defaultBackend"], "spec.defaultBackend")
    rules = []
    for i, raw_rule in enumerate(list_field(spec.get("rules"), "spec.rules")):
        where = f"spec.rules[{i}]"
        rule = mapping_field(raw_rule, where)
        host = string_field(rule.get("host"), f"{where}.host")
        host = normalize_host(host, f"{where}.host") if host else ""
        http = mapping_field(rule.get("http"), f"{where}.http")
        paths = []
        for j, raw_path in enumerate(list_field(http.get("paths"), f"{where}.http.paths")):
            pwhere = f"{where}.http.paths[{j}]"
            item = mapping_field(raw_path, pwhere)
            path_type = string_field(item.get("pathType"), f"{pwhere}.pathType") or "ImplementationSpecific"
            if path_type not in PATH_TYPES:
                raise InvalidObject(f"{pwhere}.pathType {path_type!r} must be one of {', '.join(PATH_TYPES)}")
            path = string_field(item.get("path"), f"{pwhere}.path")
            if path is None:
                if path_type != "ImplementationSpecific":
                    raise InvalidObject(f"{pwhere}.path is required for pathType {path_type}")
                path = "/"
            if not path.startswith("/"):
                raise InvalidObject(f"{pwhere}.path {path!r} must start with '/'")
            if any(ch in path for ch in "\r\n\t ") or len(path) > 4096:
                raise InvalidObject(f"{pwhere}.path {path!r} contains whitespace or is too long")
            paths.append(IngressPath(path, path_type, _backend(item.get("backend"), f"{pwhere}.backend")))
        rules.append(IngressRule(host, tuple(paths)))
    tls = []
    for i, raw_tls in enumerate(list_field(spec.get("tls"), "spec.tls")):
        where = f"spec.tls[{i}]"
        entry = mapping_field(raw_tls, where)
        hosts = tuple(
            normalize_host(string_field(h, f"{where}.hosts[{k}]", required=True), f"{where}.hosts[{k}]")
            for k, h in enumerate(list_field(entry.get("hosts"), f"{where}.hosts"))
        )
        tls.append(IngressTLS(hosts, string_field(entry.get("secretName"), f"{where}.secretName")))
    if default_backend is None and not rules:
        raise InvalidObject("spec needs rules or a defaultBackend")
    return Ingress(meta, class_name, default_backend, tuple(rules), tuple(tls))


def _ingress_class(doc: dict, origin: str | None) -> IngressClass:
    meta = meta_of(doc, "IngressClass", origin, namespaced=False)
    spec = mapping_field(doc.get("spec"), "spec")
    controller = string_field(spec.get("controller"), "spec.controller") or ""
    is_default = meta.annotations.get(DEFAULT_CLASS_ANNOTATION, "").lower() == "true"
    return IngressClass(meta, controller, is_default)


# --- Service and endpoints --------------------------------------------------------------------

def _service(doc: dict, origin: str | None) -> Service:
    meta = meta_of(doc, "Service", origin)
    spec = mapping_field(doc.get("spec"), "spec")
    service_type = string_field(spec.get("type"), "spec.type") or "ClusterIP"
    ports = []
    for i, raw in enumerate(list_field(spec.get("ports"), "spec.ports")):
        where = f"spec.ports[{i}]"
        port = mapping_field(raw, where)
        name = string_field(port.get("name"), f"{where}.name") or ""
        number = _port_number(port.get("port"), f"{where}.port")
        target = port.get("targetPort")
        if target is not None and not isinstance(target, str):
            target = _port_number(target, f"{where}.targetPort")
        ports.append(ServicePort(name, number, target))
    external_name = None
    if service_type == "ExternalName":
        external_name = string_field(spec.get("externalName"), "spec.externalName", required=True)
        external_name = normalize_host(external_name, "spec.externalName")
    return Service(meta, service_type, tuple(ports), external_name)


def _endpoint_ports(value: Any, where: str) -> tuple[EndpointPort, ...]:
    ports = []
    for i, raw in enumerate(list_field(value, where)):
        port = mapping_field(raw, f"{where}[{i}]")
        name = string_field(port.get("name"), f"{where}[{i}].name") or ""
        protocol = port.get("protocol") or "TCP"
        if protocol != "TCP":
            continue
        ports.append(EndpointPort(name, _port_number(port.get("port"), f"{where}[{i}].port")))
    return tuple(ports)


def _address(value: Any, where: str) -> str:
    address = string_field(value, where, required=True)
    if len(address) > 253 or any(ch.isspace() for ch in address):
        raise InvalidObject(f"{where} {address!r} is not an address")
    return address


def _endpoint_slice(doc: dict, origin: str | None) -> EndpointSlice:
    meta = meta_of(doc, "EndpointSlice", origin)
    service_name = meta.labels.get(SERVICE_NAME_LABEL)
    if not service_name:
        raise InvalidObject(f"metadata.labels[{SERVICE_NAME_LABEL!r}] is required to bind it to a Service")
    address_type = doc.get("addressType") or "IPv4"
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise InvalidObject(f"addressType {address_type!r} is not IPv4, IPv6 or FQDN")
    addresses = []
    for i, raw in enumerate(list_field(doc.get("endpoints"), "endpoints")):
        endpoint = mapping_field(raw, f"endpoints[{i}]")
        conditions = mapping_field(endpoint.get("conditions"), f"endpoints[{i}].conditions")
        if conditions.get("ready") is False:  # unset means ready, per the API
            continue
        for k, address in enumerate(list_field(endpoint.get("addresses"), f"endpoints[{i}].addresses")):
            addresses.append(_address(address, f"endpoints[{i}].addresses[{k}]"))
    return EndpointSlice(meta, service_name, _endpoint_ports(doc.get("ports"), "ports"), tuple(addresses))


def _endpoints(doc: dict, origin: str | None) -> list[EndpointSlice]:
    """The old ``v1`` Endpoints: each subset becomes one slice (ready addresses only)."""
    meta = meta_of(doc, "Endpoints", origin)
    slices = []
    for i, raw in enumerate(list_field(doc.get("subsets"), "subsets")):
        subset = mapping_field(raw, f"subsets[{i}]")
        addresses = tuple(
            _address(mapping_field(a, f"subsets[{i}].addresses[{k}]").get("ip"), f"subsets[{i}].addresses[{k}].ip")
            for k, a in enumerate(list_field(subset.get("addresses"), f"subsets[{i}].addresses"))
        )
        ports = _endpoint_ports(subset.get("ports"), f"subsets[{i}].ports")
        slices.append(EndpointSlice(meta, meta.name, ports, addresses))
    return slices or [EndpointSlice(meta, meta.name, (), ())]


# --- Secret -----------------------------------------------------------------------------------

def _secret_value(data: dict, string_data: dict, key: str) -> bytes | None:
    if key in string_data:
        value = string_data[key]
        if not isinstance(value, str):
            raise InvalidObject(f"stringData[{key!r}] must be a string")
        return value.encode()
    if key in data:
        value = data[key]
        if not isinstance(value, str):
            raise InvalidObject(f"data[{key!r}] must be a base64 string")
        try:
            return base64.b64decode("".join(value.split()).encode(), validate=True)  # line-wrapped is fine
        except (binascii.Error, ValueError):
            raise InvalidObject(f"data[{key!r}] is not valid base64") from None
    return None


def _secret(doc: dict, origin: str | None) -> TLSSecret | None:
    if doc.get("type") != "kubernetes.io/tls":
        return None
    meta = meta_of(doc, "Secret", origin)
    data = mapping_field(doc.get("data"), "data")
    string_data = mapping_field(doc.get("stringData"), "stringData")
    cert = _secret_value(data, string_data, "tls.crt")
    key = _secret_value(data, string_data, "tls.key")
    if not cert or not key:
        raise InvalidObject("a kubernetes.io/tls Secret needs both tls.crt and tls.key")
    if len(cert) > MAX_PEM_BYTES or len(key) > MAX_PEM_BYTES:
        raise InvalidObject("tls.crt or tls.key is larger than 1 MiB")
    return TLSSecret(meta, cert, key)


_PARSERS = {
    ("networking.k8s.io/v1", "Ingress"): _ingress,
    ("networking.k8s.io/v1", "IngressClass"): _ingress_class,
    ("v1", "Service"): _service,
    ("discovery.k8s.io/v1", "EndpointSlice"): _endpoint_slice,
    ("v1", "Secret"): _secret,
}


def register_kind(api_version: str, kind: str, parser) -> None:
    """Teach ``parse_object`` another kind: ``parser(doc, origin)`` returns an object (with a
    ``meta``) or None, and raises InvalidObject for bad input. Used by optional subsystems."""
    _PARSERS[(api_version, kind)] = parser


CLUSTER_SCOPED_KINDS = {"IngressClass", "ClusterIssuer"}


def describe(doc: Any) -> str | None:
    """``Kind namespace/name`` for messages about a document that may not parse."""
    if not isinstance(doc, dict):
        return None
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "object"
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("name")
    if not isinstance(name, str):
        return kind
    namespace = metadata.get("namespace")
    if kind in CLUSTER_SCOPED_KINDS:
        return f"{kind} {name}"
    namespace = namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE
    return f"{kind} {namespace}/{name}"


def flatten(doc: Any) -> list[Any]:
    """Documents inside ``List`` kinds (as ``kubectl get -o yaml`` prints them), else ``[doc]``."""
    if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and isinstance(doc.get("items"), list):
        if doc["kind"] == "List" or doc["kind"].endswith("List"):
            items = doc["items"][:MAX_LIST_ITEMS]
            return [inner for item in items for inner in flatten(item)]
    return [doc]


def parse_object(doc: Any, origin: str | None = None) -> list[KubeObject]:
    """The ingressd objects in one decoded document: usually one, none for other kinds."""
    if not isinstance(doc, dict):
        raise InvalidObject(f"a manifest document must be a mapping, not {type(doc).__name__}")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        raise InvalidObject("apiVersion and kind are required")
    if (api_version, kind) == ("v1", "Endpoints"):
        return list(_endpoints(doc, origin))
    parser = _PARSERS.get((api_version, kind))
    if parser is None:
        if kind in ("Ingress", "IngressClass") and api_version.startswith(("networking.k8s.io/", "extensions/")):
            raise InvalidObject(f"{api_version} {kind} is not supported; use networking.k8s.io/v1")
        return []
    parsed = parser(doc, origin)
    return [parsed] if parsed is not None else []
