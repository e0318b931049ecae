"""``auth-url`` (+ ``auth-method``, ``auth-signin``, ``auth-signin-redirect-param``, ``auth-response-headers``,
``auth-request-redirect``, ``auth-proxy-set-headers``, ``auth-cache-key``, ``auth-cache-duration``) and the
ConfigMap's ``global-auth-*`` keys: external authentication as nginx's ``auth_request``.

Before a request is proxied, its method (or ``auth-method``) and headers, without its body, are sent to
the auth URL with ``X-Original-URL``, ``X-Original-Method``, ``X-Sent-From``, ``X-Real-IP``,
``X-Forwarded-For``, ``X-Forwarded-Host``, ``X-Forwarded-Proto``, ``X-Request-ID`` and
``X-Auth-Request-Redirect`` (ingress-nginx's auth location), plus the headers of the
``auth-proxy-set-headers`` ConfigMap. Then, as nginx:

- 2xx: the request is proxied, with each ``auth-response-headers`` header of the auth response set on
  it (replacing what the client sent under that name; absent from the auth response: not sent);
- 401 with ``auth-signin``: 302 to the sign-in URL, with ``rd=`` (``auth-signin-redirect-param``) the
  original URL unless the sign-in URL already has that parameter; without it, 401 (with the auth
  response's ``WWW-Authenticate``) and 403 are answered to the client;
- anything else, a failure to connect or no answer within the route's timeouts: 500.

The subrequest never blocks the event loop: one small asyncio client per worker keeps idle keep-alive
connections per auth server (``AuthClient``). ``http://`` and ``https://`` auth URLs; as nginx's
``proxy_pass`` (ingress-nginx sets no ``proxy_ssl_verify``), an https auth server's certificate is not
verified, its name is sent (SNI). URLs, sign-in URLs and cache keys may use the nginx variables
``TEMPLATE_VARIABLES`` (``$host``, ``$escaped_request_uri``, ``$http_NAME`` ...); anything else is refused
when the annotation is read.

``auth-cache-key`` (+ ``auth-cache-duration``, default ``200 202 401 5m``): answers with those statuses
are remembered per rendered key for that long: per configuration and per worker (nginx: per cache zone,
shared by its workers), at most ``CACHE_LIMIT`` keys.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass, field
from time import monotonic
from urllib.parse import quote, urlsplit

from httptools import HttpParserError, HttpResponseParser

log = logging.getLogger("ingressd.auth")

CACHE_LIMIT = 10_000
MAX_AUTH_RESPONSE = 1 << 20  # bytes of an auth response body read (and dropped); larger: the connection is not kept
MAX_IDLE = 32  # idle connections kept per auth server and worker
IDLE_TIMEOUT = 60.0

_VARIABLE_RE = re.compile(r"\$(\{(\w+)\}|(\w+))")
TEMPLATE_VARIABLES = ("host", "http_host", "best_http_host", "server_name", "scheme", "pass_access_scheme",
                      "request_uri", "escaped_request_uri", "uri", "args", "query_string", "is_args", "remote_addr",
                      "remote_user", "request_method", "http_NAME", "cookie_NAME", "arg_NAME")
_FIXED_VARIABLES = frozenset(v for v in TEMPLATE_VARIABLES if not v.endswith("_NAME"))
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_DURATION_RE = re.compile(r"^(?:(\d+)([smhdw]?))+$")
_DURATION_PART_RE = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Request headers never passed to the auth server as the client sent them (ingressd sets its own).
_NOT_PASSED = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"te",
                         b"trailer", b"upgrade", b"expect", b"proxy", b"proxy-connection", b"x-original-url",
                         b"x-original-method", b"x-sent-from", b"x-real-ip", b"x-forwarded-for",
                         b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-scheme",
                         b"x-scheme", b"x-request-id", b"x-auth-request-redirect"))


# --- templates (nginx variables) -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str, ...]  # literal, variable, literal, ...

    def render(self, request: "AuthRequest") -> str:
        if len(self.parts) == 1:
            return self.parts[0]
        return "".join(part if i % 2 == 0 else request.variable(part) for i, part in enumerate(self.parts))

    @property
    def text(self) -> str:
        return "".join(part if i % 2 == 0 else "$" + part for i, part in enumerate(self.parts))

    @property
    def host_is_variable(self) -> bool:
        """Whether a variable is part of the URL's authority (``https://$host/...``)."""
        if len(self.parts) == 1:
            return False
        rest = self.parts[0].partition("://")[2]
        return "/" not in rest and "?" not in rest


