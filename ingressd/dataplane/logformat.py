"""ingress-nginx's ``log-format-upstream``: nginx variables compiled into an access log formatter.

The template is compiled once per distinct format (``compile_format``, cached by template and
escape) into one generated Python function: a join of the literal text and one expression per
variable, escaped only where the value can hold client or cluster text. Variables ingressd
cannot fill are reported when the ConfigMap is read (``unknown_variables``) and logged as "-".
Values are escaped as nginx does: ``default`` (``"``, ``\\``, control and non-ASCII bytes as
``\\xHH``), ``json`` (``log-format-escape-json``: JSON string escapes) or ``none``
(``log-format-escape-none``).
"""

from __future__ import annotations

import base64
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable

# ingress-nginx's default log-format-upstream.
DEFAULT_TEMPLATE = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" $request_length $request_time [$proxy_upstream_name] '
                    '[$proxy_alternative_upstream_name] $upstream_addr $upstream_response_length '
                    '$upstream_response_time $upstream_status $req_id')

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


@dataclass(frozen=True, slots=True)
class LogFormat:
    """What the ConfigMap sets: the template and the escaping ("default", "json" or "none")."""

    template: str = DEFAULT_TEMPLATE
    escape: str = "default"


def _s(value: bytes) -> str:
    return value.decode("latin-1")


def _remote_user(x) -> str:
    for name, value in x.headers:
        if len(name) == 13 and name.lower() == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() == b"basic":
                try:
                    return base64.b64decode(credentials.strip(), validate=True).partition(b":")[0].decode(
                        "latin-1") or "-"
                except ValueError:
                    return "-"
    return "-"


def _header(x, wanted: bytes) -> str:
    size = len(wanted)
    for key, value in x.headers:
        if len(key) == size and key.lower() == wanted:
            return value.decode("latin-1")
    return "-"


def _proxy_add_x_forwarded_for(x) -> str:
    incoming = _header(x, b"x-forwarded-for")
    return x.conn.client_ip if incoming == "-" else f"{incoming}, {x.conn.client_ip}"


def _time_iso8601() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


_UPSTREAM = "x.route.backend.name if x.route is not None and x.route.backend is not None else 'upstream-default-backend'"

# Each variable as a Python expression over ``x`` (the exchange), ``now`` and ``log`` (the
# AccessLog), and whether its value may need escaping (text from the client or the cluster).
_EXPRESSIONS: dict[str, tuple[str, bool]] = {
    "remote_addr": ("x.conn.client_ip", False),
    "the_real_ip": ("x.conn.client_ip", False),
    "proxy_protocol_addr": ("(getattr(x.conn, 'proxied_ip', None) or '')", False),
    "remote_user": ("_remote_user(x)", True),
    "proxy_add_x_forwarded_for": ("_proxy_add_x_forwarded_for(x)", True),
    "time_local": ("log.time_local()", False),
    "time_iso8601": ("_time_iso8601()", False),
    "msec": ("'%.3f' % _time()", False),
    "request": ("'%s %s HTTP/%s' % (_s(x.method), _s(x.url), '1.0' if x.http10 else '1.1')", True),
    "request_method": ("_s(x.method)", True),
    "request_uri": ("_s(x.url)", True),
    "uri": ("_s(x.url).partition('?')[0]", True),
    "document_uri": ("_s(x.url).partition('?')[0]", True),
    "args": ("_s(x.url).partition('?')[2]", True),
    "query_string": ("_s(x.url).partition('?')[2]", True),
    "is_args": ("('?' if b'?' in x.url else '')", False),
    "server_protocol": ("('HTTP/1.0' if x.http10 else 'HTTP/1.1')", False),
    "status": ("str(x.status)", False),
    "body_bytes_sent": ("str(x.sent)", False),
    "bytes_sent": ("str(x.sent)", False),
    "http_referer": ("(_s(x.referer) or '-')", True),
    "http_user_agent": ("(_s(x.user_agent) or '-')", True),
    "request_length": ("str(x.head_size + x.received)", False),
    "request_time": ("'%.3f' % (now - x.started)", False),
    "proxy_upstream_name": (f"({_UPSTREAM})", True),
    "proxy_alternative_upstream_name": ("''", False),
    "upstream_addr": ("('%s:%d' % x.upstream_addr[:2] if x.upstream_addr else '-')", False),
    "upstream_response_length": ("(str(x.upstream_received) if x.upstream_header else '-')", False),
    "upstream_response_time": ("('%.3f' % (now - x.upstream_start) if x.upstream_header else '-')", False),
    "upstream_connect_time": ("('%.3f' % (x.upstream_connected - x.upstream_start) if x.upstream_header else '-')",
                              False),
    "upstream_header_time": ("('%.3f' % (x.upstream_header - x.upstream_start) if x.upstream_header else '-')",
                             False),
    "upstream_status": ("(str(x.upstream_status) if x.upstream_status else '-')", False),
    "req_id": ("_s(x.request_id)", True),
    "request_id": ("_s(x.request_id)", True),
    "host": ("(x.host or '-')", True),
    "server_name": ("(x.route.host if x.route is not None and x.route.host else '_')", True),
    "namespace": ("((x.route.namespace or '-') if x.route is not None else '-')", True),
    "ingress_name": ("((x.route.ingress or '-') if x.route is not None else '-')", True),
    "service_name": ("((x.route.service or '-') if x.route is not None else '-')", True),
    "service_port": ("(x.route.backend.port if x.route is not None and x.route.backend is not None else '-')", True),
    "scheme": ("x.conn.listener.scheme", False),
    "server_port": ("str(x.conn.listener.port)", False),
    "pid": ("_pid", False),
    "hostname": ("_hostname", True),
}
_GETTERS = _EXPRESSIONS  # the variables ingressd fills


