"""Typed, immutable views of the Kubernetes objects ingressd reads.

``parse_object`` turns one decoded manifest document (a dict, as from YAML or the API) into one of
the classes below, or ``None`` for kinds ingressd does not use. Anything malformed raises
:class:`InvalidObject` with a message that says which field is wrong; nothing here does IO.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

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
_SPACE_RE = re.compile(r"\s")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Meta:
    kind: str
    namespace: str
    name: str
    origin: str | None = field(default=None, compare=False)  # manifest file, for messages
    creation_timestamp: str = ""
    # Compared (two objects are equal only when their content is), never hashed (dicts).
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    # (kind, namespace, name), made once: snapshots, the translator and the sources look objects
    # up by it hundreds of thousands of times with 10,000 Ingresses
    key: tuple[str, str, str] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "key", (self.kind, self.namespace, self.name))

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
    # where the Service is reachable, for --publish-service (Ingress status)
    cluster_ip: str = ""
    external_ips: tuple[str, ...] = ()
    load_balancer: tuple[tuple[str, str], ...] = ()  # status.loadBalancer.ingress: (ip, hostname)


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """An EndpointSlice, or an old ``v1`` Endpoints object flattened into the same shape (its
    further subsets, each with their own ports, in ``subsets``)."""

    meta: Meta
    service_name: str
    ports: tuple[EndpointPort, ...]
    ready_addresses: tuple[str, ...]
    subsets: tuple["EndpointSlice", ...] = ()

    def parts(self) -> tuple["EndpointSlice", ...]:
        return (self, *self.subsets)


@dataclass(frozen=True, slots=True)
class Secret:
    """A ``v1`` Secret: the one parsed form of Secrets for the translator (TLS), the certificate
    manager (its stores) and anything else that reads Secrets."""

    meta: Meta
    type: str
    data: dict[str, bytes] = field(default_factory=dict, hash=False)

    @classmethod
    def build(cls, namespace: str, name: str, type: str, data: dict[str, bytes] | None = None,
              annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None,
              origin: str | None = None) -> "Secret":
        meta = Meta("Secret", namespace, name, origin, annotations=dict(annotations or {}), labels=dict(labels or {}))
        return cls(meta, type, dict(data or {}))

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name): how stores and the certificate manager look Secrets up."""
        return (self.meta.namespace, self.meta.name)

    @property
    def annotations(self) -> dict[str, str]:
        return self.meta.annotations

    @property
    def labels(self) -> dict[str, str]:
        return self.meta.labels

    @property
    def origin(self) -> str | None:
        return self.meta.origin

    @property
    def is_tls(self) -> bool:
        return self.type == TLS_SECRET_TYPE

    @property
    def cert_pem(self) -> bytes:
        return self.data.get("tls.crt", b"")

    @property
    def key_pem(self) -> bytes:
        return self.data.get("tls.key", b"")


TLSSecret = Secret  # the translator's name for it: a Secret of type kubernetes.io/tls
TLS_SECRET_TYPE = "kubernetes.io/tls"

@dataclass(frozen=True, slots=True)
class ConfigMap:
    """A ``v1`` ConfigMap: the controller's settings (ingress-nginx's keys) live in one."""

    meta: Meta
    data: dict[str, str] = field(default_factory=dict, hash=False)


KubeObject = Ingress | IngressClass | Service | EndpointSlice | Secret | ConfigMap
ObjectKey = tuple[str, str, str]  # (kind, namespace, name): unique within a snapshot


# --- field readers (also used by other object kinds, e.g. certmanager's issuers) ------------------

def mapping_field(value: Any, where: str) -> dict:
    if type(value) is dict:  # the common case first: these run a dozen times per object
        return value
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidObject(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def list_field(value: Any, where: str) -> list:
    if type(value) is list and len(value) <= MAX_LIST_ITEMS:
        return value
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidObject(f"{where} must be a list, not {type(value).__name__}")
    if len(value) > MAX_LIST_ITEMS:
        raise InvalidObject(f"{where} has {len(value)} items, more than {MAX_LIST_ITEMS}")
    return value


def string_field(value: Any, where: str, *, required: bool = False) -> str | None:
    if type(value) is str and value:
        return value
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
    if type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items()):
        return dict(value)  # what it nearly always is: no conversion needed (a copy, as below)
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
    if type(value) is str:  # thousands of objects share a few distinct times
        return _string_timestamp(value)
    return _any_timestamp(value)


