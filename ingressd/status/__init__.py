"""The read-only status page of the metrics port: what is served, what is wrong, and live traffic.

``build_status`` is a pure function from the current configuration and the data plane's counters
to a JSON-serialisable dict; ``status_handlers`` serves it as ``/status.json`` next to the page
(``/``) on the metrics port. Nothing secret is ever put in the dict: certificates are described
by their Secret, names, expiry and public fingerprint, never by their PEM or key.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from importlib import resources
from typing import Any, Callable

from .. import __version__

log = logging.getLogger("ingressd.status")

Handler = Callable[[], tuple[int, str, bytes]]

# What a certificate-manager entry may show; anything else it carries is left out.
CERTIFICATE_FIELDS = ("secret", "hosts", "issuer", "not_after", "next_renewal", "state", "last_error")

ASSETS = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/status.js": ("status.js", "text/javascript; charset=utf-8"),
    "/status.css": ("status.css", "text/css; charset=utf-8"),
}


def build_status(config, plane, certificates: Callable[[], list[dict]] | None = None,
                 now: float | None = None, source: Callable[[], object] | None = None) -> dict:
    """Everything the status page shows, from ``config`` (``ingressd.config.Config``), ``plane``
    (``ingressd.dataplane.server.DataPlane``, or the ``Counters`` gathered from worker processes: what
    has ``stats``, ``upgraded`` and ``connections`` or ``active``) and the certificate manager's
    ``certificates()``."""
    now = time.time() if now is None else now
    routes = [_route(route, config) for route in config.table.routes()]
    default = config.table.default
    diagnostics = sorted((_diagnostic(d) for d in config.diagnostics),
                         key=lambda d: (d["severity"] != "error", d["object"] or "", d["origin"] or ""))
    errors = sum(1 for d in diagnostics if d["severity"] == "error")
    managed, manager_error = _managed_certificates(certificates)
    traffic = _traffic(plane)
    return {
        "version": __version__,
        "generated_at": now,
        "summary": {
            "ingresses": config.ingress_count,
            "routes": len(routes),
            "hosts": len({r["host"] for r in routes}),
            "errors": errors,
            "warnings": len(diagnostics) - errors,
            "connections": _connections(plane),
            "upgraded": int(getattr(plane, "upgraded", 0)),
        },
        "routes": routes,
        "default_backend": _backend(default.backend) if default.backend else None,
        "diagnostics": diagnostics,
        "certificates": _certificates(config, routes, managed, now),
        "certificate_manager_error": manager_error,
        "traffic": traffic,
        "source": _source(source),
    }


def _source(state: Callable[[], object] | None) -> dict | None:
    """Where the objects come from and whether it is reachable (``SourceState``)."""
    current = state() if state is not None else None
    if current is None:
        return None
    return {"kind": current.kind, "description": current.description, "synced": current.synced,
            "connected": current.connected, "last_error": current.last_error}


# --- routes ---------------------------------------------------------------------------------------


def _route(route, config) -> dict:
    redirect = route.options.redirect
    cert = config.certificate_for(route.host) if route.host else None
    return {
        "host": route.host or "*",
        "path": route.path,
        "path_type": route.path_type,
        "namespace": route.namespace,
        "ingress": route.ingress,
        "backend": _backend(route.backend) if route.backend else None,
        "redirect": {"code": redirect.code, "target": redirect.template} if redirect else None,
        "https_redirect": bool(route.https_redirect),
        "tls": _certificate_ref(cert),
    }


def _backend(backend) -> dict:
    ready = len(backend.endpoints)
    return {
        "name": backend.name,
        "namespace": backend.namespace,
        "service": backend.service,
        "port": str(backend.port),
        "endpoints": {"ready": ready, "total": ready},
        "error": backend.error,
    }


def _certificate_ref(cert) -> dict | None:
    if cert is None:
        return None
    return {"source": cert.source, "names": list(cert.names), "not_after": _timestamp(cert.not_after),
            "fingerprint": cert.fingerprint[:16]}


# --- diagnostics ----------------------------------------------------------------------------------


def _diagnostic(diagnostic) -> dict:
    return {"severity": diagnostic.severity, "message": diagnostic.message, "origin": diagnostic.origin,
            "object": diagnostic.object}


# --- certificates ---------------------------------------------------------------------------------


def _managed_certificates(certificates) -> tuple[list[dict], str | None]:
    if certificates is None:
        return [], None
    try:
        entries = list(certificates() or ())
    except Exception as error:  # the page must show even when the manager cannot answer
        log.exception("the certificate manager's status failed")
        return [], f"{type(error).__name__}: {error}"
    result = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        item = {key: _plain(entry.get(key)) for key in CERTIFICATE_FIELDS}
        item["hosts"] = [str(h) for h in (entry.get("hosts") or ())]
        result.append(item)
    return result, None


def _certificates(config, routes: list[dict], managed: list[dict], now: float) -> list[dict]:
    """One row per Secret in use (with the hosts it serves) merged with the manager's entries."""
    rows: dict[str, dict] = {}
    for route in routes:
        tls = route["tls"]
        if tls is None:
            continue
        row = rows.setdefault(tls["source"], {
            "secret": tls["source"], "hosts": [], "names": tls["names"], "issuer": None,
            "not_after": tls["not_after"], "next_renewal": None, "state": "in use", "last_error": None,
            "fingerprint": tls["fingerprint"], "managed": False,
        })
        if route["host"] not in row["hosts"]:
            row["hosts"].append(route["host"])
    default = getattr(config, "default_certificate", None)
    if default is not None and default.source not in rows:
        ref = _certificate_ref(default)
        rows[default.source] = {"secret": default.source, "hosts": ["(default)"], "names": ref["names"],
                                "issuer": None, "not_after": ref["not_after"], "next_renewal": None,
                                "state": "default", "last_error": None, "fingerprint": ref["fingerprint"],
                                "managed": False}
    for entry in managed:
        secret = entry.get("secret") or ""
        row = rows.setdefault(secret, {"secret": secret, "hosts": [], "names": [], "fingerprint": None,
                                       "not_after": None})
        for host in entry["hosts"]:
            if host not in row["hosts"]:
                row["hosts"].append(host)
        row.update({k: entry[k] for k in ("issuer", "next_renewal", "state", "last_error")})
        if entry.get("not_after") is not None:
            row["not_after"] = entry["not_after"]
        row["managed"] = True
    for row in rows.values():
        expires = _epoch(row.get("not_after"))
        row["expires_in_days"] = None if expires is None else round((expires - now) / 86400, 1)
    return sorted(rows.values(), key=lambda r: (r["expires_in_days"] is None, r["expires_in_days"] or 0,
                                                r["secret"]))


