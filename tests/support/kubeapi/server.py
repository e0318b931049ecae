"""Kubernetes API server emulator: plain HTTP on loopback, JSON only, state in memory.

Run: ``python -m tests.support.kubeapi.server --port 0 [--state FILE] [--bookmark-interval S]``;
it prints ``listening PORT`` once it accepts connections. SIGTERM dumps the objects and the
resourceVersion counter to ``--state`` (when given) so a restarted emulator continues where the
stopped one was: an "API outage" in tests is a real stop and start of this process.

Emulated behaviours (each one function or branch below, named in the tests that rely on it):

- discovery (``/api``, ``/apis``, group versions), ``/version``; no OpenAPI (404: kubectl falls
  back to its compiled-in schemas, so use ``kubectl --validate=false``)
- resourceVersion: one counter for every write; lists carry the current one
- create (409 AlreadyExists), update (409 Conflict on a stale ``metadata.resourceVersion``),
  delete, get, list with label selectors and field selectors (any dotted path, ``=``/``==``/``!=``)
- merge patch and strategic merge patch (both as RFC 7386 merge patch: lists are replaced), JSON
  patch (add/replace/remove/test); a patch carrying ``metadata.resourceVersion`` is a precondition
- the status subresource (``.../status``): the main endpoint never changes ``status``, the
  subresource changes nothing else
- watch: from a resourceVersion (resume: only later events), from "" or "0" (synthetic ADDED for
  what exists), selector-filtered (an object leaving the selection is DELETED), bookmarks when
  ``allowWatchBookmarks`` (every ``--bookmark-interval`` s), ``timeoutSeconds``, and 410 Gone (an
  ERROR event with a Status of code 410, as the real server sends it) for a compacted version
- CustomResourceDefinitions: creating one serves its resources (cert-manager's issuers), deleting
  it stops serving them
- Secrets: ``stringData`` folded into ``data``; default type Opaque
- control endpoints for tests under ``/_emulator/``: ``expire`` (compact the history and end every
  watch with 410), ``close-watches`` (end every watch as a timeout would), ``requests`` (every API
  request seen: verb, group, resource, namespace, User-Agent; for the RBAC check), ``reset-requests``.

Not emulated: authentication and authorization (everything is allowed and logged), admission,
defaulting beyond the above, server-side apply (415), protobuf, pagination (``limit`` ignored),
garbage collection, namespace lifecycle.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    status: bool = False  # has the status subresource
    short: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


BUILTIN = [
    Resource("", "v1", "namespaces", "Namespace", False, True, ("ns",)),
    Resource("", "v1", "services", "Service", True, True, ("svc",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "configmaps", "ConfigMap", True, False, ("cm",)),
    Resource("", "v1", "events", "Event", True, False, ("ev",)),
    Resource("", "v1", "endpoints", "Endpoints", True, False, ("ep",)),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", True, True, ("ing",)),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True),
    Resource("events.k8s.io", "v1", "events", "Event", True, False, ("ev",)),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, True, ("crd",)),
    # for `kubectl apply -k deploy/kubernetes` (stored, nothing runs them)
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, False, ("sa",)),
    Resource("apps", "v1", "deployments", "Deployment", True, True, ("deploy",)),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, True, ("pdb",)),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- selectors -------------------------------------------------------------------------------

def _split_selector(text: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b``)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def label_matcher(selector: str):
    """Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``."""
    tests = []
    for term in _split_selector(selector or ""):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            tests.append(lambda l, k=key, vs=values, inside=(op == "in"): (l.get(k) in vs) == inside)
        elif "!=" in term:
            key, value = term.split("!=", 1)
            tests.append(lambda l, k=key.strip(), v=value.strip(): l.get(k) != v)
        elif "=" in term:
            key, value = re.split("==?", term, maxsplit=1)
            tests.append(lambda l, k=key.strip(), v=value.strip(): l.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda l, k=term[1:].strip(): k not in l)
        else:
            tests.append(lambda l, k=term: k in l)
    return lambda obj: all(t((obj.get("metadata") or {}).get("labels") or {}) for t in tests)


def _path_value(obj: dict, path: str) -> str:
    value = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_matcher(selector: str):
    """Field selectors on any dotted path (``metadata.name``, ``type``): ``=``, ``==``, ``!=``."""
    tests = []
    for term in _split_selector(selector or ""):
        if "!=" in term:
            path, value = term.split("!=", 1)
            tests.append(lambda o, p=path.strip(), v=value.strip(): _path_value(o, p) != v)
        else:
            path, value = re.split("==?", term, maxsplit=1)
            tests.append(lambda o, p=path.strip(), v=value.strip(): _path_value(o, p) == v)
    return lambda obj: all(t(obj) for t in tests)


# -- patches ---------------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386. Strategic merge patch directives (``$patch``, ``$setElementOrder/...``,
    ``$retainKeys``, ``$deleteFromPrimitiveList/...``) are dropped: lists are replaced whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target, operations):
    """RFC 6902 add/replace/remove/test (enough for clients that send JSON patches)."""
    doc = copy.deepcopy(target)
    for op in operations:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ApiError(422, "Invalid", f"test failed at {op['path']}")
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch operation {kind}")
    return doc


# -- the store -------------------------------------------------------------------------------

@dataclass
class Event:
    rv: int
    resource: tuple[str, str]  # (group, plural)
    type: str
    obj: dict
    previous: dict | None


@dataclass
class Watch:
    resource: tuple[str, str]
    namespace: str | None
    matches: object
    closing: str | None = None  # "expire" or "close"


class Store:
    def __init__(self):
        self.lock = threading.Condition()
        self.resources: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in BUILTIN}
        self.crd_resources: dict[str, list[Resource]] = {}  # CRD name -> the resources it serves
        self.objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self.rv = 1
        self.compacted = 1  # events at or below this version are gone: watches from before get 410
        self.history: list[Event] = []
        self.watches: list[Watch] = []
        self.requests: list[dict] = []

    # persistence for a stop/start "outage"
    def dump(self) -> dict:
        with self.lock:
            return {"rv": self.rv, "objects": [o for objs in self.objects.values() for o in objs.values()]}

    def load(self, state: dict) -> None:
        self.rv = self.compacted = state["rv"]
        crds = [o for o in state["objects"] if o.get("kind") == "CustomResourceDefinition"]
        for crd in crds:
            self._serve_crd(crd)
        for obj in state["objects"]:
            resource = self.find_kind(obj["apiVersion"], obj["kind"])
            meta = obj["metadata"]
            self.objects.setdefault((resource.group, resource.plural), {})[(meta.get("namespace", ""), meta["name"])] = obj

    def find_kind(self, api_version: str, kind: str) -> Resource:
        for resource in self.resources.values():
            if resource.api_version == api_version and resource.kind == kind:
                return resource
        raise KeyError((api_version, kind))

    # CRDs: creating one serves its resources
    def _serve_crd(self, crd: dict) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        served = []
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            resource = Resource(spec["group"], version["name"], names["plural"], names["kind"],
                                spec.get("scope", "Namespaced") == "Namespaced",
                                "status" in (version.get("subresources") or {}), tuple(names.get("shortNames") or ()))
            served.append(resource)
        for resource in served[:1]:  # one stored version per group/plural is enough here
            self.resources[(resource.group, resource.plural)] = resource
        self.crd_resources[crd["metadata"]["name"]] = served[:1]

    def _unserve_crd(self, name: str) -> None:
        for resource in self.crd_resources.pop(name, []):
            self.resources.pop((resource.group, resource.plural), None)
            self.objects.pop((resource.group, resource.plural), None)

    def _record(self, resource: Resource, type_: str, obj: dict, previous: dict | None) -> None:
        self.history.append(Event(self.rv, (resource.group, resource.plural), type_, copy.deepcopy(obj), previous))
        if len(self.history) > 10000:
            self.compacted = self.history[5000].rv
            del self.history[:5000]
        self.lock.notify_all()

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def bucket(self, resource: Resource) -> dict:
        return self.objects.setdefault((resource.group, resource.plural), {})

    def get(self, resource: Resource, namespace: str, name: str) -> dict:
        obj = self.bucket(resource).get((namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{resource.plural}{"." + resource.group if resource.group else ""} "{name}" not found')
        return obj

    def list(self, resource: Resource, namespace: str | None, labels: str, fields: str) -> tuple[list[dict], int]:
        match_l, match_f = label_matcher(labels), field_matcher(fields)
        items = [o for (ns, _), o in sorted(self.bucket(resource).items())
                 if (namespace is None or ns == namespace) and match_l(o) and match_f(o)]
        return items, self.rv

    def _prepare(self, resource: Resource, namespace: str, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body is not a JSON object")
        body.setdefault("apiVersion", resource.api_version)
        body.setdefault("kind", resource.kind)
        meta = body.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace of the request")
            meta["namespace"] = namespace
        if resource.kind == "Secret":  # the API folds stringData into data
            data = body.setdefault("data", {}) or {}
            body["data"] = data
            for key, value in (body.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            body.setdefault("type", "Opaque")
        return body

    def create(self, resource: Resource, namespace: str, body: dict) -> dict:
        body = self._prepare(resource, namespace, body)
        meta = body["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
        key = (namespace if resource.namespaced else "", meta["name"])
        if key in self.bucket(resource):
            raise ApiError(409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists')
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, resourceVersion=self._next_rv())
        meta.pop("deletionTimestamp", None)
        self.bucket(resource)[key] = body
        if resource.kind == "CustomResourceDefinition":
            self._serve_crd(body)
        self._record(resource, "ADDED", body, None)
        return body

    def update(self, resource: Resource, namespace: str, name: str, body: dict, subresource: str | None) -> dict:
        current = self.get(resource, namespace, name)
        body = self._prepare(resource, namespace, body)
        meta = body["metadata"]
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name in the URL")
        # optimistic concurrency: a stale resourceVersion is a 409 Conflict
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource.plural} "{name}": '
                           "the object has been modified; please apply your changes to the latest version and try again")
        if resource.status:  # the status subresource: each endpoint changes only its part
            if subresource == "status":
                body = {**copy.deepcopy(current), "status": body.get("status")}
            else:
                body = {**body, "status": copy.deepcopy(current.get("status"))}
                if body["status"] is None:
                    body.pop("status")
        elif subresource:
            raise ApiError(404, "NotFound", f"{resource.plural} has no {subresource} subresource")
        for k in ("uid", "creationTimestamp", "generation"):
            if k in current["metadata"]:
                body["metadata"][k] = current["metadata"][k]
        if body.get("spec") != current.get("spec"):
            body["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if body == current:  # a no-op write does not change the resourceVersion (as the real API)
            return current
        body["metadata"]["resourceVersion"] = self._next_rv()
        self.bucket(resource)[(namespace if resource.namespaced else "", name)] = body
        self._record(resource, "MODIFIED", body, current)
        return body

    def patch(self, resource: Resource, namespace: str, name: str, content_type: str, patch, subresource: str | None) -> dict:
        current = self.get(resource, namespace, name)
        if content_type.startswith("application/json-patch+json"):
            new = json_patch(current, patch)
        elif content_type.startswith(("application/merge-patch+json", "application/strategic-merge-patch+json")):
            new = merge_patch(current, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the patch type {content_type} is not supported")
        precondition = ((patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None)
        new.setdefault("metadata", {})["resourceVersion"] = precondition or current["metadata"]["resourceVersion"]
        return self.update(resource, namespace, name, new, subresource)

    def delete(self, resource: Resource, namespace: str, name: str) -> dict:
        current = self.get(resource, namespace, name)
        del self.bucket(resource)[(namespace if resource.namespaced else "", name)]
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        if resource.kind == "CustomResourceDefinition":
            self._unserve_crd(name)
        self._record(resource, "DELETED", gone, current)
        return gone

    # watch: resume, 410 Gone, bookmarks, selector transitions
    def events_after(self, watch: Watch, rv: int) -> list[tuple[str, dict]]:
        out = []
        for event in self.history:
            if event.rv <= rv or event.resource != watch.resource:
                continue
            ns = (event.obj.get("metadata") or {}).get("namespace", "")
            if watch.namespace is not None and ns != watch.namespace:
                continue
            now_in = watch.matches(event.obj) and event.type != "DELETED"
            was_in = event.previous is not None and watch.matches(event.previous)
            if event.type == "DELETED":
                if was_in:
                    out.append(("DELETED", event.obj))
            elif now_in and not was_in:
                out.append(("ADDED", event.obj))
            elif now_in:
                out.append(("MODIFIED", event.obj))
            elif was_in:  # left the selection
                out.append(("DELETED", event.obj))
        return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store
    bookmark_interval: float = 1.0

    def log_message(self, format, *args):  # quiet
        pass

    # -- plumbing
    def _send_json(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON (this emulator speaks JSON only)")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        try:
            if parts and parts[0] == "_emulator":
                return self._control(parts[1:])
            if parts == ["version"]:
                return self._send_json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-ingressd-emulator", "platform": "linux/amd64"})
            if parts == ["healthz"] or parts == ["readyz"] or parts == ["livez"]:
                return self._send_json(200, "ok")
            if parts[:1] == ["api"]:
                if len(parts) == 1:
                    return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                return self._resource_request(method, "", parts[1], parts[2:], query)
            if parts[:1] == ["apis"]:
                if len(parts) == 1:
                    return self._send_json(200, self._group_list())
                if len(parts) == 2:
                    return self._send_json(200, self._group(parts[1]))
                return self._resource_request(method, parts[1], parts[2], parts[3:], query)
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        except ApiError as error:
            self._send_json(error.code, error.status())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # noqa: BLE001 - an emulator bug is a 500, not a dropped connection
            self._send_json(500, ApiError(500, "InternalError", f"emulator: {error!r}").status())

    def _control(self, parts: list[str]) -> None:
        store = self.store
        with store.lock:
            if parts == ["expire"]:
                store.compacted = store.rv
                store.history.clear()
                for watch in store.watches:
                    watch.closing = "expire"
                store.lock.notify_all()
                return self._send_json(200, {"rv": store.rv})
            if parts == ["close-watches"]:
                for watch in store.watches:
                    watch.closing = "close"
                store.lock.notify_all()
                return self._send_json(200, {"watches": len(store.watches)})
            if parts == ["requests"]:
                return self._send_json(200, store.requests)
            if parts == ["reset-requests"]:
                store.requests.clear()
                return self._send_json(200, {})
            if parts == ["watches"]:
                return self._send_json(200, [{"resource": "/".join(w.resource), "namespace": w.namespace} for w in store.watches])
        raise ApiError(404, "NotFound", "no such control endpoint")

    # discovery
    def _group_list(self) -> dict:
        groups: dict[str, list[str]] = {}
        for resource in self.store.resources.values():
            if resource.group:
                versions = groups.setdefault(resource.group, [])
                if resource.version not in versions:
                    versions.append(resource.version)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in sorted(groups.items())]}

    def _group(self, name: str) -> dict:
        for group in self._group_list()["groups"]:
            if group["name"] == name:
                return {"kind": "APIGroup", "apiVersion": "v1", **group}
        raise ApiError(404, "NotFound", f"group {name} not found")

    def _resource_list(self, group: str, version: str) -> dict:
        resources = []
        for r in self.store.resources.values():
            if r.group == group and r.version == version:
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                resources.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                                  "kind": r.kind, "verbs": verbs, "shortNames": list(r.short)})
                if r.status:
                    resources.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                                      "kind": r.kind, "verbs": ["get", "patch", "update"]})
        if not resources:
            raise ApiError(404, "NotFound", f"{group}/{version} not found")
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}

    def _resource_request(self, method: str, group: str, version: str, rest: list[str], query: dict) -> None:
        store = self.store
        if not rest:
            with store.lock:
                return self._send_json(200, self._resource_list(group, version))
        namespace = None
        with store.lock:
            if rest[0] == "namespaces" and len(rest) >= 3 and (group, rest[2]) in store.resources \
                    and store.resources[(group, rest[2])].namespaced:
                namespace, rest = rest[1], rest[2:]
            resource = store.resources.get((group, rest[0]))
        if resource is None or resource.version != version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if not resource.namespaced:
            namespace = ""
        watching = query.get("watch") in ("1", "true")
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method) or (
            "watch" if watching else "get" if name else "list")
        with store.lock:
            store.requests.append({"verb": verb, "group": group, "resource": resource.plural + (f"/{subresource}" if subresource else ""),
                                   "namespace": namespace or "", "agent": self.headers.get("User-Agent", "")})
        if method == "GET" and watching:
            return self._watch(resource, namespace if resource.namespaced else None, query)
        body = self._body()  # also DELETE: DeleteOptions (read so the connection stays in step)
        with store.lock:
            if method == "GET" and name:
                obj = store.get(resource, namespace, name)
                if subresource not in (None, "status"):
                    raise ApiError(404, "NotFound", "no such subresource")
                return self._send_json(200, obj)
            if method == "GET":
                items, rv = store.list(resource, namespace if resource.namespaced else None,
                                       query.get("labelSelector", ""), query.get("fieldSelector", ""))
                return self._send_json(200, {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                                             "metadata": {"resourceVersion": str(rv)}, "items": items})
            if method == "POST" and not name:
                return self._send_json(201, store.create(resource, namespace, body))
            if name is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
            if method == "PUT":
                return self._send_json(200, store.update(resource, namespace, name, body, subresource))
            if method == "PATCH":
                return self._send_json(200, store.patch(resource, namespace, name, self.headers.get("Content-Type", ""), body, subresource))
            if method == "DELETE":
                return self._send_json(200, store.delete(resource, namespace, name))
        raise ApiError(405, "MethodNotAllowed", method)

    def _chunk(self, event: dict) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, resource: Resource, namespace: str | None, query: dict) -> None:
        store = self.store
        match_l, match_f = label_matcher(query.get("labelSelector", "")), field_matcher(query.get("fieldSelector", ""))
        watch = Watch((resource.group, resource.plural), namespace, lambda o: match_l(o) and match_f(o))
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        requested = query.get("resourceVersion", "")
        initial: list[tuple[str, dict]] = []
        with store.lock:
            if requested in ("", "0"):  # "any": synthetic ADDED for what exists, then live events
                items, rv = store.list(resource, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
                initial = [("ADDED", o) for o in items]
            else:
                try:
                    rv = int(requested)
                except ValueError:
                    raise ApiError(400, "BadRequest", f"invalid resourceVersion {requested!r}")
                if rv < store.compacted:  # 410 Gone, as an ERROR event on a 200 stream
                    initial = [("ERROR", ApiError(410, "Expired", f"too old resource version: {rv} ({store.compacted})").status())]
            store.watches.append(watch)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for type_, obj in initial:
                self._chunk({"type": type_, "object": obj})
            if initial and initial[0][0] == "ERROR":
                return
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                with store.lock:
                    events = store.events_after(watch, rv)
                    if not events and watch.closing is None:
                        wait = min(deadline, next_bookmark if bookmarks else deadline) - time.monotonic()
                        if wait > 0:
                            store.lock.wait(wait)
                        events = store.events_after(watch, rv)
                    closing, current = watch.closing, store.rv
                    if events:
                        rv = max(rv, max(int(o["metadata"]["resourceVersion"]) for _, o in events))
                for type_, obj in events:
                    self._chunk({"type": type_, "object": obj})
                if closing == "expire":
                    self._chunk({"type": "ERROR", "object": ApiError(410, "Expired", "too old resource version").status()})
                    return
                if closing == "close" or time.monotonic() >= deadline:
                    return
                if bookmarks and time.monotonic() >= next_bookmark:
                    rv = max(rv, current)
                    self._chunk({"type": "BOOKMARK", "object": {"kind": resource.kind, "apiVersion": resource.api_version,
                                                                "metadata": {"resourceVersion": str(rv)}}})
                    next_bookmark = time.monotonic() + self.bookmark_interval
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with store.lock:
                store.watches.remove(watch)
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", help="load objects from this file at start, dump them there at SIGTERM")
    parser.add_argument("--bookmark-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    store = Store()
    if args.state and os.path.exists(args.state):
        with open(args.state) as handle:
            store.load(json.load(handle))
    handler = type("BoundHandler", (Handler,), {"store": store, "bookmark_interval": args.bookmark_interval})
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True

    def stop(signum, frame):
        if args.state:
            tmp = args.state + ".tmp"
            with open(tmp, "w") as handle:
                json.dump(store.dump(), handle)
            os.replace(tmp, args.state)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
