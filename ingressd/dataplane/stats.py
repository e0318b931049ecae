"""Per-request counters, histograms and access log lines, kept cheap for the request path.

prometheus_client's labelled histograms take a lock and a label lookup per observation; here one
``RequestStats`` object per (route, method, status) holds plain bucket arrays that
``Recorder.record`` bumps, and ``ingressd.metrics`` turns them into samples only when Prometheus
scrapes.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from time import monotonic
from typing import TYPE_CHECKING

from ..routing import UNDEFINED_HOST
from .logformat import LogFormat, compile_format

if TYPE_CHECKING:
    from .exchange import Exchange

MAX_UNDEFINED_HOSTS = 1000  # distinct host labels kept with --metrics-per-undefined-host

# ingress-nginx's buckets (see ../shared/reference/metrics.md).
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LENGTH_BUCKETS = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
LIFETIME_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs as Prometheus exposes them, +Inf last."""
        total, result = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            total += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return result


class RequestStats:
    """Everything counted for one (route, method, status)."""

    __slots__ = ("count", "duration", "response", "header", "connect", "request_size", "response_size")

    def __init__(self) -> None:
        self.count = 0
        self.duration = Histogram(TIME_BUCKETS)  # whole request, first byte in to last byte out
        self.response = Histogram(TIME_BUCKETS)  # upstream: request sent to response complete
        self.header = Histogram(TIME_BUCKETS)  # upstream: request sent to response head
        self.connect = Histogram(TIME_BUCKETS)  # upstream: connecting (0 for a pooled connection)
        self.request_size = Histogram(LENGTH_BUCKETS)
        self.response_size = Histogram(LENGTH_BUCKETS)

    # One call per request instead of one per histogram: these run for every request.

    def observe(self, duration: float, request_size: int, response_size: int) -> None:
        self.count += 1
        h = self.duration
        h.counts[bisect_left(TIME_BUCKETS, duration)] += 1
        h.sum += duration
        h = self.request_size
        h.counts[bisect_left(LENGTH_BUCKETS, request_size)] += 1
        h.sum += request_size
        h = self.response_size
        h.counts[bisect_left(LENGTH_BUCKETS, response_size)] += 1
        h.sum += response_size

    def observe_upstream(self, connect: float, header: float, response: float) -> None:
        h = self.connect
        h.counts[bisect_left(TIME_BUCKETS, connect)] += 1
        h.sum += connect
        h = self.header
        h.counts[bisect_left(TIME_BUCKETS, header)] += 1
        h.sum += header
        h = self.response
        h.counts[bisect_left(TIME_BUCKETS, response)] += 1
        h.sum += response