def parse_template(value: str) -> Template:
    if any(ord(ch) < 0x21 or ord(ch) == 0x7f or ch in '"\\\'' for ch in value):
        raise ValueError("spaces, quotes, backslashes and control characters are not allowed")
    parts: list[str] = []
    last = 0
    for match in _VARIABLE_RE.finditer(value):
        name = match.group(2) or match.group(3)
        if name not in _FIXED_VARIABLES and not (name.startswith(("http_", "cookie_", "arg_")) and "_" in name[1:]):
            raise ValueError(f"unknown variable ${name}; supported: {', '.join('$' + v for v in TEMPLATE_VARIABLES)}")
        parts += [value[last:match.start()], name]
        last = match.end()
    parts.append(value[last:])
    return Template(tuple(parts))


def parse_url(value: str) -> Template:
    """An absolute ``http(s)://`` URL, possibly with variables (``https://$host/oauth2/auth``)."""
    value = value.strip()
    template = parse_template(value)
    sample = "".join(part if i % 2 == 0 else "x" for i, part in enumerate(template.parts))
    parts = urlsplit(sample)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an absolute http:// or https:// URL")
    try:
        parts.port
    except ValueError:
        raise ValueError("invalid port") from None
    return template


def parse_signin(value: str) -> Template:
    value = value.strip()
    template = parse_template(value)
    sample = "".join(part if i % 2 == 0 else "x" for i, part in enumerate(template.parts))
    if not (sample.startswith("/") or urlsplit(sample).scheme.lower() in ("http", "https")):
        raise ValueError("expected an absolute http(s) URL or a path")
    return template


def parse_method(value: str) -> bytes:
    method = value.strip().upper()
    if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        raise ValueError("expected an HTTP method such as GET or POST")
    return method.encode()