# --- traffic --------------------------------------------------------------------------------------


def _traffic(plane) -> dict:
    """Cumulative request counts per Ingress (the page turns them into rates)."""
    per_ingress: dict[tuple[str, str], dict] = {}
    for key, value in list(getattr(plane, "stats", {}).items()):
        try:
            labels, _method, status = key
            namespace, ingress = labels[0], labels[1]
            count = int(getattr(value, "count", value))
            status = int(status)
        except (TypeError, ValueError, IndexError):
            continue
        entry = per_ingress.setdefault((namespace, ingress), {
            "namespace": namespace, "ingress": ingress,
            "name": f"{namespace}/{ingress}" if ingress else "(no ingress)",
            "requests": 0, "errors_4xx": 0, "errors_5xx": 0,
        })
        entry["requests"] += count
        if 400 <= status < 500:
            entry["errors_4xx"] += count
        elif status >= 500:
            entry["errors_5xx"] += count
    return {"ingresses": sorted(per_ingress.values(), key=lambda e: (not e["ingress"], e["name"])),
            "connections": _connections(plane),
            "upgraded": int(getattr(plane, "upgraded", 0))}


def _connections(plane) -> int:
    connections = getattr(plane, "connections", None)
    if connections is not None:
        return len(connections)
    return int(getattr(plane, "active", 0))


# --- values ---------------------------------------------------------------------------------------


def _timestamp(value: datetime.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _epoch(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _plain(value: Any) -> Any:
    """A JSON value for what a certificate-manager entry holds (times as ISO 8601, UTC)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime.datetime):
        return _timestamp(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


# --- serving --------------------------------------------------------------------------------------


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def status_handlers(plane, certificates: Callable[[], list[dict]] | None = None,
                    source: Callable[[], object] | None = None) -> dict[str, Handler]:
    """The metrics-port routes of the status page: ``/``, its assets, and ``/status.json``."""
    handlers: dict[str, Handler] = {}
    for path, (name, content_type) in ASSETS.items():
        body = _asset(name)
        handlers[path] = lambda body=body, content_type=content_type: (200, content_type, body)

    def respond(config, counters) -> tuple[int, str, bytes]:
        data = build_status(config, counters, certificates, source=source)
        return 200, "application/json", json.dumps(data, separators=(",", ":")).encode()

    def status_json():
        config = plane.config
        gather = getattr(plane, "gather_counters", None)
        if gather is None:
            return respond(config, plane)

        async def gathered():  # counters of every worker process, added up
            return respond(config, await gather())

        return gathered()

    handlers["/status.json"] = status_json
    return handlers
