"""Choosing an endpoint other than round robin: ``load-balance: ewma``, ``upstream-hash-by``,
``affinity: cookie`` and the traffic split of ``canary`` Ingresses, as ingress-nginx's Lua balancer
(``balancer.lua``, ``balancer/ewma.lua``, ``chash.lua``, ``sticky*.lua``) does them.

Pure: the hash ring, the EWMA scores, the hash-key template, cookies and the canary decision.
The data plane (``dataplane/upstream.py``, ``UpstreamPool.choose``) keeps their state per
configuration and calls them only for routes whose ``RouteOptions.balance`` is set.

- The hash ring is lua-resty-balancer's ``resty.chash`` (160 points per endpoint, CRC32 chained
  from ``CRC32("ip:port")``, a key served by the last point at or below ``CRC32(key)``): a key
  maps to the endpoint ingress-nginx would choose for the same endpoints, and adding an endpoint
  moves about 1/N of the keys.
- EWMA is peak EWMA with a 10 s decay, two random choices among the endpoints not yet tried.
- The sticky cookie is ``KEY|BACKEND_KEY`` as ingress-nginx writes it: ``balanced`` mode hashes a
  random KEY on the ring, ``persistent`` mode's KEY is ``md5(upstream name + "ip:port")``;
  BACKEND_KEY (``md5(md5(name) + name)``) says which backend (main or canary) set it.
"""

from __future__ import annotations

import bisect
import ipaddress
import hashlib
import math
import os
import re
import time
import zlib
from dataclasses import dataclass

import re2

DECAY_TIME = 10.0  # seconds (ewma.lua)
CONSISTENT_POINTS = 160  # points per endpoint (resty.chash)
MAX_UPSTREAM_CHECKS = 20  # sticky_balanced.lua: new keys tried to avoid a failed endpoint
DEFAULT_COOKIE = "INGRESSCOOKIE"
METHODS = ("round_robin", "ewma")


def endpoint_name(endpoint: tuple[str, int]) -> str:
    """The endpoint as ingress-nginx names it: ``ip:port`` (``[ip]:port`` for IPv6)."""
    address, port = endpoint
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# --- consistent hashing ------------------------------------------------------------------------

class HashRing:
    """resty.chash over endpoints (weight 1 each, or ``weights`` for tests)."""

    __slots__ = ("hashes", "owners")

    def __init__(self, endpoints, weights: dict | None = None):
        points = []
        for order, endpoint in enumerate(endpoints):
            name = endpoint if isinstance(endpoint, str) else endpoint_name(endpoint)
            state = zlib.crc32(name.encode()) ^ 0xFFFFFFFF  # chash.c continues the finished CRC
            previous = 0
            for _ in range(CONSISTENT_POINTS * (weights[endpoint] if weights else 1)):
                previous = zlib.crc32(previous.to_bytes(4, "little"), state)
                points.append((previous, order, endpoint))
        points.sort(key=lambda p: (p[0], p[1]))
        self.hashes = [p[0] for p in points]
        self.owners = [p[2] for p in points]

    def find(self, key: bytes):
        index = bisect.bisect_right(self.hashes, zlib.crc32(key)) - 1
        return self.owners[index if index >= 0 else 0]