@functools.lru_cache(maxsize=4096)
def _string_timestamp(value: str) -> str:
    return _any_timestamp(value)


def _any_timestamp(value: Any) -> str:
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
    cluster_ip = spec.get("clusterIP") if isinstance(spec.get("clusterIP"), str) else ""
    external_ips = spec.get("externalIPs") if isinstance(spec.get("externalIPs"), list) else []
    return Service(meta, service_type, tuple(ports), external_name, cluster_ip,
                   tuple(ip for ip in external_ips if isinstance(ip, str)), _load_balancer(doc.get("status")))


def _load_balancer(status: Any) -> tuple[tuple[str, str], ...]:
    """``status.loadBalancer.ingress`` as (ip, hostname) pairs. Written by the cloud's controller,
    not by users: anything malformed is skipped, never a reason to reject the object."""
    balancer = status.get("loadBalancer") if isinstance(status, dict) else None
    entries = balancer.get("ingress") if isinstance(balancer, dict) else None
    pairs = []
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            ip, hostname = entry.get("ip"), entry.get("hostname")
            pair = (ip if isinstance(ip, str) else "", hostname if isinstance(hostname, str) else "")
            if pair != ("", ""):
                pairs.append(pair)
    return tuple(pairs)


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
    if len(address) > 253 or _SPACE_RE.search(address):  # re's \s is str.isspace
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
    if not slices:
        return [EndpointSlice(meta, meta.name, (), ())]
    first, *rest = slices
    return [EndpointSlice(meta, meta.name, first.ports, first.ready_addresses, tuple(rest))]


# --- Secret -----------------------------------------------------------------------------------

def _secret_bytes(value: Any, where: str, *, base64_encoded: bool) -> bytes:
    if not isinstance(value, str):
        raise InvalidObject(f"{where} must be a {'base64 ' if base64_encoded else ''}string")
    if not base64_encoded:
        return value.encode()
    try:
        return base64.b64decode("".join(value.split()).encode(), validate=True)  # line-wrapped is fine
    except (binascii.Error, ValueError):
        raise InvalidObject(f"{where} is not valid base64") from None


def parse_secret(doc: dict, origin: str | None = None) -> Secret:
    """Any ``v1`` Secret (``data`` base64, ``stringData`` plain and winning, as the API merges them).

    A ``kubernetes.io/tls`` Secret must hold ``tls.crt`` and ``tls.key``; whether they are a
    usable certificate is for :func:`ingressd.certs.load_certificate` to say."""
    meta = meta_of(doc, "Secret", origin)
    secret_type = string_field(doc.get("type"), "type") or "Opaque"
    data: dict[str, bytes] = {}
    for key, value in mapping_field(doc.get("data"), "data").items():
        data[str(key)] = _secret_bytes(value, f"data[{key!r}]", base64_encoded=True)
    for key, value in mapping_field(doc.get("stringData"), "stringData").items():
        data[str(key)] = _secret_bytes(value, f"stringData[{key!r}]", base64_encoded=False)
    if secret_type == TLS_SECRET_TYPE:
        if not data.get("tls.crt") or not data.get("tls.key"):
            raise InvalidObject("a kubernetes.io/tls Secret needs both tls.crt and tls.key")
        if len(data["tls.crt"]) > MAX_PEM_BYTES or len(data["tls.key"]) > MAX_PEM_BYTES:
            raise InvalidObject("tls.crt or tls.key is larger than 1 MiB")
    return Secret(meta, secret_type, data)


_KEPT_KEYS = ("ca.crt", "auth")  # a CA bundle (proxy-ssl-secret), an htpasswd file (auth-secret)