class AccessLog:
    """Buffered access log lines on stdout, flushed every tick in whole-line writes.

    Writes stay under PIPE_BUF so that lines from several worker processes never interleave.
    """

    CHUNK = 4000

    def __init__(self, fmt: str = "text", fd: int = 1):
        self.json = fmt == "json"
        self.fd = fd
        self.lines: list[str] = []
        self.size = 0
        self._second = -1
        self._stamp = ""

    def time_local(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp

    def write(self, fields: dict) -> None:
        self.write_line(json.dumps(fields, separators=(",", ":")) if self.json else self.text(fields))

    @staticmethod
    def text(fields: dict) -> str:
        """ingress-nginx's ``upstream`` log format (plus namespace, Ingress and Service), from the
        fields of ``Recorder.log_fields``; ``Recorder.log_exchange`` writes the same line directly."""
        f = fields
        seconds = (lambda v: v if isinstance(v, str) else f"{v:.3f}")  # nginx's milliseconds: 0.000
        return (f'{f["remote_addr"]} - - [{f["time_local"]}] "{f["request"]}" {f["status"]} '
                f'{f["body_bytes_sent"]} "{f["http_referer"]}" "{f["http_user_agent"]}" '
                f'{f["request_length"]} {seconds(f["request_time"])} [{f["proxy_upstream_name"]}] '
                f'[{f.get("proxy_alternative_upstream_name", "")}] '
                f'{f["upstream_addr"]} {f["upstream_response_length"]} {seconds(f["upstream_response_time"])} '
                f'{f["upstream_status"]} {f["req_id"]} {f["namespace"]} {f["ingress"]} {f["service"]}')

    def write_line(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size > 64 * 1024:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        lines, self.lines, self.size = self.lines, [], 0
        chunk: list[str] = []
        length = 0
        try:
            for line in lines:
                if length + len(line) + 1 > self.CHUNK and chunk:
                    os.write(self.fd, ("\n".join(chunk) + "\n").encode("utf-8", "backslashreplace"))
                    chunk, length = [], 0
                chunk.append(line)
                length += len(line) + 1
            if chunk:
                os.write(self.fd, ("\n".join(chunk) + "\n").encode("utf-8", "backslashreplace"))
        except (BlockingIOError, BrokenPipeError, OSError):
            pass  # a stuck or closed stdout must never stop serving


def _merge_histogram(into: Histogram, other: Histogram) -> None:
    into.counts = [a + b for a, b in zip(into.counts, other.counts)]
    into.sum += other.sum


def merge_request_stats(into: RequestStats, other: RequestStats) -> None:
    into.count += other.count
    for name in ("duration", "response", "header", "connect", "request_size", "response_size"):
        _merge_histogram(getattr(into, name), getattr(other, name))


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Counters:
    """One data plane's counters at one moment: picklable, and added up across worker processes."""

    def __init__(self) -> None:
        self.stats: dict[tuple, RequestStats] = {}
        self.reading = self.writing = self.waiting = 0
        self.accepted = self.upgraded = self.idle_upstream = self.upstream_new = self.upstream_reused = 0
        self.refused = 0  # connections closed at once over --max-worker-connections
        self.h2_goaways: dict[str, int] = {}  # HTTP/2 connections ended by ingressd, by GOAWAY code
        self.upgraded_lifetimes = Histogram(LIFETIME_BUCKETS)
        self.rss = 0
        self.cpu = 0.0

    @property
    def active(self) -> int:
        return self.reading + self.writing + self.waiting

    def add(self, other: Counters) -> Counters:
        for key, stats in other.stats.items():
            mine = self.stats.get(key)
            if mine is None:
                mine = self.stats[key] = RequestStats()
            merge_request_stats(mine, stats)
        for name in ("reading", "writing", "waiting", "accepted", "upgraded", "idle_upstream", "upstream_new",
                     "upstream_reused", "rss", "cpu", "refused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for code, count in getattr(other, "h2_goaways", {}).items():
            self.h2_goaways[code] = self.h2_goaways.get(code, 0) + count
        _merge_histogram(self.upgraded_lifetimes, other.upgraded_lifetimes)
        return self


class Recorder:
    """Counts finished exchanges and closed tunnels, and writes their access log lines."""

    def __init__(self, access_log: AccessLog | None = None, per_undefined_host: bool = False,
                 metrics: bool = True):
        self.access_log = access_log
        self.metrics = metrics  # False: nothing can read the counts (ingressd chp without --metrics-port)
        self.per_undefined_host = per_undefined_host
        self.stats: dict[tuple, RequestStats] = {}  # by (route labels, method, status)
        self.upgraded = 0  # open tunnels
        self.upgraded_lifetimes = Histogram(LIFETIME_BUCKETS)
        self._undefined_labels: dict[tuple, tuple] = {}
        self.line = None  # the ConfigMap's log-format-upstream, compiled (None: --log-format's lines)
        self.h2_goaways: dict[str, int] = {}  # HTTP/2 connections ended by ingressd, by GOAWAY error code

    def configure(self, log_format: LogFormat | None) -> None:
        """A configuration's log-format-upstream (and escaping), compiled once per distinct format."""
        self.line = compile_format(log_format) if log_format is not None else None

    def h2_goaway(self, code: str) -> None:
        self.h2_goaways[code] = self.h2_goaways.get(code, 0) + 1

    def record(self, exchange: Exchange) -> None:
        """Count a finished exchange (and log it): the only per-request bookkeeping."""
        route = exchange.route
        if route is None:
            return
        now = monotonic()
        if self.metrics:
            labels = route.labels
            if self.per_undefined_host and labels[3] == UNDEFINED_HOST:
                labels = self.undefined_host_labels(labels, exchange.host)
            balanced = exchange.balanced
            if balanced is not None and balanced[0] is not route.backend:  # served by a canary: its label
                labels = (*labels[:5], balanced[0].name)
            key = (labels, exchange.method, exchange.status)
            stats = self.stats.get(key)
            if stats is None:
                stats = self.stats[key] = RequestStats()
            stats.observe(now - exchange.started, exchange.head_size + exchange.received, exchange.sent)
            proxied = exchange.upstream_header
            if proxied:
                start = exchange.upstream_start
                stats.observe_upstream(exchange.upstream_connected - start, proxied - start, now - start)
        activity = route.activity
        if activity is not None:  # a JupyterHub proxy-API route (ingressd.chp): its last_activity
            activity.seen(exchange, now)
        if self.access_log is not None:
            options = route.options
            if options.access_log and (not options.skip_log_urls or exchange.url.decode("latin-1")
                                       not in options.skip_log_urls):
                self.log_exchange(exchange, now)

    def undefined_host_labels(self, labels: tuple, host: str) -> tuple:
        """Labels naming an undefined host (--metrics-per-undefined-host), bounded in number."""
        cached = self._undefined_labels.get((labels, host))
        if cached is None:
            if len(self._undefined_labels) >= MAX_UNDEFINED_HOSTS:
                return labels  # past the bound, further hosts share the collapsed label
            cached = self._undefined_labels[(labels, host)] = (*labels[:3], host or UNDEFINED_HOST, labels[4])
        return cached

    def log_exchange(self, exchange: Exchange, now: float) -> None:
        line = self.line
        access_log = self.access_log
        if line is not None:
            if exchange.upgrade and exchange.status == 101:
                return  # logged when the tunnel closes, as nginx does
            access_log.write_line(line(exchange, now, access_log))
            return
        if access_log.json:
            access_log.write(self.log_fields(exchange, now))
            return
        # The text line straight from the exchange (AccessLog.text of log_fields, without the dict).
        route = exchange.route
        backend = route.backend
        balanced = exchange.balanced
        address = exchange.upstream_addr
        if exchange.upstream_header:
            upstream = (f'{address[0]}:{address[1]} {exchange.upstream_received} '
                        f'{now - exchange.upstream_start:.3f}' if address else
                        f'- {exchange.upstream_received} {now - exchange.upstream_start:.3f}')
        else:
            upstream = f'{address[0]}:{address[1]} - -' if address else "- - -"
        access_log.write_line(
            f'{exchange.conn.client_ip} - - [{access_log.time_local()}] '
            f'"{exchange.method.decode("latin-1")} {exchange.url.decode("latin-1")} '
            f'HTTP/{"2.0" if exchange.http2 else "1.0" if exchange.http10 else "1.1"}" {exchange.status} '
            f'{exchange.sent} "{exchange.referer.decode("latin-1") or "-"}" '
            f'"{exchange.user_agent.decode("latin-1") or "-"}" {exchange.head_size + exchange.received} '
            f'{now - exchange.started:.3f} '
            f'[{backend.name if backend is not None else "upstream-default-backend"}] '
            f'[{"" if balanced is None or balanced[0] is backend else balanced[0].name}] {upstream} '
            f'{exchange.upstream_status or "-"} {exchange.request_id.decode("latin-1")} '
            f'{route.namespace or "-"} {route.ingress or "-"} {route.service or "-"}')

    def log_fields(self, exchange: Exchange, now: float) -> dict:
        """One exchange's access log fields, named as nginx's variables (the JSON format's keys)."""
        route = exchange.route
        proxied = bool(exchange.upstream_header)
        address = exchange.upstream_addr
        return {
            "remote_addr": exchange.conn.client_ip,
            "time_local": self.access_log.time_local(),
            "request": "%s %s HTTP/%s" % (exchange.method.decode("latin-1"), exchange.url.decode("latin-1"),
                                           "2.0" if exchange.http2 else "1.0" if exchange.http10 else "1.1"),
            "status": exchange.status,
            "body_bytes_sent": exchange.sent,
            "http_referer": exchange.referer.decode("latin-1") or "-",
            "http_user_agent": exchange.user_agent.decode("latin-1") or "-",
            "request_length": exchange.head_size + exchange.received,
            "request_time": round(now - exchange.started, 3),
            "proxy_upstream_name": route.backend.name if route.backend is not None else "upstream-default-backend",
            "upstream_addr": f"{address[0]}:{address[1]}" if address else "-",
            "upstream_response_length": exchange.upstream_received if proxied else "-",
            "upstream_response_time": round(now - exchange.upstream_start, 3) if proxied else "-",
            "upstream_status": exchange.upstream_status or "-",
            "req_id": exchange.request_id.decode("latin-1"),
            "namespace": route.namespace or "-",
            "ingress": route.ingress or "-",
            "service": route.service or "-",
            **({} if exchange.balanced is None or exchange.balanced[0] is route.backend else
               {"proxy_alternative_upstream_name": exchange.balanced[0].name}),  # served by a canary
        }

    def tunnel_opened(self) -> None:
        self.upgraded += 1

    def tunnel_closed(self, client_ip: str, opened: float, sent: int, received: int, exchange=None) -> None:
        self.upgraded -= 1
        now = monotonic()
        lifetime = now - opened
        self.upgraded_lifetimes.observe(lifetime)
        if self.access_log is not None and self.line is not None:
            # log-format-upstream: one line for the websocket when it ends (nginx's), its bytes included
            route = exchange.route if exchange is not None else None
            if route is not None and route.options.access_log:
                exchange.sent += sent
                exchange.received += received
                self.access_log.write_line(self.line(exchange, now, self.access_log))
        elif self.access_log is not None:
            self.access_log.write({
                "remote_addr": client_ip, "time_local": self.access_log.time_local(),
                "request": "websocket closed", "status": 101, "body_bytes_sent": sent, "http_referer": "-",
                "http_user_agent": "-", "request_length": received, "request_time": round(lifetime, 3),
                "proxy_upstream_name": "-", "upstream_addr": "-", "upstream_response_length": "-",
                "upstream_response_time": "-", "upstream_status": "-", "req_id": "-", "namespace": "-",
                "ingress": "-", "service": "-",
            })

    def flush(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