def hash_subsets(endpoints, size: int) -> dict[str, tuple]:
    """chashsubset.lua: the endpoints in groups of ``size`` (the last one filled up from the
    start), named set1, set2, ...; the ring hashes a key to a group, a random member serves it."""
    endpoints = list(endpoints)
    count = -(-len(endpoints) // size)
    padded = endpoints + endpoints[:count * size - len(endpoints)]
    return {f"set{i + 1}": tuple(padded[i * size:(i + 1) * size]) for i in range(count)}


# --- EWMA ----------------------------------------------------------------------------------------

class EwmaScores:
    """Per endpoint: the decayed latency average and when it was last updated (``now`` is any
    monotonic clock in seconds)."""

    __slots__ = ("table",)

    MAX_ENTRIES = 100_000

    def __init__(self):
        self.table: dict = {}

    def score(self, endpoint, now: float) -> float:
        entry = self.table.get(endpoint)
        if entry is None:
            return 0.0
        ewma, touched = entry
        return ewma * math.exp(-max(now - touched, 0.0) / DECAY_TIME)

    def observe(self, endpoint, rtt: float, now: float) -> None:
        entry = self.table.get(endpoint)
        if entry is None:
            if len(self.table) >= self.MAX_ENTRIES:
                self.table.clear()
            self.table[endpoint] = (rtt, now)
            return
        ewma, touched = entry
        weight = math.exp(-max(now - touched, 0.0) / DECAY_TIME)
        self.table[endpoint] = (ewma * weight + rtt * (1.0 - weight), now)

    def slow_start(self, endpoints, now: float) -> None:
        """Endpoints without a score start at the average of the others' (ewma.lua's sync)."""
        known = [self.table[e][0] for e in endpoints if e in self.table]
        if known and len(known) < len(endpoints):
            average = sum(known) / len(known)
            for endpoint in endpoints:
                if endpoint not in self.table:
                    self.table[endpoint] = (average, now)


def pick_ewma(endpoints, tried, scores: EwmaScores, now: float, rand):
    """Two random choices among the endpoints not tried yet (all of them when every one was): the
    lower score wins."""
    if len(endpoints) == 1:
        return endpoints[0]
    candidates = [e for e in endpoints if e not in tried] if tried else endpoints
    if not candidates:
        candidates = endpoints
    count = len(candidates)
    if count == 1:
        return candidates[0]
    random = rand.random
    i = int(random() * count)
    j = int(random() * (count - 1))
    first, second = candidates[i], candidates[j + 1 if j >= i else j]  # two distinct, uniformly
    return second if scores.score(second, now) < scores.score(first, now) else first


class EwmaFeedback:
    """A finished exchange's latency (connect + response, as ewma.lua's after_balance) into the
    scores of the endpoint that served it: the ``Route.activity`` of routes balanced by EWMA (the
    recorder calls it for every finished exchange of the route)."""

    __slots__ = ()

    def seen(self, exchange, now: float) -> None:
        scores = exchange.ewma
        address = exchange.upstream_addr
        if scores is not None and address is not None and exchange.upstream_start:
            scores.observe(address, now - exchange.upstream_start, now)


EWMA_FEEDBACK = EwmaFeedback()


def feedback(options):
    """The ``Route.activity`` for a route with these options: EWMA_FEEDBACK or None."""
    balance = options.balance
    return EWMA_FEEDBACK if balance is not None and balance.uses_ewma else None


# --- upstream-hash-by: nginx variables -------------------------------------------------------------

_HASH_BY_RE = re.compile(r"^[A-Za-z0-9\-_${}]*$")  # ingress-nginx's validation
_HASH_VARIABLE_RE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
HASH_VARIABLES = ("request_uri", "uri", "args", "query_string", "is_args", "host", "scheme", "remote_addr",
                  "binary_remote_addr", "request_method", "server_name")
HASH_PREFIXES = ("http_", "cookie_", "arg_")


@dataclass(frozen=True, slots=True)
class HashKey:
    """An ``upstream-hash-by`` value: literal text and nginx variables, rendered per request."""

    parts: tuple[str, ...]  # alternating literal, variable name, literal, ...

    @property
    def template(self) -> str:
        return "".join(part if i % 2 == 0 else "${" + part + "}" for i, part in enumerate(self.parts))

    def render(self, exchange) -> bytes:
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part.encode())
            else:
                out.append(variable(exchange, part))
        return b"".join(out)


def parse_hash_by(value: str) -> HashKey:
    value = value.strip()
    if not value or not _HASH_BY_RE.match(value):
        raise ValueError("expected nginx variables and text such as $request_uri or ${remote_addr}-x")
    parts: list[str] = []
    last = 0
    for match in _HASH_VARIABLE_RE.finditer(value):
        name = (match.group(1) or match.group(2)).lower()
        if name not in HASH_VARIABLES and not (name.startswith(HASH_PREFIXES) and len(name) > 5):
            raise ValueError(f"unknown variable ${name}; supported: "
                             + ", ".join("$" + v for v in HASH_VARIABLES) + ", $http_*, $cookie_*, $arg_*")
        parts += [value[last:match.start()], name]
        last = match.end()
    parts.append(value[last:])
    return HashKey(tuple(parts))