def _tls_secret(doc: dict, origin: str | None) -> Secret | None:
    """What the snapshot keeps of Secrets: the TLS ones and those an annotation can use (a ``ca.crt``
    or an ``auth`` key); no unrelated Secret data in memory."""
    if doc.get("type") != TLS_SECRET_TYPE:
        data, string_data = doc.get("data"), doc.get("stringData")
        if not any(isinstance(d, dict) and any(k in d for k in _KEPT_KEYS) for d in (data, string_data)):
            return None
    return parse_secret(doc, origin)


# --- ConfigMap -------------------------------------------------------------------------------

def _config_map(doc: dict, origin: str | None) -> ConfigMap:
    meta = meta_of(doc, "ConfigMap", origin)
    data = {}
    for key, value in mapping_field(doc.get("data"), "data").items():
        if isinstance(value, bool):  # an unquoted true/false in YAML: what the user meant
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise InvalidObject(f"data[{key!r}] must be a string")
        data[str(key)] = value
    return ConfigMap(meta, data)


# --- the parser table ---------------------------------------------------------------------------

Parser = Callable[[dict, "str | None"], "KubeObject | list[KubeObject] | None"]


@dataclass(frozen=True)
class Kinds:
    """The kinds a source parses: ``(apiVersion, kind) -> parser(doc, origin)``, built once and
    handed to the source (no global registry). A parser returns an object with a ``meta``, a list
    of them, or None (ignored), and raises InvalidObject for bad input."""

    parsers: Mapping[tuple[str, str], Parser]
    cluster_scoped: frozenset[str] = frozenset()

    def including(self, parsers: Mapping[tuple[str, str], Parser], cluster_scoped=()) -> "Kinds":
        return Kinds({**self.parsers, **parsers}, self.cluster_scoped | frozenset(cluster_scoped))

    def parse(self, doc: Any, origin: str | None = None) -> list[KubeObject]:
        """The ingressd objects in one decoded document: usually one, none for other kinds."""
        if not isinstance(doc, dict):
            raise InvalidObject(f"a manifest document must be a mapping, not {type(doc).__name__}")
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(kind, str) or not isinstance(api_version, str):
            raise InvalidObject("apiVersion and kind are required")
        parser = self.parsers.get((api_version, kind))
        if parser is None:
            if kind in ("Ingress", "IngressClass") and api_version.startswith(("networking.k8s.io/", "extensions/")):
                raise InvalidObject(f"{api_version} {kind} is not supported; use networking.k8s.io/v1")
            return []
        parsed = parser(doc, origin)
        if parsed is None:
            return []
        return parsed if isinstance(parsed, list) else [parsed]

    def describe(self, doc: Any) -> str | None:
        """``Kind namespace/name`` for messages about a document that may not parse."""
        if not isinstance(doc, dict):
            return None
        kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "object"
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        name = metadata.get("name")
        if not isinstance(name, str):
            return kind
        namespace = metadata.get("namespace")
        if kind in self.cluster_scoped:
            return f"{kind} {name}"
        namespace = namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE
        return f"{kind} {namespace}/{name}"


CORE_KINDS = Kinds({
    ("networking.k8s.io/v1", "Ingress"): _ingress,
    ("networking.k8s.io/v1", "IngressClass"): _ingress_class,
    ("v1", "Service"): _service,
    ("discovery.k8s.io/v1", "EndpointSlice"): _endpoint_slice,
    ("v1", "Endpoints"): _endpoints,
    ("v1", "Secret"): _tls_secret,
    ("v1", "ConfigMap"): _config_map,
}, frozenset({"IngressClass"}))


def describe(doc: Any, kinds: Kinds = CORE_KINDS) -> str | None:
    return kinds.describe(doc)


def flatten(doc: Any) -> list[Any]:
    """Documents inside ``List`` kinds (as ``kubectl get -o yaml`` prints them), else ``[doc]``."""
    if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and isinstance(doc.get("items"), list):
        if doc["kind"] == "List" or doc["kind"].endswith("List"):
            items = doc["items"][:MAX_LIST_ITEMS]
            return [inner for item in items for inner in flatten(item)]
    return [doc]


def parse_object(doc: Any, origin: str | None = None, kinds: Kinds = CORE_KINDS) -> list[KubeObject]:
    """The ingressd objects in one decoded document (``kinds``: the core ones unless given)."""
    return kinds.parse(doc, origin)
