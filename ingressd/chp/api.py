"""configurable-http-proxy's REST API as a pure function: a request in, (status, headers, body) out.

Status codes and bodies are CHP's (lib/configproxy.js):

- every request needs ``Authorization: token TOKEN`` when a token is set: else 403, empty body;
- ``GET /api/routes[?inactive_since=ISO8601]``: 200, a JSON object path -> route data; a time that
  does not parse: 400 ``Invalid datestamp '...' must be ISO8601.``;
- ``GET /api/routes/PATH``: 200 and the route's JSON, or 404 with an empty body;
- ``POST /api/routes/PATH`` with ``{"target": "http://...", ...}``: 201, empty body; other keys are
  kept and returned; a body that is not JSON: 400 ``Body not valid JSON: ...``; no string target:
  400 ``Must specify 'target' as string``;
- ``DELETE /api/routes/PATH``: 204, or 404 when there is no such route;
- another method on /api/routes: 405 ``Method not supported``; any other path: 404 ``Not Found``.

``last_activity`` is written as JavaScript's ``Date.toISOString`` does (UTC, milliseconds, ``Z``).
"""

from __future__ import annotations

import hmac
import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

from .routes import ProxyRoutes, RouteError, format_time, parse_time

JSON = "application/json"
_ROUTES = re.compile(r"^/api/routes(/.*)?$")
_TOKEN = re.compile(r"token\s+(\S+)")

Response = tuple[int, str | None, bytes]


def route_json(route) -> dict:
    return {**route.data, "last_activity": format_time(route.last_activity())}


def handle(store: ProxyRoutes, token: str | None, method: str, url: str, authorization: str,
           body: bytes) -> Response:
    """Answer one API request. ``store`` changes only on a successful POST or DELETE (the caller
    compares ``store.version`` to know whether to recompile)."""
    parts = urlsplit(url)
    match = _ROUTES.match(parts.path)
    if match is None:
        return 404, None, b"Not Found"
    if method not in ("GET", "POST", "DELETE"):
        return 405, None, b"Method not supported"
    if token:
        found = _TOKEN.search(authorization or "")
        if found is None or not hmac.compare_digest(found.group(1).encode(), token.encode()):
            return 403, None, b""
    path = unquote(match.group(1)) if match.group(1) is not None else None
    if method == "GET":
        return _get(store, path, parts.query)
    if method == "POST":
        return _post(store, path, body)
    if store.get(path) is None:
        return 404, None, b""
    store.remove(path)
    return 204, None, b""


def _get(store: ProxyRoutes, path: str | None, query: str) -> Response:
    if path and path != "/":
        route = store.get(path)
        if route is None:
            return 404, None, b""
        return 200, JSON, json.dumps(route_json(route)).encode()
    params = parse_qs(query)
    since_text = (params.get("inactiveSince") or params.get("inactive_since") or [""])[0]
    since = None
    if since_text:
        since = parse_time(since_text)
        if since is None:
            return 400, None, f"Invalid datestamp '{since_text}' must be ISO8601.".encode()
    store.sample()
    result = {}
    for key, route in store.routes.items():
        if since is None or route.last_activity() < since:
            result[key] = route_json(route)
    return 200, JSON, json.dumps(result).encode()


def _post(store: ProxyRoutes, path: str | None, body: bytes) -> Response:
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else None
        if body.strip() == b"":
            raise ValueError("Unexpected end of JSON input")
    except (ValueError, UnicodeDecodeError) as error:
        return 400, None, f"Body not valid JSON: SyntaxError: {error}".encode()
    if not isinstance(data, dict):
        data = {}  # CHP: JSON.parse(body) || {}, then the target check below
    if not isinstance(data.get("target"), str):
        return 400, None, b"Must specify 'target' as string"
    data.pop("last_activity", None)
    try:
        store.add(path or "/", data)
    except RouteError as error:
        return 400, None, str(error).encode()
    return 201, None, b""