def header(headers, lower_name: bytes) -> bytes | None:
    """nginx's ``$http_NAME``: the first header whose name, lower-cased with ``-`` as ``_``, matches."""
    for name, value in headers:
        if name.lower().replace(b"-", b"_") == lower_name:
            return value
    return None


def cookie(headers, name: bytes) -> bytes | None:
    """The first value of cookie ``name`` in the request's Cookie headers."""
    for field, value in headers:
        if len(field) == 6 and field.lower() == b"cookie":
            for item in value.split(b";"):
                key, eq, text = item.strip().partition(b"=")
                if eq and key == name:
                    return text
    return None


def _argument(url: bytes, name: bytes) -> bytes:
    _, _, query = url.partition(b"?")
    for item in query.split(b"&"):
        key, _, value = item.partition(b"=")
        if key == name:
            return value
    return b""


def variable(exchange, name: str) -> bytes:
    """One nginx variable of a request (an absent header, cookie or argument is empty)."""
    url = exchange.url
    if name == "request_uri":
        return url
    if name == "uri":
        return url.partition(b"?")[0]
    if name in ("args", "query_string"):
        return url.partition(b"?")[2]
    if name == "is_args":
        return b"?" if b"?" in url else b""
    if name in ("host", "server_name"):
        return exchange.host.encode()
    if name == "remote_addr":
        return exchange.conn.client_ip.encode()
    if name == "binary_remote_addr":

        try:
            return ipaddress.ip_address(exchange.conn.client_ip).packed
        except ValueError:
            return b""
    if name == "scheme":
        return b"https" if getattr(getattr(exchange.conn, "listener", None), "tls", False) else b"http"
    if name == "request_method":
        return exchange.method
    if name.startswith("http_"):
        return header(exchange.headers, name[5:].encode()) or b""
    if name.startswith("cookie_"):
        return cookie(exchange.headers, name[7:].encode()) or b""
    if name.startswith("arg_"):
        return _argument(url, name[4:].encode())
    return b""


# --- affinity: cookie -------------------------------------------------------------------------------

_COOKIE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_COOKIE_PATH_RE = re.compile(r"^/[A-Za-z0-9/._~!$&'()*+=:@%\-]*$")
_DOMAIN_RE = re.compile(r"^\.?[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?$")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse_cookie_name(value: str) -> str:
    value = value.strip()
    if not _COOKIE_NAME_RE.match(value):
        raise ValueError("expected a cookie name (letters, digits, '_', '-', '.')")
    return value


def parse_cookie_path(value: str) -> str:
    value = value.strip()
    if not _COOKIE_PATH_RE.match(value):
        raise ValueError("expected a path starting with / without spaces, ';' or ','")
    return value


def parse_cookie_domain(value: str) -> str:
    value = value.strip()
    if not _DOMAIN_RE.match(value):
        raise ValueError("expected a domain name")
    return value


def parse_cookie_seconds(value: str) -> int:
    """session-cookie-expires / -max-age: a whole number of seconds (ingress-nginx: ``^0|-?[1-9]\\d*$``)."""
    value = value.strip()
    if not re.match(r"^(0|-?[1-9]\d*)$", value):
        raise ValueError("expected a whole number of seconds")
    return int(value)


