"""ingress-nginx's controller ConfigMap, parsed into ingressd's global settings.

The ConfigMap is named by ``--configmap NAMESPACE/NAME`` (in a manifest directory, a ``ConfigMap``
object of that name; ingress-nginx's chart calls it ``ingress-nginx/ingress-nginx-controller``).
Its keys become: the defaults of every Ingress's route options (``proxy-body-size``, timeouts,
``ssl-redirect``, source ranges; an Ingress's annotations win), the HSTS header, and the client
trust settings of ``config.ClientTrust`` (``use-forwarded-headers`` ...; a key in the ConfigMap wins
over the command line). Every key is looked up in :mod:`ingressd.catalog`: unknown, partly
supported and unsupported keys are reported; a value that does not parse is reported and the
default kept.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from . import catalog
from .annotations import (DEFAULTS, Defaults, RouteOptions, _parse_count, _parse_load_balance, _parse_next_upstream,
                          _parse_on_off, _parse_seconds_or_zero, parse_bool, parse_listener_ciphers,
                          parse_seconds, parse_size)
from .dataplane.logformat import DEFAULT_TEMPLATE, LogFormat, unknown_variables
from .config import ClientLimits, ClientTrust, TLSSettings, UpstreamLimits, parse_cidrs
from .options import extauth
from .options.balance import make_balance
from .options.block import Blocked, parse_blocklist
from .options.headers import parse_names, parse_ref
from .options.ranges import parse_ranges

DEFAULT_CONFIGMAP = "ingress-nginx/ingress-nginx-controller"
DEFAULT_HSTS_MAX_AGE = 31536000


def hsts_header(enabled: bool = True, max_age: int = DEFAULT_HSTS_MAX_AGE, include_subdomains: bool = True,
                preload: bool = False) -> bytes:
    """The Strict-Transport-Security line added to HTTPS responses (b"" when off)."""
    if not enabled:
        return b""
    value = b"max-age=%d" % max_age
    if include_subdomains:
        value += b"; includeSubDomains"
    if preload:
        value += b"; preload"
    return b"Strict-Transport-Security: " + value + b"\r\n"


DEFAULT_HSTS = hsts_header()


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """What one ConfigMap sets, ready for the translator and the data plane."""

    defaults: Defaults = DEFAULTS
    hsts: bytes = DEFAULT_HSTS
    trust: ClientTrust | None = None  # None: the command line's
    client: ClientLimits = ClientLimits()
    upstream: UpstreamLimits = UpstreamLimits()
    tls: TLSSettings = TLSSettings()
    shutdown_timeout: float = 240.0  # worker-shutdown-timeout
    log_format: LogFormat | None = None  # log-format-upstream, log-format-escape-*; None: --log-format's lines
    blocked: Blocked | None = None  # block-user-agents, block-referers
    add_headers: str | None = None  # add-headers: the ConfigMap of response headers ("namespace/name")
    proxy_set_headers: str | None = None  # proxy-set-headers: the ConfigMap of request headers
    hide_headers: tuple[str, ...] = ()  # hide-headers: upstream response headers removed
    allowed_response_headers: tuple[str, ...] = ()  # global-allowed-response-headers (custom-headers)


_TLS_VERSIONS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def _ssl_protocols(value: str) -> tuple[tuple[str, ...], list[str]]:
    """ssl-protocols "TLSv1.2 TLSv1.3": the versions ingressd offers (TLS 1.2 and 1.3), and those dropped."""
    names = value.split()
    for name in names:
        if name not in _TLS_VERSIONS:
            raise ValueError(f"{name!r} is not a TLS protocol (TLSv1.2 TLSv1.3 ...)")
    usable = tuple(n for n in ("TLSv1.2", "TLSv1.3") if n in names)
    if not usable:
        raise ValueError("only TLSv1.2 and TLSv1.3 are offered by ingressd")
    return usable, [n for n in names if n not in usable]


def _max_age(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError("expected a number of seconds")
    return int(value)


def _status_code(value: str) -> int:
    if not value.strip().isdigit() or not 400 <= int(value) <= 599:
        raise ValueError("expected an HTTP error status (400-599)")
    return int(value)


def _count(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError("expected a whole number")
    return int(value)


def _positive_count(value: str) -> int:
    if not value.strip().isdigit() or not 1 <= int(value) <= 2 ** 31 - 1:
        raise ValueError("expected a whole number from 1 to 2147483647")
    return int(value)


def _nginx_seconds(value: str) -> float:
    """nginx time: a number with an optional unit (ms, s, m, h); "60" is seconds."""
    match = re.match(r"^(\d+)(ms|s|m|h)?$", value.strip())
    if not match:
        raise ValueError("expected a time such as 60, 60s, 5m or 1h")
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


def _header_buffers(value: str) -> int:
    """large-client-header-buffers "NUMBER SIZE": the largest request head ingressd takes."""
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise ValueError('expected "NUMBER SIZE" such as "4 8k"')
    size = parse_size(parts[1])
    if not size or int(parts[0]) == 0:
        raise ValueError("expected a buffer count and size greater than 0")
    return int(parts[0]) * size


def _redirect_code(value: str) -> int:
    if value.strip() not in ("301", "302", "307", "308"):
        raise ValueError("expected 301, 302, 307 or 308")
    return int(value)


_CLIENT_KEYS = {"client-header-timeout": ("header_timeout", _nginx_seconds),
                "client-body-timeout": ("body_timeout", _nginx_seconds),
                "keep-alive": ("keepalive_timeout", _nginx_seconds),
                "keep-alive-requests": ("keepalive_requests", _count),
                "large-client-header-buffers": ("max_head_bytes", _header_buffers),
                "http2-max-concurrent-streams": ("http2_max_concurrent_streams", _positive_count),
                "http2-max-requests": ("http2_max_requests", _count)}
_UPSTREAM_KEYS = {"upstream-keepalive-timeout": ("idle_timeout", _nginx_seconds),
                  "upstream-keepalive-connections": ("max_idle", _count),
                  "upstream-keepalive-requests": ("max_requests", _count)}


def _trust_cidrs(value: str) -> tuple[str, ...]:
    parse_cidrs(value)
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _header_name(value: str) -> str:
    value = value.strip()
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError("expected a header name")
    return value


_TRUST_KEYS = {
    "use-forwarded-headers": ("use_forwarded_headers", parse_bool),
    "forwarded-for-header": ("forwarded_for_header", _header_name),
    "compute-full-forwarded-for": ("compute_full_forwarded_for", parse_bool),
    "enable-real-ip": ("enable_real_ip", parse_bool),
    "proxy-real-ip-cidr": ("proxy_real_ip_cidr", _trust_cidrs),
    "use-proxy-protocol": ("use_proxy_protocol", parse_bool),
}
def _parse_tries(value: str) -> int:
    return _parse_count(value) or 1_000_000  # nginx: 0 is no limit


_OPTION_KEYS = {
    "proxy-body-size": ("body_size_limit", parse_size),
    "proxy-connect-timeout": ("connect_timeout", parse_seconds),
    "proxy-read-timeout": ("read_timeout", parse_seconds),
    "proxy-send-timeout": ("send_timeout", parse_seconds),
    "ssl-redirect": ("ssl_redirect", parse_bool),
    "force-ssl-redirect": ("force_ssl_redirect", parse_bool),
    "load-balance": ("load_balance", _parse_load_balance),
    "proxy-request-buffering": ("request_buffering", _parse_on_off),
    "proxy-next-upstream": ("next_upstream", _parse_next_upstream),
    "proxy-next-upstream-timeout": ("next_upstream_timeout", _parse_seconds_or_zero),
    "proxy-next-upstream-tries": ("next_upstream_tries", _parse_tries),
}
_GLOBAL_AUTH_KEYS = {
    "global-auth-url": ("url", extauth.parse_url),
    "global-auth-method": ("method", extauth.parse_method),
    "global-auth-signin": ("signin", extauth.parse_signin),
    "global-auth-signin-redirect-param": ("redirect_param", extauth.parse_param),
    "global-auth-response-headers": ("response_headers", extauth.parse_header_names),
    "global-auth-request-redirect": ("request_redirect", extauth.parse_template),
    "global-auth-cache-key": ("cache_key", extauth.parse_template),
    "global-auth-cache-duration": ("cache_duration", extauth.parse_cache_duration),
    "global-auth-always-set-cookie": ("always_set_cookie", parse_bool),
}
_RANGE_KEYS = {"whitelist-source-range": "allow", "denylist-source-range": "deny", "block-cidrs": "block"}
_HSTS_KEYS = {"hsts": ("enabled", parse_bool), "hsts-max-age": ("max_age", _max_age),
              "hsts-include-subdomains": ("include_subdomains", parse_bool), "hsts-preload": ("preload", parse_bool)}


def parse_controller_configmap(data: dict[str, str], trust: ClientTrust) -> tuple[ControllerSettings, list[str]]:
    """The settings of one ConfigMap's ``data``, and one warning per key not used as written.
    ``trust`` is the command line's, which the ConfigMap's trust keys override."""
    warnings: list[str] = []
    options: dict[str, object] = {}
    ranges: dict[str, tuple] = {}
    hsts: dict[str, object] = {}
    trust_changes: dict[str, object] = {}

    def parse(key: str, parser, raw: str):
        try:
            return parser(raw), True
        except ValueError as error:
            warnings.append(f"ConfigMap key {key}: {raw!r} is invalid ({error}); using the default")
            return None, False

    limit_status = conn_status = 503
    tls: dict[str, object] = {}
    shutdown_timeout = 240.0
    log: dict[str, object] = {}
    blocks: dict[str, object] = {}
    headers: dict[str, object] = {}
    default_backend_log = False
    global_auth: dict[str, object] = {}
    no_auth_locations = DEFAULTS.no_auth_locations
    client: dict[str, object] = {}
    upstream: dict[str, object] = {}
    for key, raw in data.items():
        if key in _CLIENT_KEYS or key in _UPSTREAM_KEYS:
            name, parser = _CLIENT_KEYS.get(key) or _UPSTREAM_KEYS[key]
            value, ok = parse(key, parser, raw)
            if ok:
                (client if key in _CLIENT_KEYS else upstream)[name] = value
                if key == "http2-max-requests" and value:  # honoured, where ingress-nginx's nginx ignores it
                    warnings.append(catalog.describe("ConfigMap key", key, catalog.CONFIGMAP[key]))
        elif key == "ssl-protocols":
            value, ok = parse(key, _ssl_protocols, raw)
            if ok:
                tls["protocols"], dropped = value
                if dropped:
                    warnings.append(f"ConfigMap key ssl-protocols: {' '.join(dropped)} not offered (ingressd speaks "
                                    f"TLSv1.2 and TLSv1.3 only); using {' '.join(value[0])}")
        elif key == "use-http2":
            value, ok = parse(key, parse_bool, raw)
            if ok:
                tls["http2"] = value
        elif key == "worker-shutdown-timeout":
            value, ok = parse(key, _nginx_seconds, raw)
            if ok:
                shutdown_timeout = value
        elif key == "log-format-upstream":
            if not raw.strip() or any(ord(c) < 0x20 for c in raw):
                warnings.append(f"ConfigMap key {key}: {raw!r} is invalid (expected one line of text and nginx "
                                "variables); using the default")
                continue
            log["template"] = raw.strip()
            unknown = unknown_variables(raw)
            if unknown:
                warnings.append(f"ConfigMap key {key}: {', '.join('$' + n for n in unknown)} cannot be filled by "
                                'ingressd; logged as "-"')
        elif key in ("log-format-escape-json", "log-format-escape-none"):
            value, ok = parse(key, parse_bool, raw)
            if ok:
                log[key] = value
        elif key in ("block-user-agents", "block-referers"):
            value, ok = parse(key, parse_blocklist, raw)
            if ok:
                blocks["user_agents" if key == "block-user-agents" else "referers"] = value
        elif key in ("add-headers", "proxy-set-headers"):
            value, ok = parse(key, parse_ref, raw)
            if ok:
                headers[key.replace("-", "_")] = value
        elif key in ("hide-headers", "global-allowed-response-headers"):
            value, ok = parse(key, parse_names, raw)
            if ok:
                headers["allowed_response_headers" if key.startswith("global") else "hide_headers"] = value
        elif key == "ssl-ciphers":
            value, ok = parse(key, parse_listener_ciphers, raw)
            if ok:
                tls["ciphers"] = value
        elif key == "http-redirect-code":
            value, ok = parse(key, _redirect_code, raw)
            if ok:
                options["https_redirect_code"] = value
        elif key == "enable-access-log-for-default-backend":
            value, ok = parse(key, parse_bool, raw)
            if ok:
                default_backend_log = value
        elif key == "skip-access-log-urls":
            options["skip_log_urls"] = frozenset(u.strip() for u in raw.split(",") if u.strip())
        elif key == "limit-req-status-code":
            value, ok = parse(key, _status_code, raw)
            if ok:
                limit_status = value
        elif key == "limit-conn-status-code":
            value, ok = parse(key, _status_code, raw)
            if ok:
                conn_status = value
        elif key in _GLOBAL_AUTH_KEYS:
            name, parser = _GLOBAL_AUTH_KEYS[key]
            value, ok = parse(key, parser, raw)
            if ok:
                global_auth[name] = value
            elif key == "global-auth-url":
                global_auth["invalid"] = True
        elif key == "custom-http-errors":
            from .options.errorpages import parse_codes
            value, ok = parse(key, parse_codes, raw)
            if ok:
                options["error_codes"] = value
        elif key == "no-auth-locations":
            no_auth_locations = tuple(p.strip() for p in raw.split(",") if p.strip())
        elif key in _OPTION_KEYS:
            name, parser = _OPTION_KEYS[key]
            value, ok = parse(key, parser, raw)
            if ok:
                options[name] = value
        elif key in _RANGE_KEYS:
            value, ok = parse(key, parse_ranges, raw)
            if ok:
                ranges[_RANGE_KEYS[key]] = value
        elif key in _HSTS_KEYS:
            name, parser = _HSTS_KEYS[key]
            value, ok = parse(key, parser, raw)
            if ok:
                hsts[name] = value
        elif key in _TRUST_KEYS:
            name, parser = _TRUST_KEYS[key]
            value, ok = parse(key, parser, raw)
            if ok:
                trust_changes[name] = value
        else:
            entry = catalog.CONFIGMAP.get(key)
            if catalog.reported(entry):
                warnings.append(catalog.describe("ConfigMap key", key, entry))

    log_format = None
    if log:  # escape-none wins over escape-json, as in ingress-nginx's template
        escape = ("none" if log.get("log-format-escape-none") else "json" if log.get("log-format-escape-json")
                  else "default")
        if "template" in log or escape != "default":
            log_format = LogFormat(log.get("template", DEFAULT_TEMPLATE), escape)
    new_trust = None
    if trust_changes:
        try:
            new_trust = dataclasses.replace(trust, **trust_changes)
        except ValueError as error:
            warnings.append(f"ConfigMap: forwarded-header settings are invalid ({error}); using the command line's")
    if "load_balance" in options:  # the balancing of every Ingress without its own load-balance
        options["balance"] = make_balance(options["load_balance"], None, None)
    base = RouteOptions(**options) if options else DEFAULTS.options
    auth = None
    if global_auth.pop("invalid", False):
        warnings.append("ConfigMap key global-auth-url is invalid: Ingresses without their own auth-url are "
                        "served without global authentication")
    elif "url" in global_auth:
        auth = extauth.ExtAuth(**global_auth, source="global-auth-url")
    elif global_auth:
        warnings.append("ConfigMap keys global-auth-* without global-auth-url are ignored")
    defaults = Defaults(base, ranges.get("allow", ()), ranges.get("deny", ()), ranges.get("block", ()), limit_status,
                        default_backend_log, conn_status, auth, no_auth_locations)
    if defaults.allow or defaults.deny or defaults.block:
        from .options.ranges import SourceRanges
        base = dataclasses.replace(base, ranges=SourceRanges(defaults.allow, defaults.deny + defaults.block))
        defaults = dataclasses.replace(defaults, options=base)
    return (ControllerSettings(defaults, hsts_header(**hsts), new_trust, ClientLimits(**client),
                               UpstreamLimits(**upstream), TLSSettings(**tls), shutdown_timeout, log_format,
                               Blocked(**blocks) if blocks else None, **headers), warnings)