def parse_header_names(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    for name in names:
        if not _HEADER_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a header name")
    return names


def parse_param(value: str) -> str:
    value = value.strip()
    if not value or not re.match(r"^[A-Za-z0-9_.~-]+$", value):
        raise ValueError("expected a query parameter name")
    return value


def parse_duration(value: str) -> float:
    value = value.strip()
    if not _DURATION_RE.match(value):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    return float(sum(int(n) * _UNITS[u] for n, u in _DURATION_PART_RE.findall(value)))


def parse_cache_duration(value: str) -> tuple[tuple[frozenset, float], ...]:
    """``"200 202 10m, 401 5m"``: statuses and how long their answers are kept (no status: 200 301 302)."""
    entries = []
    for item in value.split(","):
        words = item.split()
        if not words:
            continue
        codes = words[:-1]
        if not all(c.isdigit() and 100 <= int(c) <= 599 for c in codes) and codes != ["any"]:
            raise ValueError("expected status codes then a duration, such as \"200 202 401 5m\"")
        statuses = frozenset(range(100, 600)) if codes == ["any"] else frozenset(map(int, codes or (200, 301, 302)))
        entries.append((statuses, parse_duration(words[-1])))
    if not entries:
        raise ValueError("expected status codes then a duration, such as \"200 202 401 5m\"")
    return tuple(entries)


DEFAULT_CACHE_DURATION = parse_cache_duration("200 202 401 5m")


# --- the per-request view --------------------------------------------------------------------------

class AuthRequest:
    """What the auth subrequest and the templates read from the client's request."""

    __slots__ = ("method", "scheme", "host", "raw_host", "url", "client_ip", "headers", "request_id", "forwarded_for")

    def __init__(self, method: bytes, scheme: str, host: str, raw_host: bytes, url: bytes, client_ip: str,
                 headers: list, request_id: bytes, forwarded_for: bytes | None = None):
        self.method = method
        self.scheme = scheme
        self.host = host
        self.raw_host = raw_host
        self.url = url
        self.client_ip = client_ip
        self.headers = headers
        self.request_id = request_id
        self.forwarded_for = forwarded_for

    def header(self, lower: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lower:
                return value
        return None

    def variable(self, name: str) -> str:
        uri = self.url.decode("latin-1")
        path, q, query = uri.partition("?")
        if name in ("host", "server_name", "best_http_host"):
            return self.host
        if name == "http_host":
            return self.raw_host.decode("latin-1")
        if name in ("scheme", "pass_access_scheme"):
            return self.scheme
        if name == "request_uri":
            return uri
        if name == "escaped_request_uri":
            return quote(uri, safe="")
        if name == "uri":
            return path
        if name in ("args", "query_string"):
            return query
        if name == "is_args":
            return "?" if q else ""
        if name == "remote_addr":
            return self.client_ip
        if name == "request_method":
            return self.method.decode("latin-1")
        if name == "remote_user":
            return _basic_user(self.header(b"authorization"))
        if name.startswith("http_"):
            value = self.header(name[5:].replace("_", "-").encode())
            return value.decode("latin-1") if value is not None else ""
        if name.startswith("cookie_"):
            return _cookie(self.header(b"cookie"), name[7:])
        if name.startswith("arg_"):
            wanted = name[4:]
            for pair in query.split("&"):
                key, _, value = pair.partition("=")
                if key == wanted:
                    return value
            return ""
        return ""

    @property
    def original_url(self) -> str:
        return f"{self.scheme}://{self.raw_host.decode('latin-1')}{self.url.decode('latin-1')}"


def _basic_user(authorization: bytes | None) -> str:
    import base64
    import binascii
    if not authorization:
        return ""
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return ""
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, ValueError):
        return ""


def _cookie(header: bytes | None, name: str) -> str:
    if not header:
        return ""
    for part in header.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


# --- the option ------------------------------------------------------------------------------------

class Verdict:
    """What the auth server said: proxy (with ``headers`` to set) or answer the client."""

    __slots__ = ("status", "headers", "location", "cookies")

    def __init__(self, status: int, headers: bytes = b"", location: str | None = None, cookies: bytes = b""):
        self.status = status  # 0: allowed (proxy the request)
        self.headers = headers  # allowed: the auth-response-headers lines; refused: extra response lines
        self.location = location
        self.cookies = cookies  # allowed: the auth response's Set-Cookie lines, for the client's response


@dataclass(frozen=True, slots=True, eq=False)
class ExtAuth:
    url: Template
    method: bytes | None = None  # None: the request's own
    signin: Template | None = None
    redirect_param: str = "rd"
    response_headers: tuple[str, ...] = ()
    request_redirect: Template | None = None  # X-Auth-Request-Redirect (default: the request URI)
    proxy_headers_ref: str | None = None  # auth-proxy-set-headers: NAMESPACE/NAME of a ConfigMap
    proxy_headers: bytes = b""  # its headers as field lines, filled in by the translator
    cache_key: Template | None = None
    cache_duration: tuple = DEFAULT_CACHE_DURATION
    always_set_cookie: bool = False
    source: str = "auth-url"  # or global-auth-url, for diagnostics
    _cache: dict = field(default_factory=dict, compare=False, repr=False)  # key -> (expires, status, lines, extra)

    def describe(self) -> str:
        return f"{self.source}={self.url.text}" + (f" signin={self.signin.text}" if self.signin else "")

    async def check(self, request: AuthRequest, client: "AuthClient", connect_timeout: float,
                    read_timeout: float) -> Verdict:
        """Ask the auth server about ``request``; never raises for what the server does."""
        key = None
        if self.cache_key is not None:
            key = self.url.render(request) + "\0" + self.cache_key.render(request)
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > monotonic():
                    return self._verdict(request, cached[1], cached[2])
                del self._cache[key]
        url = self.url.render(request)
        try:
            status, fields = await client.request(url, self._head(request, url), connect_timeout, read_timeout)
        except (OSError, asyncio.TimeoutError, HttpParserError, ValueError, ssl.SSLError) as error:
            log.error("auth request to %s failed: %s", url, error or type(error).__name__)
            return Verdict(500)
        if key is not None:
            for statuses, ttl in self.cache_duration:
                if status in statuses:
                    if len(self._cache) >= CACHE_LIMIT:
                        self._cache.clear()
                    self._cache[key] = (monotonic() + ttl, status, fields)
                    break
        return self._verdict(request, status, fields)

    def _verdict(self, request: AuthRequest, status: int, fields: list) -> Verdict:
        if 200 <= status < 300:
            lines = []
            for name in self.response_headers:
                lower = name.lower().encode()
                for field_name, value in fields:
                    if field_name == lower:
                        if value:
                            lines.append(name.encode("latin-1") + b": " + value + b"\r\n")
                        break
            cookies = b"".join(b"Set-Cookie: " + v + b"\r\n" for n, v in fields if n == b"set-cookie")
            return Verdict(0, b"".join(lines), cookies=cookies)
        extra = b""
        if self.always_set_cookie:  # auth-always-set-cookie: the auth server's cookies on refusals too
            extra = b"".join(b"Set-Cookie: " + v + b"\r\n" for n, v in fields if n == b"set-cookie")
        if status == 401 and self.signin is not None:
            return Verdict(302, extra, self.signin_url(request))
        if status == 401:
            extra += b"".join(b"WWW-Authenticate: " + v + b"\r\n" for n, v in fields if n == b"www-authenticate")
            return Verdict(401, extra)
        if status == 403:
            return Verdict(403, extra)
        log.error("auth request to %s answered %d: answering 500", self.url.render(request), status)
        return Verdict(500)

    def signin_url(self, request: AuthRequest) -> str:
        """ingress-nginx's buildAuthSignURL: ``rd=`` the original URL unless the sign-in URL has it."""
        text = self.signin.text
        query = urlsplit(text).query
        param = self.redirect_param
        target = self.signin.render(request)
        if any(pair.partition("=")[0] == param and pair.partition("=")[2] for pair in query.split("&")):
            return target
        original = request.scheme + "://" + request.raw_host.decode("latin-1") + quote(
            request.url.decode("latin-1"), safe="")
        return target + ("&" if query else "?") + param + "=" + original

    def _head(self, request: AuthRequest, url: str) -> bytes:
        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        method = self.method or request.method
        redirect = (self.request_redirect.render(request) if self.request_redirect is not None
                    else request.url.decode("latin-1"))
        lines = [method, b" ", target.encode("latin-1", "replace"), b" HTTP/1.1\r\nHost: ",
                 parts.netloc.rpartition("@")[2].encode("latin-1"), b"\r\n"]
        for name, value in request.headers:
            if name.lower() not in _NOT_PASSED:
                lines += (name, b": ", value, b"\r\n")
        ip = request.client_ip.encode()
        lines += (b"X-Original-URL: ", request.original_url.encode("latin-1", "replace"),
                  b"\r\nX-Original-Method: ", request.method,
                  b"\r\nX-Sent-From: nginx-ingress-controller\r\nX-Real-IP: ", ip,
                  b"\r\nX-Forwarded-For: ", request.forwarded_for or ip,
                  b"\r\nX-Forwarded-Host: ", request.raw_host,
                  b"\r\nX-Forwarded-Proto: ", request.scheme.encode(),
                  b"\r\nX-Request-ID: ", request.request_id,
                  b"\r\nX-Auth-Request-Redirect: ", redirect.encode("latin-1", "replace"), b"\r\n",
                  self.proxy_headers, b"\r\n")
        return b"".join(lines)


def set_headers(head: bytes, names: tuple[str, ...], lines: bytes) -> bytes:
    """The upstream request ``head`` with the headers ``names`` replaced by ``lines`` (nginx's
    ``proxy_set_header``: what the client sent under those names never reaches the upstream)."""
    lower = {name.lower().encode() for name in names}
    first, *fields = head[:-4].split(b"\r\n")
    kept = [line for line in fields if line.partition(b":")[0].strip().lower() not in lower]
    return b"\r\n".join((first, *kept)) + b"\r\n" + lines + b"\r\n"


# --- the client ------------------------------------------------------------------------------------

class _Response:
    """httptools callbacks for one auth response: status, headers (lower-case names), body dropped."""

    __slots__ = ("fields", "size", "complete", "headers_done", "parser", "keep_alive")

    def __init__(self):
        self.parser: HttpResponseParser | None = None
        self.keep_alive = False
        self.fields: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.complete = False
        self.headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is complete

    def on_body(self, body: bytes) -> None:
        self.size += len(body)

    def on_message_complete(self) -> None:
        self.complete = True


class AuthClient:
    """Keep-alive HTTP/1.1 connections to auth servers, one set per worker (asyncio streams)."""

    def __init__(self):
        self.idle: dict[tuple, list] = {}  # (scheme, host, port) -> [(reader, writer, idle since)]
        self._tls: ssl.SSLContext | None = None
        self.opened = self.reused = 0

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # nginx's proxy_pass default (proxy_ssl_verify off)
            context.set_alpn_protocols(["http/1.1"])
            self._tls = context
        return self._tls

    async def request(self, url: str, head: bytes, connect_timeout: float, read_timeout: float) -> tuple[int, list]:
        """``head`` sent to ``url``'s server: (status, [(lower-case name, value)]). The connection
        within ``connect_timeout``, the answer within ``read_timeout``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        head_only = head.startswith(b"HEAD ")
        idle = self.idle.get(key)
        now = monotonic()
        while idle:
            reader, writer, since = idle.pop()
            if writer.is_closing() or reader.at_eof() or now - since > IDLE_TIMEOUT:
                writer.close()
                continue
            try:
                result = await asyncio.wait_for(self._exchange(key, reader, writer, head, head_only), read_timeout)
            except (OSError, _Closed):
                writer.close()
                continue  # the server closed a kept connection: try another, or a new one
            except BaseException:
                writer.close()
                raise
            self.reused += 1
            return result
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=self.tls() if scheme == "https" else None,
            server_hostname=host if scheme == "https" else None), connect_timeout)
        self.opened += 1
        try:
            return await asyncio.wait_for(self._exchange(key, reader, writer, head, head_only), read_timeout)
        except _Closed:
            writer.close()
            raise ConnectionResetError("the auth server closed the connection without answering") from None
        except BaseException:
            writer.close()
            raise

    async def _exchange(self, key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                        head_only: bool) -> tuple[int, list]:
        writer.write(head)
        response = _Response()
        parser = response.parser = HttpResponseParser(response)
        received = False
        while not (response.complete or (head_only and response.headers_done)):
            data = await reader.read(65536)
            if not data:
                if not received:
                    raise _Closed()
                parser.feed_data(b"")
                if not response.complete:
                    raise ConnectionResetError("the auth response was cut off")
                break
            received = True
            parser.feed_data(data)
            if response.size > MAX_AUTH_RESPONSE:
                writer.close()
                return parser.get_status_code(), response.fields
        status = parser.get_status_code()
        if response.complete and response.keep_alive and not head_only and not reader.at_eof():
            idle = self.idle.setdefault(key, [])
            if len(idle) < MAX_IDLE:
                idle.append((reader, writer, monotonic()))
            else:
                writer.close()
        else:
            writer.close()
        return status, response.fields


class _Closed(Exception):
    """A connection closed before any byte of the answer."""


_CLIENT: AuthClient | None = None


def client() -> AuthClient:
    """This worker's auth client."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = AuthClient()
    return _CLIENT