def parse_samesite(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("none", "lax", "strict"):
        raise ValueError('expected "None", "Lax" or "Strict"')
    return lowered.capitalize()


def parse_affinity_mode(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("balanced", "persistent"):
        raise ValueError('expected "balanced" or "persistent"')
    return lowered


def parse_canary_behavior(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("sticky", "legacy"):
        raise ValueError('expected "sticky" or "legacy"')
    return lowered


def cookie_time(epoch: float) -> str:
    """nginx's cookie date (``ngx.cookie_time``): ``Thu, 18-Nov-10 11:27:35 GMT``."""
    t = time.gmtime(int(epoch))
    year = t.tm_year if t.tm_year > 2037 else t.tm_year % 100
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{year:02d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def same_site_none_compatible(user_agent: bytes | None) -> bool:
    """Whether a browser takes ``SameSite=None`` (ingress-nginx's util/same_site.lua)."""
    if not user_agent:
        return True
    ua = user_agent
    if b"Chrome/4" in ua or b"Chrome/5" in ua or b"Chrome/6" in ua:
        return False
    if b"CPU iPhone OS 12" in ua or b"iPad; CPU OS 12" in ua:
        return False
    if b"Macintosh" in ua and b"Intel Mac OS X 10_14" in ua and b"Safari" in ua and b"Chrome" not in ua:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CookieAffinity:
    """``affinity: cookie`` and its ``session-cookie-*`` / ``affinity-*`` annotations."""

    name: str = DEFAULT_COOKIE
    mode: str = "balanced"  # or "persistent"
    canary_behavior: str = "sticky"  # or "legacy"
    path: str | None = None  # None: the Ingress path that matched
    domain: str | None = None
    expires: int | None = None
    max_age: int | None = None
    secure: bool = False  # besides every HTTPS request
    samesite: str | None = None
    conditional_samesite_none: bool = False
    change_on_failure: bool = False

    def set_cookie(self, value: str, location_path: str, https: bool, user_agent: bytes | None,
                   now: float) -> bytes:
        """The Set-Cookie line, attributes in lua-resty-cookie's order."""
        parts = [f"{self.name}={value}"]
        if self.expires is not None:
            parts.append("Expires=" + cookie_time(now + self.expires))
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
        if self.domain:
            parts.append("Domain=" + self.domain)
        parts.append("Path=" + (self.path or location_path or "/"))
        if self.secure or https:
            parts.append("Secure")
        parts.append("HttpOnly")
        samesite = self.samesite
        if samesite == "None" and self.conditional_samesite_none and not same_site_none_compatible(user_agent):
            samesite = None
        if samesite:
            parts.append("SameSite=" + samesite)
        return ("Set-Cookie: " + "; ".join(parts) + "\r\n").encode("latin-1")

    def describe(self) -> str:
        return f"affinity=cookie:{self.name}:{self.mode}"


def backend_key(name: str) -> str:
    """sticky.lua's ``ngx.md5(ngx.md5(backend.name) .. backend.name)``."""
    return hashlib.md5((hashlib.md5(name.encode()).hexdigest() + name).encode()).hexdigest()


def split_sticky(raw: bytes | None) -> tuple[str | None, str | None]:
    """(upstream key, backend key) of a sticky cookie ``KEY|BACKEND_KEY``."""
    if not raw:
        return None, None
    text = raw.decode("latin-1")
    key, bar, backend = text.partition("|")
    return (key or None), (backend if bar else None)


class StickyBackend:
    """One backend's sticky endpoints: a hash ring of random keys (``balanced``) or a map of
    ``md5(name + "ip:port")`` keys (``persistent``)."""

    __slots__ = ("mode", "key", "ring", "keys", "endpoints")

    def __init__(self, name: str, endpoints, mode: str):
        self.mode = mode
        self.key = backend_key(name)
        self.endpoints = tuple(endpoints)
        self.ring = HashRing(endpoints) if mode == "balanced" else None
        self.keys = ({hashlib.md5((name + endpoint_name(e)).encode()).hexdigest(): e for e in endpoints}
                     if mode != "balanced" else None)

    def find(self, key: str):
        if self.ring is not None:
            return self.ring.find(key.encode("latin-1"))
        return self.keys.get(key)

    def pick_new(self, tried, rand, now: float):
        """(endpoint, key) avoiding the endpoints already tried when possible."""
        if self.ring is not None:
            pid = os.getpid()
            for i in range(1, MAX_UPSTREAM_CHECKS + 1):
                key = f"{now + i:.3f}.{pid}.{rand.randint(1, 999999)}"
                endpoint = self.ring.find(key.encode())
                if not tried or endpoint not in tried:
                    return endpoint, key
            return endpoint, key
        choices = [(e, k) for k, e in self.keys.items() if not tried or e not in tried] or list(
            (e, k) for k, e in self.keys.items())
        return rand.choice(choices)


# --- canary --------------------------------------------------------------------------------------

_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_PATTERN_OPTIONS = re2.Options()
_PATTERN_OPTIONS.log_errors = False
_PATTERN_OPTIONS.max_mem = 1 << 20


def parse_header_name(value: str) -> str:
    value = value.strip()
    if not _HEADER_NAME_RE.match(value):
        raise ValueError("expected a header name")
    return value


def parse_plain_value(value: str) -> str:
    if not value or any(ord(c) < 0x20 or ord(c) > 0x7e for c in value):
        raise ValueError("expected printable text")
    return value


def parse_pattern(value: str):
    """canary-by-header-pattern on RE2 (linear time; ingress-nginx runs PCRE)."""
    try:
        return re2.compile(value, _PATTERN_OPTIONS)
    except re2.error as error:
        text = error.args[0] if error.args else str(error)
        raise ValueError(f"not a regex RE2 can run "
                         f"({text.decode(errors='replace') if isinstance(text, bytes) else text})") from None


def parse_weight(value: str) -> int:
    value = value.strip()
    if not re.match(r"^-?\d+$", value):
        raise ValueError("expected a whole number")
    return int(value)


@dataclass(frozen=True, slots=True, eq=False)
class CanaryPolicy:
    """The ``canary-*`` annotations of a canary Ingress: ingress-nginx's precedence is header,
    then cookie, then weight."""

    weight: int = 0
    weight_total: int = 100
    header: bytes | None = None  # lower-case, '-' as '_' (nginx's $http_ name)
    header_value: bytes | None = None
    header_pattern: object = None  # an RE2 regex, searched
    cookie: bytes | None = None
    sticky: bool = True  # affinity-canary-behavior: sticky (the main route's affinity applies here too) or legacy

    def decide(self, headers, rand) -> bool:
        """Whether a request (without affinity to either side) goes to the canary."""
        if self.header is not None:
            value = header(headers, self.header)
            if value is not None:
                if self.header_value:
                    if value == self.header_value:
                        return True
                elif self.header_pattern is not None:
                    try:
                        if self.header_pattern.search(value.decode("latin-1")) is not None:
                            return True
                    except UnicodeEncodeError:
                        pass
                elif value == b"always":
                    return True
                elif value == b"never":
                    return False
        if self.cookie is not None:
            value = cookie(headers, self.cookie)
            if value == b"always":
                return True
            if value == b"never":
                return False
        total = self.weight_total if self.weight_total > 100 else 100
        return self.weight > 0 and rand.randint(1, total) <= self.weight

    def describe(self) -> str:
        parts = []
        if self.header is not None:
            parts.append("header")
        if self.cookie is not None:
            parts.append("cookie")
        parts.append(f"weight {self.weight}/{max(self.weight_total, 100)}")
        return "+".join(parts)


# --- a route's balancing ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, eq=False)
class Balance:
    """How a route chooses its endpoint when not plain round robin (``RouteOptions.balance``).

    ingress-nginx's precedence: ``affinity`` wins over ``hash_by``, which wins over ``method``."""

    method: str = "round_robin"  # load-balance: round_robin or ewma
    hash_by: HashKey | None = None
    affinity: CookieAffinity | None = None
    canary: Canary | None = None  # set on a main route that a canary Ingress splits
    subset: int = 0  # upstream-hash-by-subset-size when upstream-hash-by-subset is true, else 0

    @property
    def uses_ewma(self) -> bool:
        return (self.method == "ewma" and self.hash_by is None and self.affinity is None) or (
            self.canary is not None and self.canary.balance.uses_ewma)

    def describe(self) -> str:
        if self.affinity is not None:
            text = self.affinity.describe()
        elif self.hash_by is not None:
            text = "hash=" + self.hash_by.template + (f"(subsets of {self.subset})" if self.subset else "")
        else:
            text = "balance=" + self.method
        if self.canary is not None:
            text += f",canary={self.canary.backend.name}({self.canary.policy.describe()})"
        return text


@dataclass(frozen=True, slots=True, eq=False)
class Canary:
    """The canary side of a split route: its backend, its policy and its own balancing."""

    backend: object  # routing.Backend
    policy: CanaryPolicy
    balance: Balance
    ingress: str = ""  # NAMESPACE/NAME of the canary Ingress


def make_balance(method: str, hash_by: HashKey | None, affinity: CookieAffinity | None,
                 subset: int = 0) -> Balance | None:
    """The route's Balance, or None for round robin (the data plane's one-check fast path)."""
    if method == "round_robin" and hash_by is None and affinity is None:
        return None
    return Balance(method, hash_by, affinity, subset=subset if hash_by is not None else 0)