def known(name: str) -> bool:
    return name in _GETTERS or (name.startswith("http_") and len(name) > 5)


def unknown_variables(template: str) -> list[str]:
    """The variables of ``template`` ingressd cannot fill (logged as "-")."""
    names = [m.group(1) or m.group(2) for m in _VARIABLE.finditer(template)]
    return list(dict.fromkeys(n for n in names if not known(n)))


# nginx's escapes (ngx_http_log_escape / ngx_escape_json)
_DEFAULT_ESCAPES = {c: "\\x%02X" % c for c in (*range(0x20), *range(0x7f, 0x100))}
_DEFAULT_ESCAPES.update({ord('"'): "\\x22", ord("\\"): "\\x5C"})
_JSON_ESCAPES = {c: "\\u%04x" % c for c in range(0x20)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t",
                      ord("\b"): "\\b", ord("\f"): "\\f"})
_DEFAULT_TABLE = str.maketrans({chr(k): v for k, v in _DEFAULT_ESCAPES.items()})
_JSON_TABLE = str.maketrans({chr(k): v for k, v in _JSON_ESCAPES.items()})
_NEEDS_DEFAULT = re.compile(r'[\x00-\x1f"\\\x7f-\xff]')
_NEEDS_JSON = re.compile(r'[\x00-\x1f"\\]')


def _escaper(kind: str) -> Callable[[str], str] | None:
    if kind == "none":
        return None
    table, needs = (_JSON_TABLE, _NEEDS_JSON) if kind == "json" else (_DEFAULT_TABLE, _NEEDS_DEFAULT)
    search = needs.search

    def escape(value: str) -> str:
        return value.translate(table) if search(value) else value
    return escape


_CACHE: dict[LogFormat, Callable] = {}


def compile_format(fmt: LogFormat) -> Callable:
    """``line(exchange, now, access_log) -> str`` for ``fmt``, generated as one Python function
    (cached: once per distinct format). Only ingressd's own expressions and ``repr`` of the
    template's literal text enter the generated source."""
    line = _CACHE.get(fmt)
    if line is not None:
        return line
    escape = _escaper(fmt.escape)
    namespace: dict[str, object] = {"_s": _s, "_remote_user": _remote_user, "_header": _header,
                                    "_proxy_add_x_forwarded_for": _proxy_add_x_forwarded_for,
                                    "_time_iso8601": _time_iso8601, "_time": time.time, "_e": escape,
                                    "_pid": str(os.getpid()), "_hostname": socket.gethostname()}
    pieces: list[str] = []
    literal = ""
    last = 0
    template = fmt.template
    for match in _VARIABLE.finditer(template):
        literal += template[last:match.start()]
        last = match.end()
        name = match.group(1) or match.group(2)
        if name in _EXPRESSIONS:
            expression, unsafe = _EXPRESSIONS[name]
        elif name.startswith("http_") and len(name) > 5:
            header = f"_h{len(namespace)}"
            namespace[header] = name[5:].replace("_", "-").encode()
            expression, unsafe = f"_header(x, {header})", True
        else:
            literal += "-"
            continue
        if literal:
            pieces.append(repr(literal))
            literal = ""
        pieces.append(f"_e({expression})" if unsafe and escape is not None else expression)
    literal += template[last:]
    if literal:
        pieces.append(repr(literal))
    source = "def line(x, now, log):\n    return ''.join((%s,))\n" % ", ".join(pieces or ["''"])
    exec(compile(source, "<log-format-upstream>", "exec"), namespace)
    line = _CACHE[fmt] = namespace["line"]
    return line
