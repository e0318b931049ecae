#!/usr/bin/env python3
"""Side-by-side benchmark: ingressd against nginx (and HAProxy, Envoy, Caddy, configurable-http-proxy
when installed), one worker each, on one machine, plus ingressd's scale checks.

    python3 bench/bench.py [--quick] [--proxies ingressd,nginx,...] [--keep]

Use ``bash bench/run.sh`` to install what it needs first. Layout (2 cores): every proxy is pinned to
core 0 with one worker/thread; the upstream (nginx, ``return 200 "hello world\\n"`` and a sparse
file), the upload sink, the websocket echo server and every load generator run on core 1.
Everything listens on 127.0.0.1; every process started here is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import pstats
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
HOST = "bench.localhost"
PROXY_CORE, LOAD_CORE = "0", "1"
NPM_PREFIX = Path(os.environ.get("INGRESSD_BENCH_CACHE", Path.home() / ".cache" / "ingressd-bench")) / "npm"

sys.path.insert(0, str(REPO))


# --- output ------------------------------------------------------------------------------------------

def say(*args) -> None:
    print(*args, flush=True)


def section(title: str) -> None:
    say("")
    say(f"== {title} " + "=" * max(0, 96 - len(title)))


def table(rows: list[list[str]], header: list[str]) -> None:
    rows = [header] + rows
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        say("  " + "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            say("  " + "  ".join("-" * w for w in widths))


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


# --- processes -------------------------------------------------------------------------------------

STARTED: list["Proc"] = []


class Proc:
    """A child process we started; stopped by its own PID (SIGTERM, then SIGKILL after a grace)."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, core: str | None, env: dict | None = None,
                 stdout=None, cwd: Path | None = None):
        self.name = name
        self.log = workdir / f"{name}.log"
        if core is not None and PIN:
            cmd = ["taskset", "-c", core] + cmd
        self.cmd = cmd
        err = open(self.log, "ab")
        out = err if stdout is None else stdout
        self.popen = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                      env=env or child_env(), cwd=cwd or workdir, start_new_session=True)
        err.close()
        self.pid = self.popen.pid
        STARTED.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_tree(self, sig) -> None:
        for pid in descendants(self.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, sig=signal.SIGTERM, grace: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.signal_tree(signal.SIGCONT)  # in case it was paused
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"  note: {self.name} (pid {self.pid}) did not stop within {grace:g}s of {sig.name}; killing it")
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        if self in STARTED:
            STARTED.remove(self)
        return self.popen.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all() -> None:
    for proc in reversed(list(STARTED)):
        try:
            proc.stop(grace=8.0)
        except Exception as error:  # keep stopping the others
            say(f"  note: stopping {proc.name} (pid {proc.pid}) failed: {error}")


PYCACHE: Path | None = None  # where the ingressd processes' bytecode is cached (set in main)


def child_env(tree: Path = REPO, **extra) -> dict:
    env = dict(os.environ)
    if PYCACHE is not None:  # compiled once, as `pip install .` does: start-up times without compiling
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy"):
        env.pop(var, None)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: Proc | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {timeout:g}s" + (f" ({proc.name}):\n{proc.tail()}" if proc else ""))


def descendants(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user+system CPU of a process tree (all threads), in seconds."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def cpu_times(core: int | None = None) -> tuple[float, float]:
    """(busy, total) seconds of one core (or all cores) since boot; busy = user+nice+system+irq+softirq (a
    process's system time includes the softirq work charged to it, so busy must too to compare with it)."""
    name = "cpu" if core is None else f"cpu{core}"
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] == name:
                v = [int(x) for x in parts[1:9]]
                busy = v[0] + v[1] + v[2] + v[5] + v[6]
                return busy / CLK_TCK, sum(v) / CLK_TCK
    return 0.0, 0.0


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field_name + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --- load generators ---------------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float = 0.0
    requests: int = 0
    errors: dict = field(default_factory=dict)  # connect/read/write/timeout/non2xx
    latency: dict = field(default_factory=dict)  # "50%" -> ms
    cpu_us: float | None = None  # proxy CPU per request
    other: float | None = None  # share of the proxy core used by anything but the proxy during the run
    raw: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value



def parse_wrk(out: str) -> WrkResult:
    """wrk's summary: requests per second, the request count and the errors it reports."""
    result = WrkResult(raw=out)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result.rps = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    result.requests = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result.errors.update(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result.errors["non2xx"] = int(m.group(1))
    return result

def wrk(url: str, seconds: int, conns: int = 32, headers: tuple[str, ...] = (), script: Path | None = None,
        cpu_pid: int | None = None, host: str = HOST) -> WrkResult:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}"]
    for h in headers:
        cmd += ["-H", h]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if PIN:
        cmd = ["taskset", "-c", LOAD_CORE] + cmd
    cpu0 = cpu_seconds(cpu_pid) if cpu_pid else None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu1 = cpu_seconds(cpu_pid) if cpu_pid else None
    result = parse_wrk(out)
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M):
        result.latency[pct] = _ms(value)
    if cpu_pid and result.requests:
        result.cpu_us = (cpu1 - cpu0) / result.requests * 1e6
    return result


def pace(pace_bin: Path | None, port: int, rate: float, seconds: float, warmup: float, conns: int = 32,
         lua_fallback: Path | None = None) -> dict:
    """Latency at a constant request rate: the C generator when it could be built, else wrk + Lua delay()."""
    if pace_bin is not None:
        cmd = [str(pace_bin), "127.0.0.1", str(port), HOST, "/", f"{rate:.0f}", f"{seconds:g}", str(conns),
               f"{warmup:g}"]
        if PIN:
            cmd = ["taskset", "-c", LOAD_CORE] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 30)
        try:
            data = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            say(f"  note: pace failed: {out.stdout[-300:]} {out.stderr[-300:]}")
            return {"rate": 0.0, "p50": None, "p99": None, "p999": None, "max": None, "errors": 1}
        return {"rate": data["rate"], "p50": data["p50"] / 1000, "p99": data["p99"] / 1000,
                "p999": data["p999"] / 1000, "max": data["max"] / 1000, "errors": data["errors"]}
    # wrk fallback: each connection waits conns/rate between requests (closed loop, an approximation)
    lua_fallback.write_text(f"function delay() return {max(1, round(conns / rate * 1000))} end\n")
    r = wrk(f"http://127.0.0.1:{port}/", max(1, round(seconds)), conns, script=lua_fallback)
    return {"rate": r.rps, "p50": r.latency.get("50"), "p99": r.latency.get("99"), "p999": None, "max": None,
            "errors": r.error_count}


def curl(args: list[str], timeout: float) -> str:
    cmd = ["curl", "-sS", "-k", "--noproxy", "*"] + args
    if PIN:
        cmd = ["taskset", "-c", LOAD_CORE] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout


# --- certificate and manifests -------------------------------------------------------------------------

def make_certificate(workdir: Path) -> tuple[Path, Path, Path]:
    """An ECDSA P-256 self-signed certificate for bench.localhost, *.bench.localhost and 127.0.0.1 (the
    IP makes proxies that pick a certificate by SNI accept wrk, which sends the URL's host as SNI)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(HOST), x509.DNSName("*." + HOST), x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path, pem_path = workdir / "cert.pem", workdir / "key.pem", workdir / "combined.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pem_path.write_bytes(cert_path.read_bytes() + key_path.read_bytes())
    return cert_path, key_path, pem_path


def service_docs(namespace: str, name: str, port: int) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": port}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]},
    ]


def secret_doc(namespace: str, name: str, cert: Path, key: Path) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text()}}


ANNOTATIONS = {"nginx.ingress.kubernetes.io/proxy-body-size": "0",
               "nginx.ingress.kubernetes.io/ssl-redirect": "false"}


def ingress_doc(namespace: str, name: str, host: str, paths: list[tuple[str, str]], secret: str | None) -> dict:
    spec: dict = {"ingressClassName": "ingressd", "rules": [{"host": host, "http": {"paths": [
        {"path": path, "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 80}}}}
        for path, svc in paths]}}]}
    if secret:
        spec["tls"] = [{"hosts": [host], "secretName": secret}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": namespace, "annotations": dict(ANNOTATIONS)}, "spec": spec}


def write_yaml(path: Path, docs: list[dict]) -> None:
    import yaml

    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(yaml.dump_all(docs, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
    os.replace(tmp, path)


def churn_doc(k: int) -> list[dict]:
    return [ingress_doc("bench", "churn", "churn." + HOST, [(f"/v{k}", "upstream")], None)]


def bench_manifests(directory: Path, cert: Path, key: Path, ports: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    docs = [secret_doc("bench", "bench-tls", cert, key)]
    docs += service_docs("bench", "upstream", ports["upstream"])
    docs += service_docs("bench", "sink", ports["sink"])
    docs += service_docs("bench", "wsecho", ports["wsecho"])
    docs.append(ingress_doc("bench", "bench", HOST, [("/", "upstream"), ("/upload", "sink"), ("/ws", "wsecho")],
                            "bench-tls"))
    write_yaml(directory / "bench.yaml", docs)
    write_yaml(directory / "churn.yaml", churn_doc(0))


def scale_manifests(directory: Path, count: int, per_file: int, cert: Path, key: Path, upstream_port: int) -> list[Path]:
    """``count`` Ingresses (each with its Service and EndpointSlice, TLS from one Secret per namespace),
    ``per_file`` to a file, one namespace per file."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for f in range((count + per_file - 1) // per_file):
        namespace = f"ns-{f:03d}"
        docs = [secret_doc(namespace, "tls", cert, key)]
        for i in range(f * per_file, min(count, (f + 1) * per_file)):
            docs += service_docs(namespace, f"svc-{i}", upstream_port)
            docs.append(ingress_doc(namespace, f"ing-{i}", f"h{i}.{HOST}", [("/", f"svc-{i}")], "tls"))
        path = directory / f"{namespace}.yaml"
        write_yaml(path, docs)
        files.append(path)
    return files


# --- proxies -------------------------------------------------------------------------------------------

@dataclass
class Proxy:
    name: str
    label: str
    http_port: int
    https_port: int
    procs: list = field(default_factory=list)
    reference: str = "nginx"  # the variant its ratios are computed against
    streaming: bool = True  # take part in the 1 GB transfers
    note: str = ""
    paused: bool = False

    def __post_init__(self):
        ALL_PROXIES.append(self)

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def rss(self) -> int:
        return sum(rss_kb(p.pid) for p in self.procs)

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        if self in ALL_PROXIES:
            ALL_PROXIES.remove(self)

    def pause(self, paused: bool) -> None:
        if paused != self.paused:
            for p in self.procs:
                if p.alive():
                    p.signal_tree(signal.SIGSTOP if paused else signal.SIGCONT)
            self.paused = paused


ALL_PROXIES: list[Proxy] = []


def idle_cpu(proxy: Proxy, seconds: float) -> float:
    """Share of a core the proxy uses with no traffic, running alone."""
    focus(proxy)
    time.sleep(0.2)
    cpu0, t0 = proxy.cpu(), time.monotonic()
    time.sleep(seconds)
    return (proxy.cpu() - cpu0) / (time.monotonic() - t0)


def focus(*active: Proxy) -> None:
    """Pause (SIGSTOP) every proxy but ``active`` so that nothing else runs on the proxy core; resume
    ``active``. ``focus(*ALL_PROXIES)`` resumes them all."""
    for p in ALL_PROXIES:
        if p not in active:
            p.pause(True)
    for p in active:
        p.pause(False)
    time.sleep(0.05)


def start_upstream(ctx) -> Proc:
    conf = ctx.workdir / "upstream-nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {ctx.workdir}/upstream-nginx.pid;
error_log {ctx.workdir}/upstream-nginx.error.log warn;
worker_rlimit_nofile {FD_LIMIT};
events {{ worker_connections {FD_LIMIT - 100}; multi_accept on; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 120s;
  keepalive_requests 10000000;
  client_body_temp_path {ctx.workdir}/tmp-up-body;
  proxy_temp_path {ctx.workdir}/tmp-up-proxy;
  fastcgi_temp_path {ctx.workdir}/tmp-up-fcgi;
  uwsgi_temp_path {ctx.workdir}/tmp-up-uwsgi;
  scgi_temp_path {ctx.workdir}/tmp-up-scgi;
  server {{
    listen 127.0.0.1:{ctx.ports['upstream']} backlog=4096;
    default_type text/plain;
    location / {{ return 200 "hello world\\n"; }}
    location /files/ {{ alias {ctx.workdir}/files/; }}
  }}
}}
""")
    proc = Proc("upstream-nginx", ["nginx", "-c", str(conf), "-e", str(ctx.workdir / "upstream-nginx.error.log")],
                ctx.workdir, LOAD_CORE)
    wait_port(ctx.ports["upstream"], proc)
    return proc


def nginx_conf(ctx, name: str, http_port: int, https_port: int, access_log: bool) -> Path:
    """nginx as ingress-nginx configures it (its defaults, without the Lua balancer)."""
    up, sink, ws = ctx.ports["upstream"], ctx.ports["sink"], ctx.ports["wsecho"]
    log = ("access_log /dev/stdout upstreaminfo;" if access_log else "access_log off;")
    conf = ctx.workdir / f"{name}.conf"
    proxy_common = """
      proxy_set_header Host $host;
      proxy_set_header ssl-client-verify "";
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Scheme $scheme;
      proxy_set_header X-Scheme $scheme;
      proxy_set_header X-Original-Forwarded-For $http_x_forwarded_for;
      proxy_set_header Proxy "";
      proxy_connect_timeout 5s;
      proxy_send_timeout 60s;
      proxy_read_timeout 60s;
      proxy_buffering off;
      proxy_buffer_size 4k;
      proxy_buffers 4 4k;
      proxy_max_temp_file_size 1024m;
      proxy_request_buffering off;
      proxy_http_version 1.1;
      proxy_cookie_domain off;
      proxy_cookie_path off;
      proxy_redirect off;
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      client_max_body_size 0;
"""
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {ctx.workdir}/{name}.pid;
error_log {ctx.workdir}/{name}.error.log warn;
worker_rlimit_nofile {FD_LIMIT};
events {{ worker_connections {FD_LIMIT * 2}; multi_accept on; use epoll; }}
http {{
  sendfile on;
  aio threads;
  aio_write on;
  tcp_nopush on;
  tcp_nodelay on;
  reset_timedout_connection on;
  keepalive_timeout 75s;
  keepalive_requests 1000;
  client_body_temp_path {ctx.workdir}/tmp-{name}-body;
  proxy_temp_path {ctx.workdir}/tmp-{name}-proxy;
  fastcgi_temp_path {ctx.workdir}/tmp-{name}-fcgi;
  uwsgi_temp_path {ctx.workdir}/tmp-{name}-uwsgi;
  scgi_temp_path {ctx.workdir}/tmp-{name}-scgi;
  client_header_buffer_size 1k;
  client_header_timeout 60s;
  large_client_header_buffers 4 8k;
  client_body_buffer_size 8k;
  client_body_timeout 60s;
  http2_max_concurrent_streams 128;
  types_hash_max_size 2048;
  server_names_hash_max_size 1024;
  server_names_hash_bucket_size 64;
  variables_hash_bucket_size 256;
  variables_hash_max_size 2048;
  underscores_in_headers off;
  ignore_invalid_headers on;
  limit_req_status 503;
  limit_conn_status 503;
  default_type text/html;
  gzip off;
  server_tokens off;
  log_format upstreaminfo '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time [$proxy_upstream_name] [] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $request_id';
  {log}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  map $scheme $hsts {{ https "max-age=31536000; includeSubDomains"; default ""; }}
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384;
  ssl_prefer_server_ciphers on;
  ssl_ecdh_curve auto;
  ssl_session_cache shared:SSL:10m;
  ssl_session_timeout 10m;
  ssl_session_tickets off;
  ssl_buffer_size 4k;
  upstream upstream_balancer {{ server 127.0.0.1:{up}; keepalive 320; keepalive_time 1h; keepalive_timeout 60s; keepalive_requests 10000; }}
  upstream sink_balancer {{ server 127.0.0.1:{sink}; keepalive 320; keepalive_timeout 60s; keepalive_requests 10000; }}
  upstream ws_balancer {{ server 127.0.0.1:{ws}; keepalive 320; }}
  server {{
    server_name {HOST};
    listen 127.0.0.1:{http_port} default_server reuseport backlog=4096;
    listen 127.0.0.1:{https_port} default_server reuseport backlog=4096 ssl;
    ssl_certificate {ctx.cert};
    ssl_certificate_key {ctx.key};
    add_header Strict-Transport-Security $hsts always;
    location /upload {{
      set $proxy_upstream_name "bench-sink-80";
      {proxy_common}
      proxy_pass http://sink_balancer;
    }}
    location /ws {{
      set $proxy_upstream_name "bench-wsecho-80";
      {proxy_common}
      proxy_pass http://ws_balancer;
    }}
    location / {{
      set $proxy_upstream_name "bench-upstream-80";
      {proxy_common}
      proxy_pass http://upstream_balancer;
    }}
  }}
}}
""")
    return conf


def start_nginx(ctx, name: str, access_log: bool) -> Proxy:
    http_port, https_port = free_port(), free_port()
    conf = nginx_conf(ctx, name, http_port, https_port, access_log)
    proc = Proc(name, ["nginx", "-c", str(conf), "-e", str(ctx.workdir / f"{name}.error.log")], ctx.workdir,
                PROXY_CORE, stdout=subprocess.DEVNULL)
    wait_port(http_port, proc)
    wait_port(https_port, proc)
    label = "nginx (access log)" if access_log else "nginx"
    return Proxy(name, label, http_port, https_port, [proc], reference="nginx-log" if access_log else "nginx",
                 streaming=not access_log)


def ingressd_cmd(manifests: Path, http_port: int, https_port: int, metrics_port: int, access_log: bool,
                 default_cert: bool = True) -> list[str]:
    # --default-ssl-certificate: wrk sends the URL's host (127.0.0.1) as SNI; serve it the benchmark's certificate
    return (["serve", "--workers", "1", "--manifests", str(manifests), "--listen", "127.0.0.1",
             "--http-port", str(http_port), "--https-port", str(https_port), "--metrics-port", str(metrics_port)]
            + (["--default-ssl-certificate", "bench/bench-tls"] if default_cert else [])
            + ([] if access_log else ["--no-access-log"]) + EXTRA_INGRESSD_ARGS)


def wait_ready(metrics_port: int, proc: Proc, timeout: float) -> float:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready after {timeout:g}s:\n{proc.tail()}")


def start_ingressd(ctx, name: str, manifests: Path, access_log: bool, profile_out: Path | None = None,
                   ready_timeout: float = 60.0, default_cert: bool = True, tree: Path = REPO,
                   label: str | None = None) -> Proxy:
    http_port, https_port, metrics_port = free_port(), free_port(), free_port()
    args = ingressd_cmd(manifests, http_port, https_port, metrics_port, access_log, default_cert)
    if profile_out is not None:
        cmd = [sys.executable, str(BENCH / "profile_serve.py"), str(profile_out)] + args
    else:
        cmd = [sys.executable, "-m", "ingressd"] + args
    # the access log goes to stdout, which is /dev/null; ingressd's own log (stderr) goes to NAME.log
    proc = Proc(name, cmd, ctx.workdir, PROXY_CORE, stdout=subprocess.DEVNULL, cwd=tree, env=child_env(tree))
    proxy = Proxy(name, label or ("ingressd (access log)" if access_log else "ingressd"), http_port, https_port,
                  [proc], reference="nginx-log" if access_log else "nginx", streaming=not access_log)
    proxy.metrics_port = metrics_port
    proxy.startup = wait_ready(metrics_port, proc, ready_timeout)
    return proxy


def start_haproxy(ctx) -> Proxy:
    http_port, https_port = free_port(), free_port()
    conf = ctx.workdir / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread 1
  maxconn 9000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 60s
  timeout http-keep-alive 75s
  timeout tunnel 1h
  option http-keep-alive
  http-reuse safe
frontend fe
  bind 127.0.0.1:{http_port}
  bind 127.0.0.1:{https_port} ssl crt {ctx.pem} alpn http/1.1
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  use_backend sink if {{ path_beg /upload }}
  default_backend upstream
backend upstream
  server up 127.0.0.1:{ctx.ports['upstream']}
backend sink
  server sink 127.0.0.1:{ctx.ports['sink']}
""")
    proc = Proc("haproxy", ["haproxy", "-db", "-f", str(conf)], ctx.workdir, PROXY_CORE)
    wait_port(http_port, proc)
    wait_port(https_port, proc)
    return Proxy("haproxy", "HAProxy", http_port, https_port, [proc])


def start_envoy(ctx) -> Proxy:
    http_port, https_port = free_port(), free_port()

    def cluster(name, port):
        return {"name": name, "type": "STATIC", "connect_timeout": "5s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}

    def listener(name, port, tls):
        hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                        "HttpConnectionManager",
               "stat_prefix": name, "use_remote_address": True, "codec_type": "AUTO",
               "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                   {"match": {"prefix": "/upload"}, "route": {"cluster": "sink", "timeout": "0s"}},
                   {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s"}}]}]},
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
        chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        if tls:
            chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2",
                                   "tls_maximum_protocol_version": "TLSv1_3"},
                    "alpn_protocols": ["http/1.1"],
                    "tls_certificates": [{"certificate_chain": {"filename": str(ctx.cert)},
                                          "private_key": {"filename": str(ctx.key)}}]}}}
        return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [chain]}

    config = {"static_resources": {
        "listeners": [listener("http", http_port, False), listener("https", https_port, True)],
        "clusters": [cluster("upstream", ctx.ports["upstream"]), cluster("sink", ctx.ports["sink"])]}}
    conf = ctx.workdir / "envoy.yaml"
    conf.write_text(json.dumps(config, indent=1))
    proc = Proc("envoy", [ctx.tools["envoy"], "-c", str(conf), "--concurrency", "1", "--disable-hot-restart",
                          "-l", "error"], ctx.workdir, PROXY_CORE)
    wait_port(http_port, proc, timeout=60)
    wait_port(https_port, proc, timeout=60)
    return Proxy("envoy", "Envoy", http_port, https_port, [proc])


def start_caddy(ctx) -> Proxy:
    http_port, https_port = free_port(), free_port()
    up, sink = ctx.ports["upstream"], ctx.ports["sink"]
    conf = ctx.workdir / "Caddyfile"
    conf.write_text(f"""{{
	admin off
	auto_https off
	storage file_system {ctx.workdir}/caddy-data
}}
http://:{http_port} {{
	bind 127.0.0.1
	reverse_proxy /upload* 127.0.0.1:{sink}
	reverse_proxy 127.0.0.1:{up}
}}
https://:{https_port} {{
	bind 127.0.0.1
	tls {ctx.cert} {ctx.key}
	reverse_proxy /upload* 127.0.0.1:{sink}
	reverse_proxy 127.0.0.1:{up}
}}
""")
    env = child_env(GOMAXPROCS="1", XDG_DATA_HOME=str(ctx.workdir / "caddy-xdg"),
                    XDG_CONFIG_HOME=str(ctx.workdir / "caddy-xdg"), HOME=str(ctx.workdir))
    proc = Proc("caddy", [ctx.tools["caddy"], "run", "--config", str(conf), "--adapter", "caddyfile"], ctx.workdir,
                PROXY_CORE, env=env)
    wait_port(http_port, proc)
    wait_port(https_port, proc)
    return Proxy("caddy", "Caddy", http_port, https_port, [proc])


def start_floor(ctx) -> Proxy:
    """bench/floor_proxy.py: the platform's floor (uvloop + httptools + ssl, no features); see its docstring."""
    http_port, https_port = free_port(), free_port()
    proc = Proc("floor", [sys.executable, str(BENCH / "floor_proxy.py"), str(http_port), str(https_port),
                          str(ctx.ports["upstream"]), str(ctx.cert), str(ctx.key)], ctx.workdir, PROXY_CORE)
    wait_port(http_port, proc)
    wait_port(https_port, proc)
    return Proxy("floor", "python floor", http_port, https_port, [proc], streaming=False,
                 note="minimal uvloop+httptools proxy, no features")


def start_chp(ctx) -> Proxy:
    """configurable-http-proxy serves HTTP or HTTPS per process: two processes, both on core 0."""
    token = "bench-token"
    procs, ports = [], []
    for scheme in ("http", "https"):
        port, api = free_port(), free_port()
        cmd = [ctx.tools["chp"], "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
               "--api-port", str(api), "--default-target", f"http://127.0.0.1:{ctx.ports['upstream']}",
               "--log-level", "error"]
        if scheme == "https":
            cmd += ["--ssl-key", str(ctx.key), "--ssl-cert", str(ctx.cert)]
        proc = Proc(f"chp-{scheme}", cmd, ctx.workdir, PROXY_CORE, env=child_env(CONFIGPROXY_AUTH_TOKEN=token))
        wait_port(port, proc)
        wait_port(api, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{api}/api/routes/upload", method="POST",
                                     data=json.dumps({"target": f"http://127.0.0.1:{ctx.ports['sink']}"}).encode(),
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).close()
        procs.append(proc)
        ports.append(port)
    return Proxy("chp", "configurable-http-proxy", ports[0], ports[1], procs)


# --- checks ----------------------------------------------------------------------------------------------

def sanity(proxy: Proxy) -> str | None:
    """None if the proxy answers 200 "hello world" over HTTP and HTTPS, else what is wrong."""
    for scheme, port in (("http", proxy.http_port), ("https", proxy.https_port)):
        out = curl(["--resolve", f"{HOST}:{port}:127.0.0.1", "-o", "-", "-w", "\n%{http_code}",
                    f"{scheme}://{HOST}:{port}/"], timeout=10)
        body, _, code = out.rpartition("\n")
        if code != "200" or body != "hello world\n" and body != "hello world":
            return f"{scheme}: status {code!r}, body {body[:80]!r}"
    return None


# --- the benchmark ----------------------------------------------------------------------------------------

class Context:
    pass


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def throughput_rounds(ctx, proxies: list[Proxy], rounds: int, seconds: int) -> dict:
    tests = [("HTTP keep-alive", "http", ()), ("HTTPS keep-alive", "https", ()),
             ("HTTPS new connection per request", "https", ("Connection: close",))]
    results = {t[0]: {p.name: [] for p in proxies} for t in tests}
    say(f"warm-up 1 s per proxy and scheme; then {rounds} rounds of {seconds} s per test and proxy, "
        f"alternating proxies (A B C ... A B C ...)")
    for p in proxies:
        for scheme in ("http", "https"):
            focus(p)
            wrk(f"{scheme}://127.0.0.1:{p.http_port if scheme == 'http' else p.https_port}/", 1)
    for r in range(rounds):
        t0 = time.monotonic()
        for test, scheme, headers in tests:
            for p in proxies:
                port = p.http_port if scheme == "http" else p.https_port
                focus(p)
                cpu0 = p.cpu()
                busy0, total0 = cpu_times(int(PROXY_CORE)) if PIN else (0.0, 0.0)
                res = wrk(f"{scheme}://127.0.0.1:{port}/", seconds, headers=headers)
                used = p.cpu() - cpu0
                if res.requests:
                    res.cpu_us = used / res.requests * 1e6
                if PIN:
                    busy1, total1 = cpu_times(int(PROXY_CORE))
                    res.other = max(0.0, (busy1 - busy0) - used) / max(1e-9, total1 - total0)
                results[test][p.name].append(res)
                if res.error_count:
                    ctx.anomalies.append(f"{p.label}, {test}, round {r + 1}: wrk errors {res.errors}")
                if not p.alive():
                    raise RuntimeError(f"{p.label} died during {test}:\n" + "\n".join(x.tail() for x in p.procs))
        say(f"  round {r + 1}/{rounds} done ({time.monotonic() - t0:.0f} s)")
    return results


def print_throughput(ctx, proxies: list[Proxy], results: dict) -> dict:
    medians = {}
    by_name = {p.name: p for p in proxies}
    for test, per_proxy in results.items():
        say("")
        say(f"{test} (wrk -t1 -c32, req/s; median of {len(next(iter(per_proxy.values())))} rounds; "
            f"CPU = proxy user+system time per request; other load = the most CPU other programs took on the "
            f"proxy's core in a round)")
        rows = []
        medians[test] = {name: median([r.rps for r in runs]) for name, runs in per_proxy.items()}
        for name, runs in per_proxy.items():
            p = by_name[name]
            ref = medians[test].get(p.reference)
            m = medians[test][name]
            errors = sum(r.error_count for r in runs)
            rows.append([p.label, fmt_rate(m), " ".join(fmt_rate(r.rps) for r in runs),
                         fmt_ratio(m / ref) if ref and name != p.reference else ("1.00" if name == p.reference else "-"),
                         f"{median([r.cpu_us for r in runs]):.1f}" if median([r.cpu_us for r in runs]) else "-",
                         fmt_ms(median([r.latency.get('50') for r in runs])) + "/"
                         + fmt_ms(median([r.latency.get('99') for r in runs])),
                         str(errors),
                         "-" if median([r.other for r in runs]) is None else f"{100 * max(r.other for r in runs):.0f}%"])
        table(rows, ["proxy", "median", "rounds", "vs nginx", "CPU us/req", "p50/p99 ms", "errors", "other load"])
    return medians


def streaming_rounds(ctx, proxies: list[Proxy], rounds: int) -> dict:
    size = ctx.big_size
    tests = [("download", "http"), ("download", "https"), ("upload", "http"), ("upload", "https")]
    results = {f"{d} {s.upper()}": {p.name: [] for p in proxies} for d, s in tests}
    for r in range(rounds):
        t0 = time.monotonic()
        for direction, scheme in tests:
            key = f"{direction} {scheme.upper()}"
            for p in proxies:
                port = p.http_port if scheme == "http" else p.https_port
                base = f"{scheme}://{HOST}:{port}"
                resolve = ["--resolve", f"{HOST}:{port}:127.0.0.1", "--max-time", str(ctx.transfer_timeout)]
                mbps = None
                focus(p)
                cpu0 = p.cpu()
                if direction == "download":
                    out = curl(resolve + ["-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                                          f"{base}/files/big.bin"], timeout=ctx.transfer_timeout + 10)
                    parts = out.split()
                    ok = len(parts) == 3 and parts[0] == "200" and int(parts[1]) == size
                    if ok:
                        mbps = size / float(parts[2]) / 1e6
                    else:
                        ctx.anomalies.append(f"{p.label}, {key}, round {r + 1}: curl said {out!r} "
                                             f"(expected 200 and {size} bytes)")
                else:
                    out = curl(resolve + ["-T", str(ctx.big_file), "-H", "Expect:", "-o", "-", "-w",
                                          "%{http_code} %{size_upload} %{time_total}", f"{base}/upload"],
                               timeout=ctx.transfer_timeout + 10)
                    m = re.match(r"received (\d+)\n(\d+) (\d+) ([\d.]+)", out)
                    ok = m is not None and m.group(2) == "200" and int(m.group(1)) == size
                    if ok:
                        mbps = size / float(m.group(4)) / 1e6
                    else:
                        ctx.anomalies.append(f"{p.label}, {key}, round {r + 1}: curl said {out!r} "
                                             f"(expected 200 and 'received {size}')")
                cpu = p.cpu() - cpu0
                results[key][p.name].append((mbps, cpu))
                if not p.alive():
                    raise RuntimeError(f"{p.label} died during {key}:\n" + "\n".join(x.tail() for x in p.procs))
        say(f"  round {r + 1}/{rounds} done ({time.monotonic() - t0:.0f} s)")
    return results


def print_streaming(ctx, proxies: list[Proxy], results: dict) -> dict:
    medians = {}
    by_name = {p.name: p for p in proxies}
    size_label = f"{ctx.big_size / 2**30:g} GiB" if ctx.big_size >= 2**30 else f"{ctx.big_size >> 20} MiB"
    for key, per_proxy in results.items():
        say("")
        say(f"{size_label} {key} through the proxy (curl, MB/s; median; CPU = proxy CPU seconds per GB)")
        medians[key] = {name: median([mb for mb, _ in runs]) for name, runs in per_proxy.items()}
        rows = []
        for name, runs in per_proxy.items():
            p = by_name[name]
            m = medians[key][name]
            ref = medians[key].get(p.reference)
            rows.append([p.label, "-" if m is None else f"{m:,.0f}",
                         " ".join("fail" if mb is None else f"{mb:,.0f}" for mb, _ in runs),
                         fmt_ratio(m / ref) if m and ref else "-",
                         f"{median([c for _, c in runs]) / (ctx.big_size / 1e9):.2f}"])
        table(rows, ["proxy", "median MB/s", "rounds", "vs nginx", "CPU s/GB"])
    return medians


def latency_rounds(ctx, proxies: list[Proxy], rate: float, rounds: int, seconds: float, warmup: float) -> dict:
    results = {p.name: [] for p in proxies}
    for r in range(rounds):
        for p in proxies:
            focus(p)
            results[p.name].append(pace(ctx.pace_bin, p.http_port, rate, seconds, warmup,
                                        lua_fallback=ctx.workdir / "delay.lua"))
            if not p.alive():
                raise RuntimeError(f"{p.label} died during the latency test")
    return results


def print_latency(ctx, proxies: list[Proxy], results: dict, rate: float) -> dict:
    medians = {}
    rows = []
    for p in proxies:
        runs = results[p.name]
        m = {k: median([run[k] for run in runs]) for k in ("rate", "p50", "p99", "p999", "max")}
        m["errors"] = sum(run["errors"] for run in runs)
        medians[p.name] = m
    for p in proxies:
        m = medians[p.name]
        ref = medians.get(p.reference)
        rows.append([p.label, f"{m['rate']:,.0f}" + ("" if m["rate"] >= 0.97 * rate else " (saturated)"),
                     "-" if m["p50"] is None else f"{m['p50']:.3f}",
                     "-" if m["p99"] is None else f"{m['p99']:.3f}",
                     "-" if m["p999"] is None else f"{m['p999']:.3f}", "-" if m["max"] is None else f"{m['max']:.2f}",
                     " ".join("-" if run["p99"] is None else f"{run['p99']:.3f}" for run in results[p.name]),
                     fmt_ratio(m["p99"] / ref["p99"]) if ref and ref["p99"] and m["p99"] else "-", str(m["errors"])])
    table(rows, ["proxy", "served/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "p99 per round", "p99 vs nginx",
                 "errors"])
    return medians


# --- profile ---------------------------------------------------------------------------------------------

def profile_ingressd(ctx, seconds: int, scheme: str) -> None:
    out = ctx.workdir / f"ingressd-{scheme}.prof"
    proxy = start_ingressd(ctx, f"ingressd-profile-{scheme}", ctx.manifests, access_log=False, profile_out=out)
    focus(proxy)
    port = proxy.http_port if scheme == "http" else proxy.https_port
    url = f"{scheme}://127.0.0.1:{port}/"
    try:
        wrk(url, 1)  # warm-up, not profiled
        os.kill(proxy.pid, signal.SIGUSR1)
        time.sleep(0.2)
        cpu0 = proxy.cpu()
        res = wrk(url, seconds)
        cpu = proxy.cpu() - cpu0
        code = proxy.procs[0].stop(signal.SIGTERM, grace=20)
    finally:
        proxy.stop()
    if code != 0:
        ctx.anomalies.append(f"profiled ingressd exited with {code} after SIGTERM")
    if not out.exists():
        say(f"  no profile written ({out}); ingressd log:\n{proxy.procs[0].tail()}")
        return
    n = res.requests
    stats = pstats.Stats(str(out))
    total = stats.total_tt
    say("")
    say(f"Profile, {scheme.upper()} keep-alive (wrk -t1 -c32, {seconds} s): {n:,} requests at {res.rps:,.0f} req/s "
        f"under cProfile; process CPU {cpu / n * 1e6:.1f} us/request (profiler overhead included; compare with "
        f"the CPU column above); profiled time {total / n * 1e6:.1f} us/request")

    def name(func) -> str:
        filename, line, fn = func
        if filename == "~":
            return fn
        rel = filename
        for prefix in (str(REPO) + "/", sys.prefix + "/lib/"):
            if rel.startswith(prefix):
                rel = rel[len(prefix):]
        return f"{rel}:{line}({fn})"

    entries = [(func, cc, nc, tt, ct) for func, (cc, nc, tt, ct, callers) in stats.stats.items()]
    say("  top functions by own time (us per request, calls per request):")
    rows = [[f"{tt / n * 1e6:.2f}", f"{100 * tt / total:.1f}%", f"{nc / n:.2f}", name(func)[:110]]
            for func, cc, nc, tt, ct in sorted(entries, key=lambda e: -e[3])[:ctx.profile_top]]
    table(rows, ["own us", "share", "calls", "function"])
    say("  top functions by cumulative time (us per request):")
    rows = [[f"{ct / n * 1e6:.2f}", f"{nc / n:.2f}", name(func)[:110]]
            for func, cc, nc, tt, ct in sorted(entries, key=lambda e: -e[4])[:ctx.profile_top]]
    table(rows, ["cum us", "calls", "function"])
    by_file: dict[str, float] = {}
    for func, cc, nc, tt, ct in entries:
        key = func[0]
        if key == "~":
            m = re.search(r"of '([\w.]+)\.", func[2]) or re.search(r"of '?([\w.]+)", func[2])
            key = f"(C code: {m.group(1) if m else func[2].split('.')[0].strip('<>')})"
        elif key.startswith(str(REPO) + "/"):
            key = key[len(str(REPO)) + 1:]
        elif key.startswith("/"):
            key = "(python) " + "/".join(Path(key).parts[-2:])
        by_file[key] = by_file.get(key, 0.0) + tt
    say("  own time by file (us per request):")
    rows = [[f"{tt / n * 1e6:.2f}", f"{100 * tt / total:.1f}%", f]
            for f, tt in sorted(by_file.items(), key=lambda kv: -kv[1])[:15]]
    table(rows, ["own us", "share", "file"])
    ctx.results.setdefault("profile", {})[scheme] = {"requests": n, "cpu_us_per_request": cpu / n * 1e6,
                                                     "profiled_us_per_request": total / n * 1e6, "file": str(out)}


# --- scale checks --------------------------------------------------------------------------------------

def compile_time(directory: Path) -> dict:
    from ingressd.config import Settings
    from ingressd.diagnostics import ERROR
    from ingressd.sources.manifests import ManifestDirectory
    from ingressd.translate import translate

    gc.collect()
    t0 = time.perf_counter()
    source = ManifestDirectory(directory)
    source.scan()
    t1 = time.perf_counter()
    snapshot = source.snapshot()
    t2 = time.perf_counter()
    config = translate(snapshot, Settings())
    t3 = time.perf_counter()
    config2 = translate(snapshot, Settings())  # a change re-translates the whole snapshot
    t4 = time.perf_counter()
    return {"read_parse": t1 - t0, "snapshot": t2 - t1, "translate": t3 - t2, "translate_again": t4 - t3,
            "total": t3 - t0, "ingresses": config.ingress_count, "routes": len(config.table.routes()),
            "errors": sum(1 for d in config.diagnostics if d.severity == ERROR), "objects": len(snapshot.objects),
            "_keep": config2 is not None}


class KeepAliveProbe:
    """One keep-alive HTTP connection for fast repeated GETs."""

    def __init__(self, port: int):
        self.port = port
        self.sock = None

    def get(self, host: str, path: str = "/") -> int:
        for _ in range(2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                length = int(m.group(1)) if m else 0
                while len(body) < length:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    body += chunk
                if re.search(rb"\r\nconnection:\s*close", head, re.I):
                    self.close()
                return int(head.split(b" ", 2)[1])
            except OSError:
                self.close()
        return 0

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def applied_lines(proxy: Proxy) -> list[str]:
    return [line for line in proxy.procs[0].log.read_text(errors="replace").splitlines()
            if "configuration applied" in line]


def get_status(port: int, host: str, timeout: float = 2.0) -> int:
    """One GET / on a new connection: its status, 0 when nothing listens or the connection fails."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
        return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    except (OSError, ValueError, IndexError):
        return 0


def start_serving(ctx, name: str, args: list[str], host: str, http_port: int, core: str | None,
                  timeout: float = 120.0) -> tuple[Proc, float | None]:
    """Start ``ingressd ARGS`` and time process start -> the first 200 from ``host``'s backend
    (polled every 5 ms on new connections: nothing listens until the configuration is applied)."""
    started = time.monotonic()
    proc = Proc(name, [sys.executable, "-m", "ingressd"] + args, ctx.workdir, core, stdout=subprocess.DEVNULL,
                cwd=REPO, env=child_env(REPO))
    while time.monotonic() - started < timeout:
        if not proc.alive():
            raise RuntimeError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        if get_status(http_port, host) == 200:
            proc.start_cpu = cpu_seconds(proc.pid)  # all its processes, until the last host was served
            return proc, time.monotonic() - started
        time.sleep(0.005)
    return proc, None


def wait_served(probe: "KeepAliveProbe", host: str, timeout: float = 30.0) -> float | None:
    """Seconds until ``host`` answers 200 through ``probe`` (polled every 1 ms), None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if probe.get(host) == 200:
            return time.monotonic() - t0
        time.sleep(0.001)
    return None


def wait_logged(proc: Proc, before: int, timeout: float = 10.0) -> int | None:
    """ingressd's own 'configuration applied ... in N ms' for the apply after the first ``before``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in proc.log.read_text(errors="replace").splitlines() if "configuration applied" in line]
        if len(lines) > before:
            m = re.search(r"in (\d+) ms", lines[before])
            return int(m.group(1)) if m else None
        time.sleep(0.01)
    return None


def applied_count(proc: Proc) -> int:
    return sum(1 for line in proc.log.read_text(errors="replace").splitlines() if "configuration applied" in line)


def edit_rounds(ctx, proc: Proc, http_port: int, edit, repeats: int) -> tuple[list, list]:
    """``repeats`` edits, one at a time: ``edit(k, host)`` prepares a change of one Ingress so that
    ``host`` is served and returns the call that makes it (the file's replacement, the PATCH);
    each timed from that call to the host's first 200, and ingressd's own apply time."""
    probe = KeepAliveProbe(http_port)
    delays, logged = [], []
    cpu_before = cpu_seconds(proc.pid)
    try:
        for k in range(repeats):
            host = f"edit{k}.{HOST}"
            if probe.get(host) == 200:
                ctx.anomalies.append(f"{host} served before it was written")
            before = applied_count(proc)
            change = edit(k, host)  # prepared first (YAML dumped), so that only the change itself is timed
            t_write = time.monotonic()
            change()
            served = wait_served(probe, host)
            delays.append(None if served is None else time.monotonic() - t_write)
            logged.append(wait_logged(proc, before))
            time.sleep(0.05 + 0.01 * (k % 5))  # vary the phase; let the apply's aftermath (gc, workers) settle
    finally:
        probe.close()
    # CPU time does not depend on how busy the machine is (wall time here does): all processes,
    # the probe's requests (one every millisecond until served) included
    ctx.results.setdefault("edit_cpu_ms", {})[proc.name] = (cpu_seconds(proc.pid) - cpu_before) / repeats * 1000
    return delays, logged


def entry_cpu(proc: Proc) -> str:
    cpu = getattr(proc, "start_cpu", None)
    return "n/a" if cpu is None else f"{cpu:.2f} s"


def describe_ms(values: list) -> str:
    ok = [v for v in values if v is not None]
    shown = " ".join("timeout" if v is None else f"{v * 1000:.0f}" for v in values)
    return f"median {median(ok) * 1000:.0f} ms ({shown})" if ok else f"none served ({shown})"


def manifest_editor(path: Path, name: str):
    """``edit(k, host)``: replace ``path`` (os.replace, as editors and ConfigMap volumes do) with the
    Ingress ``name`` given host ``host``."""
    original = path.read_text()
    import yaml

    docs = list(yaml.load_all(original, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

    def edit(k: int, host: str):
        for doc in docs:
            if doc.get("kind") == "Ingress" and doc["metadata"]["name"] == name:
                doc["spec"]["rules"][0]["host"] = host
                doc["spec"]["tls"][0]["hosts"] = [host]
        tmp = path.with_name("." + path.name + ".tmp")
        tmp.write_text(yaml.dump_all(docs, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False))
        return lambda: os.replace(tmp, path)  # the file replaced: what is timed
    return edit, lambda: path.write_text(original)


def scale_ingresses(ctx) -> None:
    n = ctx.scale_ingresses
    per_file = 100 if n >= 1000 else max(1, n // 10)
    big_dir, small_dir = ctx.workdir / f"manifests-{n}", ctx.workdir / "manifests-10"
    t0 = time.monotonic()
    files = scale_manifests(big_dir, n, per_file, ctx.cert, ctx.key, ctx.ports["upstream"])
    scale_manifests(small_dir, 10, 10, ctx.cert, ctx.key, ctx.ports["upstream"])
    say(f"generated {n:,} Ingresses (+ {n:,} Services, {n:,} EndpointSlices, {len(files)} TLS Secrets) in "
        f"{len(files)} files of {per_file} in {time.monotonic() - t0:.1f} s")

    c = compile_time(big_dir)
    say(f"compile ({n:,} Ingresses, {c['objects']:,} objects; ManifestDirectory.scan + snapshot + translate, "
        f"in the benchmark process): read+parse {c['read_parse']:.2f} s, snapshot {c['snapshot']:.3f} s, "
        f"translate {c['translate']:.2f} s (again: {c['translate_again']:.2f} s) = {c['total']:.2f} s; "
        f"{c['ingresses']:,} Ingresses served, {c['routes']:,} routes, {c['errors']} errors")
    ctx.results["compile"] = c
    last_host = f"h{n - 1}.{HOST}"

    # start -> serving, with the default worker count (unpinned: every CPU) and with --workers 1
    results = ctx.results.setdefault("ingress_scale", {})
    every_cpu = f"0-{(os.cpu_count() or 1) - 1}" if PIN else None  # this process is pinned; its children inherit it
    for label, workers, core in (("default", [], every_cpu), ("1", ["--workers", "1"], PROXY_CORE)):
        http_port, https_port, metrics_port = free_port(), free_port(), free_port()
        args = (["serve", "--manifests", str(big_dir), "--listen", "127.0.0.1", "--http-port", str(http_port),
                 "--https-port", str(https_port), "--metrics-port", str(metrics_port), "--no-access-log"]
                + workers + EXTRA_INGRESSD_ARGS)
        proc, startup = start_serving(ctx, f"ingressd-{n}-w{label}", args, last_host, http_port, core)
        try:
            processes = len(descendants(proc.pid))
            rss = rss_kb(proc.pid) / 1024
            say(f"ingressd serve ({'--workers 1' if workers else 'default workers'}: {processes} processes) with "
                f"{n:,} Ingresses: process start -> {last_host} answered by its backend in "
                + (f"{startup:.2f} s" if startup is not None else "(not served)")
                + f" (CPU time of its processes: {entry_cpu(proc)}); RSS {rss:.0f} MB (all processes)")
            entry = results[label] = {"startup_s": startup, "rss_mb": rss, "processes": processes,
                                      "startup_cpu_s": getattr(proc, "start_cpu", None)}
            target = files[len(files) // 2]
            index = (len(files) // 2) * per_file + per_file // 2
            edit, restore = manifest_editor(target, f"ing-{index}")
            try:
                delays, logged = edit_rounds(ctx, proc, http_port, edit, ctx.edit_repeats)
            finally:
                restore()
            entry.update(edit_ms=[None if d is None else d * 1000 for d in delays], logged_ms=logged,
                         edit_median_ms=(median(delays) or 0) * 1000 if median(delays) is not None else None,
                         rss_after_mb=rss_kb(proc.pid) / 1024)
            entry["edit_cpu_ms"] = ctx.results["edit_cpu_ms"][proc.name]
            say(f"  one Ingress edited (its file replaced, the host renamed) -> the new host served: "
                f"{describe_ms(delays)}; ingressd's own apply (translate + hand-over): {logged} ms; CPU per edit "
                f"{entry['edit_cpu_ms']:.0f} ms (all processes, probe requests included); "
                f"RSS after the edits {entry['rss_after_mb']:.0f} MB")
            if label == "1":
                ctx.scale_big = proc, http_port
        finally:
            if label != "1":
                proc.stop()
    big, big_port = ctx.scale_big
    http_port, https_port, metrics_port = free_port(), free_port(), free_port()
    small, _ = start_serving(ctx, "ingressd-10", ["serve", "--workers", "1", "--manifests", str(small_dir),
                                                  "--listen", "127.0.0.1", "--http-port", str(http_port),
                                                  "--https-port", str(https_port), "--metrics-port",
                                                  str(metrics_port), "--no-access-log"], f"h9.{HOST}", http_port,
                             PROXY_CORE)
    small_port = http_port
    try:
        big_proxy = Proxy(f"ingressd-{n}", "ingressd", big_port, 0, [big])
        small_proxy = Proxy("ingressd-10", "ingressd", small_port, 0, [small])
        idle_big, idle_small = idle_cpu(big_proxy, 2.0), idle_cpu(small_proxy, 2.0)
        focus(big_proxy, small_proxy)
        say(f"CPU while idle (no traffic, 2 s each, alone on the core): {idle_big:.0%} of a core with {n:,} "
            f"Ingresses, {idle_small:.0%} with 10")
        if idle_big > 0.05:
            ctx.anomalies.append(f"ingressd with {n:,} Ingresses uses {idle_big:.0%} of a core while idle "
                                 f"(10 Ingresses: {idle_small:.0%}): see its profile")
        ctx.results["idle_cpu"] = {"n": idle_big, "10": idle_small}
        # lookup cost: request rate with 10 vs n Ingresses
        rates = {"10": [], str(n): []}
        for r in range(ctx.rounds):
            for label, proxy, host in (("10", small_proxy, f"h5.{HOST}"), (str(n), big_proxy, f"h{n // 2}.{HOST}")):
                focus(proxy)
                res = wrk(f"http://127.0.0.1:{proxy.http_port}/", min(ctx.seconds, 2), host=host)
                rates[label].append(res.rps)
                if res.error_count:
                    ctx.anomalies.append(f"{label} Ingresses rate test: wrk errors {res.errors}")
        m10, mn = median(rates["10"]), median(rates[str(n)])
        say(f"HTTP keep-alive req/s with 10 Ingresses: {m10:,.0f} ({' '.join(f'{x:,.0f}' for x in rates['10'])}); "
            f"with {n:,}: {mn:,.0f} ({' '.join(f'{x:,.0f}' for x in rates[str(n)])}); ratio {mn / m10:.2f}")
        focus(big_proxy, small_proxy)
        rss = rss_kb(big.pid) / 1024
        hwm = rss_kb(big.pid, "VmHWM") / 1024
        say(f"RSS of ingressd --workers 1 with {n:,} Ingresses after the edits and load: {rss:.0f} MB (peak {hwm:.0f} MB)")
        ctx.results["scale"] = {"ingresses": n, "rss_mb": rss, "peak_mb": hwm, "rate_10": m10, "rate_n": mn}
        for p in (big, small):
            if not p.alive():
                ctx.anomalies.append(f"{p.name} died: {p.tail()}")
    finally:
        for proxy in (big_proxy, small_proxy):
            if proxy in ALL_PROXIES:
                ALL_PROXIES.remove(proxy)
        big.stop()
        small.stop()


def kube_objects(n: int, per_namespace: int, cert: Path, key: Path, upstream_port: int) -> list[dict]:
    """The same Ingresses, Services, EndpointSlices and TLS Secrets as ``scale_manifests``, as the API
    server stores them (Secrets' ``data`` in base64, resourceVersions, uids, creation times)."""
    import base64
    import yaml

    objects = []
    for f in range((n + per_namespace - 1) // per_namespace):
        namespace = f"ns-{f:03d}"
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        secret = secret_doc(namespace, "tls", cert, key)
        secret["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in secret.pop("stringData").items()}
        objects.append(secret)
        for i in range(f * per_namespace, min(n, (f + 1) * per_namespace)):
            objects += service_docs(namespace, f"svc-{i}", upstream_port)
            objects.append(ingress_doc(namespace, f"ing-{i}", f"h{i}.{HOST}", [("/", f"svc-{i}")], "tls"))
    for rv, obj in enumerate(objects, start=2):
        meta = obj["metadata"]
        meta.update(resourceVersion=str(rv), uid=f"00000000-0000-0000-0000-{rv:012d}",
                    creationTimestamp="2026-01-01T00:00:00Z")
    return objects


def scale_kubernetes(ctx) -> None:
    """The same Ingresses through the Kubernetes source, against tests/support/kubeapi (the API server
    emulator, its own process, loaded from a state file): start (list) -> serving, and changes
    through the API (a JSON merge patch on one Ingress) -> served."""
    n = ctx.scale_ingresses
    per_namespace = 100 if n >= 1000 else max(1, n // 10)
    kube_dir = ctx.workdir / "kubeapi"
    kube_dir.mkdir(exist_ok=True)
    objects = kube_objects(n, per_namespace, ctx.cert, ctx.key, ctx.ports["upstream"])
    state = kube_dir / "state.json"
    state.write_text(json.dumps({"rv": len(objects) + 2, "objects": objects}))
    api_port = free_port()
    api = Proc("kubeapi", [sys.executable, "-m", "tests.support.kubeapi.server", "--port", str(api_port),
                           "--state", str(state), "--bookmark-interval", "5"], ctx.workdir, LOAD_CORE,
               stdout=subprocess.DEVNULL, cwd=REPO, env=child_env(REPO))
    wait_port(api_port, api)
    kubeconfig = kube_dir / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "bench", "namespace": "default"}}]}))
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/apis/networking.k8s.io/v1/ingresses", timeout=60) as r:
        listed = len(json.loads(r.read())["items"])
    say(f"API emulator with {len(objects):,} objects: a list of the {listed:,} Ingresses takes "
        f"{time.monotonic() - t0:.2f} s")
    results = ctx.results.setdefault("kube_scale", {})
    last_host = f"h{n - 1}.{HOST}"
    http_port, https_port, metrics_port = free_port(), free_port(), free_port()
    args = ["serve", "--kubernetes", "--kubeconfig", str(kubeconfig), "--watch-ingress-without-class",
            "--listen", "127.0.0.1", "--http-port", str(http_port), "--https-port", str(https_port),
            "--metrics-port", str(metrics_port), "--no-access-log", "--workers", "1"] + EXTRA_INGRESSD_ARGS
    proc, startup = start_serving(ctx, f"ingressd-kube-{n}", args, last_host, http_port, PROXY_CORE)
    try:
        results["startup_s"] = startup
        results["startup_cpu_s"] = getattr(proc, "start_cpu", None)
        results["rss_mb"] = rss_kb(proc.pid) / 1024
        say(f"ingressd serve --kubernetes --workers 1 with {n:,} Ingresses: process start -> {last_host} answered by "
            f"its backend in " + (f"{startup:.2f} s" if startup is not None else "(not served)")
            + f" (CPU time: {entry_cpu(proc)}); RSS {results['rss_mb']:.0f} MB")
        index = n // 2
        namespace = f"ns-{index // per_namespace:03d}"
        url = (f"http://127.0.0.1:{api_port}/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/ing-{index}")

        def edit(k: int, host: str):
            patch = json.dumps({"spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": f"svc-{index}", "port": {"number": 80}}}}]}}],
                "tls": [{"hosts": [host], "secretName": "tls"}]}}).encode()
            request = urllib.request.Request(url, data=patch, method="PATCH",
                                             headers={"Content-Type": "application/merge-patch+json"})

            def send() -> None:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
            return send

        delays, logged = edit_rounds(ctx, proc, http_port, edit, ctx.edit_repeats)
        results.update(edit_ms=[None if d is None else d * 1000 for d in delays], logged_ms=logged,
                       edit_median_ms=median(delays) * 1000 if median(delays) is not None else None,
                       edit_cpu_ms=ctx.results["edit_cpu_ms"][proc.name])
        say(f"  one Ingress changed through the API (JSON merge patch renaming its host) -> the new host served: "
            f"{describe_ms(delays)}; ingressd's own apply: {logged} ms; CPU per change "
            f"{results['edit_cpu_ms']:.0f} ms (probe requests included)")
    finally:
        proc.stop()
        api.stop()


async def _open_websockets(port: int, count: int, concurrency: int = 200) -> tuple[list, list[str]]:
    from websockets.asyncio.client import connect

    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i):
        async with sem:
            try:
                return await connect(f"wss://{HOST}:{port}/ws", host="127.0.0.1", port=port, ssl=tls,
                                     server_hostname=HOST, ping_interval=None, compression=None,
                                     open_timeout=60, close_timeout=2, max_queue=4)
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}")
                return None

    sockets = await asyncio.gather(*(one(i) for i in range(count)))
    return [s for s in sockets if s is not None], errors


async def _echo_all(sockets: list, tag: str, timeout: float = 30.0, concurrency: int = 500) -> tuple[int, list[str]]:
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i, ws):
        async with sem:
            try:
                message = f"{tag} {i}"
                await ws.send(message)
                reply = await asyncio.wait_for(ws.recv(), timeout)
                if reply != message:
                    errors.append(f"websocket {i}: got {reply!r} for {message!r}")
                    return False
                return True
            except Exception as error:
                errors.append(f"websocket {i}: {type(error).__name__}: {error}")
                return False

    results = await asyncio.gather(*(one(i, ws) for i, ws in enumerate(sockets)))
    return sum(results), errors


async def _close_all(sockets: list) -> None:
    for start in range(0, len(sockets), 1000):
        await asyncio.gather(*(ws.close() for ws in sockets[start:start + 1000]), return_exceptions=True)


def websocket_memory(ctx, proxy: Proxy, count: int) -> dict:
    async def run():
        warm, errs = await _open_websockets(proxy.https_port, 50)
        await _echo_all(warm, "warm")
        await _close_all(warm)
        await asyncio.sleep(1.0)
        base = proxy.rss()
        t0 = time.monotonic()
        sockets, errors = await _open_websockets(proxy.https_port, count)
        opened_in = time.monotonic() - t0
        await asyncio.sleep(2.0)
        after = proxy.rss()
        ok, echo_errors = await _echo_all(sockets, "ping")
        after_echo = proxy.rss()
        await _close_all(sockets)
        return {"opened": len(sockets), "open_errors": errors[:5], "open_error_count": len(errors),
                "opened_in": opened_in, "base_kb": base, "after_kb": after, "after_echo_kb": after_echo,
                "echo_ok": ok, "echo_errors": echo_errors[:5],
                "kb_per_conn": (after - base) / max(1, len(sockets)),
                "kb_per_conn_after_echo": (after_echo - base) / max(1, len(sockets))}

    return asyncio.run(run())


def scale_websockets(ctx, proxies: list[Proxy]) -> None:
    n = ctx.scale_websockets
    for p in proxies:
        t0 = time.monotonic()
        focus(p)
        r = websocket_memory(ctx, p, n)
        say(f"{p.label}: {r['opened']:,}/{n:,} TLS websockets open in {r['opened_in']:.1f} s; RSS {r['base_kb'] / 1024:.0f} MB"
            f" -> {r['after_kb'] / 1024:.0f} MB idle = {r['kb_per_conn']:.1f} KB per connection "
            f"({r['kb_per_conn_after_echo']:.1f} KB after one echo each); {r['echo_ok']:,}/{r['opened']:,} still echo"
            f" ({time.monotonic() - t0:.0f} s)")
        if r["open_error_count"]:
            say(f"  open errors ({r['open_error_count']}): {r['open_errors']}")
            ctx.anomalies.append(f"{p.label}: {r['open_error_count']} websockets failed to open: {r['open_errors']}")
        if r["echo_errors"]:
            say(f"  echo errors: {r['echo_errors']}")
            ctx.anomalies.append(f"{p.label}: websocket echo errors: {r['echo_errors']}")
        ctx.results.setdefault("websockets", {})[p.name] = r
        if not p.alive():
            raise RuntimeError(f"{p.label} died during the websocket test:\n{p.procs[0].tail()}")


def churn_under_load(ctx, proxy: Proxy) -> None:
    seconds = ctx.churn_seconds

    async def run():
        sockets, open_errors = await _open_websockets(proxy.https_port, 100)
        before = len(applied_lines(proxy))
        wrk_cmd = ["wrk", "-t1", "-c32", f"-d{seconds}s", "-H", f"Host: {HOST}", f"http://127.0.0.1:{proxy.http_port}/"]
        if PIN:
            wrk_cmd = ["taskset", "-c", LOAD_CORE] + wrk_cmd
        wrk_proc = await asyncio.create_subprocess_exec(*wrk_cmd, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
        STARTED_ASYNC.append(wrk_proc)
        changes, echo_failures = 0, []
        try:
            for k in range(1, seconds):
                await asyncio.sleep(1.0)
                write_yaml(ctx.manifests / "churn.yaml", churn_doc(k))
                changes += 1
                ok, errors = await _echo_all(sockets, f"tick{k}", timeout=5)
                echo_failures += errors
            out = (await wrk_proc.communicate())[0].decode()
        finally:
            if wrk_proc.returncode is None:
                wrk_proc.kill()
                await wrk_proc.wait()
            STARTED_ASYNC.remove(wrk_proc)
        await asyncio.sleep(1.0)
        final_ok, final_errors = await _echo_all(sockets, "final", timeout=5)
        closed = sum(1 for ws in sockets if ws.close_code is not None)
        await _close_all(sockets)
        applied = len(applied_lines(proxy)) - before
        return out, changes, applied, len(sockets), open_errors, echo_failures, final_ok, final_errors, closed

    out, changes, applied, opened, open_errors, echo_failures, final_ok, final_errors, closed = asyncio.run(run())
    res = WrkResult(raw=out)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res.rps = float(m.group(1)) if m else 0
    m = re.search(r"(\d+) requests in", out)
    res.requests = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res.errors.update(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res.errors["non2xx"] = int(m.group(1)) if m else 0
    probe = KeepAliveProbe(proxy.http_port)
    served = probe.get(f"churn.{HOST}", f"/v{changes}") == 200
    probe.close()
    dropped = opened - final_ok
    say(f"{seconds} s of wrk -t1 -c32 (HTTP keep-alive) + {opened} open TLS websockets, {changes} manifest rewrites "
        f"(one per second): {res.requests:,} requests ({res.rps:,.0f}/s), socket errors "
        f"{ {k: v for k, v in res.errors.items() if k != 'non2xx'} }, non-2xx {res.errors['non2xx']}; "
        f"{applied} configurations applied (last change served: {'yes' if served else 'NO'}); websockets: "
        f"{len(echo_failures)} failed echoes during, {final_ok}/{opened} echo at the end, {closed} closed")
    if open_errors:
        say(f"  websocket open errors: {open_errors[:5]}")
    if echo_failures or final_errors:
        say(f"  websocket errors: {(echo_failures + final_errors)[:5]}")
    ctx.results["churn"] = {"requests": res.requests, "errors": res.errors, "changes": changes, "applied": applied,
                            "served_last": served, "ws_opened": opened, "ws_final_ok": final_ok,
                            "ws_echo_failures": len(echo_failures), "ws_closed": closed, "dropped": dropped}


STARTED_ASYNC: list = []


# --- main ------------------------------------------------------------------------------------------------

PIN = True
FD_LIMIT = 1024
EXTRA_INGRESSD_ARGS: list[str] = []


def find_chp() -> tuple[str | None, str]:
    """The real configurable-http-proxy (Node.js) that bench/run.sh installs with npm under NPM_PREFIX, never
    one found on PATH: ingressd installs a `configurable-http-proxy` console script of its own (ingressd chp).
    Returns (path, "") or (None, why not)."""
    link = NPM_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
    if not link.exists():
        return None, f"not installed in {NPM_PREFIX} (bash bench/run.sh installs it with npm)"
    target = link.resolve()
    package = (NPM_PREFIX / "node_modules" / "configurable-http-proxy").resolve()
    if package not in target.parents:
        return None, f"{link} resolves to {target}, outside {package}"
    try:
        with open(target, "rb") as f:
            shebang = f.readline()
    except OSError as error:
        return None, f"cannot read {target}: {error}"
    if not (shebang.startswith(b"#!") and b"node" in shebang):
        return None, f"{target} is not a Node.js script (first line {shebang[:60]!r})"
    if shutil.which("node") is None:
        return None, "node is not installed"
    return str(target), ""


def find_tools(ctx, wanted: list[str]) -> dict:
    tools = {}
    notes = []
    for name, exe in (("haproxy", "haproxy"), ("envoy", "envoy"), ("caddy", "caddy")):
        if name in wanted:
            path = shutil.which(exe)
            if path:
                tools[name] = path
            else:
                notes.append(f"{name}: not installed, skipped")
    if "chp" in wanted:
        path, problem = find_chp()
        if path:
            tools["chp"] = path
        else:
            notes.append(f"configurable-http-proxy: {problem}, skipped")
    for note in notes:
        say(f"  note: {note}")
    return tools


def build_pace(ctx) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = ctx.workdir / "pace"
    r = subprocess.run([cc, "-O2", "-o", str(out), str(BENCH / "pace.c")], capture_output=True, text=True)
    if r.returncode != 0:
        say(f"  note: building bench/pace.c failed, using wrk + Lua delay() instead:\n{r.stderr[-500:]}")
        return None
    return out


def prepare_machine() -> int:
    """Set up the process for any benchmark: no pinning on one core, the open-files limit raised
    (returned, also in FD_LIMIT), and this process (the load side) on LOAD_CORE."""
    global PIN, FD_LIMIT
    cpus = os.cpu_count() or 1
    if cpus < 2:
        PIN = False
    FD_LIMIT = raise_fd_limit()
    try:
        os.sched_setaffinity(0, {int(LOAD_CORE)} if PIN else set(range(cpus)))
    except OSError:
        pass
    return FD_LIMIT


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200_000
    for limit in ((want, want), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def scale_rows(ctx) -> list[list[str]]:
    """Issue 10's scale targets: 10,000 Ingresses in 100 files and through the Kubernetes source."""
    rows = []
    n = ctx.scale_ingresses

    def limit(label, value, goal, unit, fmt="{:.0f}"):
        shown = "n/a" if value is None else fmt.format(value) + f" {unit}"
        rows.append([label, shown, f"< {goal:g} {unit}", "PASS" if value is not None and value < goal else "MISS"])

    c = ctx.results.get("compile")
    if c:
        limit(f"  {n:,} Ingresses: read+parse+translate in one process (no serving)", c["total"], 2, "s", "{:.2f}")
    scale = ctx.results.get("ingress_scale", {})
    for label, entry in (("--workers 1", scale.get("1")), ("default workers", scale.get("default"))):
        where = f"{n:,} Ingresses in {max(1, n // 100)} files, {label}"
        if entry and label == "default workers":
            where += f" ({entry['processes']} processes)"
        limit(f"{where}: start -> serving", entry and entry["startup_s"], 2, "s", "{:.2f}")
        if entry and entry.get("startup_cpu_s") is not None:
            limit("  (CPU time of its processes until then: what an idle machine's wall time would be)",
                  entry["startup_cpu_s"], 2, "s", "{:.2f}")
        limit(f"{where}: one Ingress edited -> served (median of {ctx.edit_repeats})",
              entry and entry["edit_median_ms"], 100, "ms")
        if entry and entry.get("edit_cpu_ms") is not None:
            limit("  (CPU time per edit, all processes, probe requests included)", entry["edit_cpu_ms"], 100, "ms")
        limit(f"{where}: RSS serving (all processes)", entry and entry["rss_mb"], 150, "MB")
    s = ctx.results.get("scale")
    if s:
        ratio = s["rate_n"] / s["rate_10"]
        rows.append([f"  lookup cost flat: req/s {n:,} vs 10 Ingresses", f"{ratio:.2f}", "(>= 0.9)",
                     "PASS" if ratio >= 0.9 else "MISS"])
    kube = ctx.results.get("kube_scale", {})
    limit(f"{n:,} Ingresses, Kubernetes source (API emulator): start (list) -> serving", kube.get("startup_s"), 2, "s",
          "{:.2f}")
    if kube.get("startup_cpu_s") is not None:
        limit("  (CPU time of ingressd until then)", kube["startup_cpu_s"], 2, "s", "{:.2f}")
    limit(f"{n:,} Ingresses, Kubernetes source: one Ingress changed through the API -> served (median)",
          kube.get("edit_median_ms"), 100, "ms")
    if kube.get("edit_cpu_ms") is not None:
        limit("  (CPU time per change, probe requests included)", kube["edit_cpu_ms"], 100, "ms")
    return rows


def target_rows(ctx, tp: dict, st: dict, lat: dict) -> list[list[str]]:
    rows = []

    def ratio_target(label, value, goal, ok=None):
        if value is None:
            rows.append([label, "n/a", f">= {goal}", "MISS"])
        else:
            rows.append([label, f"{value:.2f}", f">= {goal}", "PASS" if value >= goal else "MISS"])

    def tp_ratio(test, name="ingressd", ref="nginx"):
        m = tp.get(test, {})
        return m[name] / m[ref] if m.get(name) and m.get(ref) else None

    # issue 10: per worker, side by side, access logs off on both and on on both
    ratio_target("HTTP keep-alive, ingressd/nginx", tp_ratio("HTTP keep-alive"), 0.8)
    ratio_target("HTTPS keep-alive, ingressd/nginx", tp_ratio("HTTPS keep-alive"), 0.8)
    ratio_target("HTTPS new connection per request, ingressd/nginx", tp_ratio("HTTPS new connection per request"), 0.7)
    ratio_target("  (with access log) HTTP keep-alive, ingressd/nginx", tp_ratio("HTTP keep-alive", "ingressd-log", "nginx-log"), 0.8)
    ratio_target("  (with access log) HTTPS keep-alive, ingressd/nginx", tp_ratio("HTTPS keep-alive", "ingressd-log", "nginx-log"), 0.8)
    for test in ("HTTP keep-alive", "HTTPS keep-alive"):  # what the platform allows (bench/floor_proxy.py)
        floor = tp_ratio(test, "floor")
        if floor is not None:
            rows.append([f"  (the floor) {test}: python floor/nginx, ingressd/python floor",
                         f"{floor:.2f}, {tp_ratio(test, 'ingressd', 'floor'):.2f}", "(information)", ""])
    size_label = "1 GiB" if ctx.big_size == 2**30 else f"{ctx.big_size >> 20} MiB"
    for key in ("download HTTP", "download HTTPS", "upload HTTP", "upload HTTPS"):
        m = st.get(key, {})
        ratio_target(f"{size_label} {key}, ingressd/nginx",
                     m["ingressd"] / m["nginx"] if m.get("ingressd") and m.get("nginx") else None, 0.5)
    if lat.get("ingressd") and lat.get("nginx") and lat["ingressd"]["p99"] and lat["nginx"]["p99"]:
        a, b = lat["ingressd"]["p99"], lat["nginx"]["p99"]
        rows.append([f"p99 at {ctx.latency_rate:,.0f} req/s (half nginx max), ingressd vs nginx",
                     f"{a:.3f} vs {b:.3f} ms = {a / b:.2f}x", "<= 2x", "PASS" if a <= 2 * b else "MISS"])
    else:
        rows.append(["p99 at half nginx max", "n/a", "<= 2x", "MISS"])
    rows += scale_rows(ctx)
    w = ctx.results.get("websockets", {}).get("ingressd-ws")
    wn = ctx.scale_websockets
    rows.append([f"{wn:,} idle TLS websockets: RSS per connection", f"{w['kb_per_conn']:.1f} KB" if w else "n/a", "< 40 KB",
                 "PASS" if w and w["kb_per_conn"] < 40 and w["echo_ok"] == wn else "MISS"])
    if w:
        rows.append([f"  {wn:,} websockets all open and echo afterwards", f"{w['echo_ok']:,}/{wn:,}", "all",
                     "PASS" if w["echo_ok"] == wn else "MISS"])
    ch = ctx.results.get("churn")
    if ch:
        errs = sum(ch["errors"].values())
        rows.append([f"1 change/s under load ({ctx.churn_seconds} s): wrk errors + non-2xx, websockets dropped",
                     f"{errs} errors, {ch['dropped']} dropped", "0, 0",
                     "PASS" if errs == 0 and ch["dropped"] == 0 and ch["served_last"] else "MISS"])
    return rows


PARTS = ("throughput", "streaming", "latency", "profile", "ingresses", "websockets", "churn")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="~3 minutes: shorter rounds, smaller scale checks")
    parser.add_argument("--proxies", default="ingressd,nginx,floor,haproxy,envoy,caddy,chp",
                        help="comma-separated subset of ingressd,nginx,floor,haproxy,envoy,caddy,chp "
                             "(floor: bench/floor_proxy.py, the least Python on these libraries can do)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,streaming,latency,"
                                                   "profile,ingresses,websockets,churn")
    parser.add_argument("--only", default="", help="comma-separated parts to run, the others skipped (e.g. --only "
                                                   "ingresses: the 10,000-Ingress checks alone, about a minute)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs, profiles)")
    parser.add_argument("--ingressd-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for every `ingressd serve` (repeatable; e.g. --ingressd-arg=--log-level=warning)")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="also run the ingressd of another source tree (e.g. an older commit from `git archive`), "
                             "--no-access-log, in the throughput and latency rounds, for before/after comparisons")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for other programs to use under 10%% of a core")
    args = parser.parse_args()
    EXTRA_INGRESSD_ARGS[:] = args.ingressd_arg
    quick = args.quick
    wanted = [p.strip() for p in args.proxies.split(",") if p.strip()]
    skip = {p.strip() for p in args.skip.split(",") if p.strip()}
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if only:
        skip |= set(PARTS) - only
    # the scale checks of files and the Kubernetes source need only the upstream, no other proxy
    proxies_needed = bool(set(PARTS) - skip - {"ingresses"})
    for required in ("ingressd", "nginx"):
        if required not in wanted:
            wanted.insert(0, required)

    ctx = Context()
    ctx.quick = quick
    ctx.rounds = 3
    ctx.seconds = 1 if quick else 4
    ctx.latency_seconds, ctx.latency_warmup = (1.0, 0.3) if quick else (4.0, 1.0)
    ctx.big_size = (128 << 20) if quick else (1 << 30)
    ctx.transfer_timeout = 60 if quick else 120
    ctx.profile_seconds = 2 if quick else 5
    ctx.profile_top = 20 if quick else 25
    ctx.scale_ingresses = 1000 if quick else 10_000
    ctx.scale_websockets_asked = 1000 if quick else 10_000
    ctx.edit_repeats = 20  # issue 10: the median of at least 20 edits
    ctx.churn_seconds = 8 if quick else 20
    ctx.anomalies = []
    ctx.results = {}

    for tool in ("nginx", "wrk", "curl", "taskset"):
        if shutil.which(tool) is None:
            say(f"missing {tool}: run `bash bench/run.sh`, which installs it")
            return 2
    cpus = os.cpu_count() or 1
    fd_limit = prepare_machine()

    # a proxy holds two descriptors per websocket (client + upstream): stay below the open-files limit
    ctx.scale_websockets = min(ctx.scale_websockets_asked, (fd_limit - 200) // 2)
    ctx.workdir = Path(tempfile.mkdtemp(prefix="ingressd-bench-"))
    global PYCACHE
    PYCACHE = ctx.workdir / "pycache"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "ingressd")], env=child_env(), check=False)
    os.chmod(ctx.workdir, 0o755)  # nginx workers run as nobody and read files/ from here
    started = time.monotonic()
    stop_requested = []

    def on_term(signum, frame):
        stop_requested.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    import ingressd
    versions = {"python": sys.version.split()[0], "ingressd": ingressd.__version__}
    try:
        import uvloop
        import httptools
        versions["uvloop"] = uvloop.__version__
        versions["httptools"] = httptools.__version__
    except ImportError:
        pass
    section("ingressd side-by-side benchmark" + (" (--quick)" if quick else ""))
    say(f"{datetime.datetime.now().isoformat(timespec='seconds')}; {cpus} CPUs "
        f"({Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip() if Path('/proc/cpuinfo').exists() else '?'}); "
        f"{' '.join(f'{k} {v}' for k, v in versions.items())}; open files limit {fd_limit}")
    say(f"layout: proxies pinned to core {PROXY_CORE} (one worker/thread each); upstream nginx, upload sink, websocket "
        f"echo and load generators pinned to core {LOAD_CORE}" if PIN else "layout: only one CPU, nothing pinned")
    say(f"work directory: {ctx.workdir}")
    if EXTRA_INGRESSD_ARGS:
        say(f"extra ingressd arguments: {' '.join(EXTRA_INGRESSD_ARGS)}")
    deadline = time.monotonic() + args.wait_quiet
    while True:
        busy0, total0 = cpu_times()
        own0 = sum(os.times()[:4])
        time.sleep(1.0)
        busy1, total1 = cpu_times()
        background = max(0.0, (busy1 - busy0) - (sum(os.times()[:4]) - own0)) / max(1e-9, total1 - total0) * cpus
        if background <= 0.1 or time.monotonic() >= deadline:
            break
    say(f"other programs used {background:.0%} of one core in the second before the start"
        + ("  <-- WARNING: this machine is busy, results will be noisy" if background > 0.1 else ""))
    ctx.start_times = (cpu_times(), sum(os.times()[:4]))
    try:
        ctx.tools = find_tools(ctx, wanted)
        ctx.pace_bin = build_pace(ctx)
        ctx.cert, ctx.key, ctx.pem = make_certificate(ctx.workdir)
        (ctx.workdir / "files").mkdir()
        ctx.big_file = ctx.workdir / "files" / "big.bin"
        with open(ctx.big_file, "wb") as f:  # sparse: no disk, reads as zeros
            f.truncate(ctx.big_size)
        ctx.ports = {"upstream": free_port(), "sink": free_port(), "wsecho": free_port()}
        ctx.manifests = ctx.workdir / "manifests"
        bench_manifests(ctx.manifests, ctx.cert, ctx.key, ctx.ports)

        start_upstream(ctx)  # stopped with everything else at the end
        sink = Proc("sink", [sys.executable, str(BENCH / "upstreams.py"), "sink", str(ctx.ports["sink"])],
                    ctx.workdir, LOAD_CORE)
        wsecho = Proc("wsecho", [sys.executable, str(BENCH / "upstreams.py"), "wsecho", str(ctx.ports["wsecho"])],
                      ctx.workdir, LOAD_CORE)
        wait_port(ctx.ports["sink"], sink)
        wait_port(ctx.ports["wsecho"], wsecho)

        if not proxies_needed:
            if "ingresses" not in skip:
                section(f"Scale: {ctx.scale_ingresses:,} Ingresses in files")
                scale_ingresses(ctx)
                section(f"Scale: {ctx.scale_ingresses:,} Ingresses through the Kubernetes source")
                scale_kubernetes(ctx)
            section("Targets (issue 10, scale)")
            table(scale_rows(ctx), ["target", "measured", "goal", "result"])
            for a in ctx.anomalies:
                say(f"  - {a}")
            (ctx.workdir / "results.json").write_text(json.dumps(ctx.results, indent=1, default=str))
            return 0

        proxies: list[Proxy] = []
        proxies.append(start_ingressd(ctx, "ingressd", ctx.manifests, access_log=False))
        proxies.append(start_ingressd(ctx, "ingressd-log", ctx.manifests, access_log=True))
        if args.baseline:
            proxies.append(start_ingressd(ctx, "ingressd-baseline", ctx.manifests, access_log=False,
                                          tree=args.baseline.resolve(), label=f"ingressd ({args.baseline.name})"))
            proxies[-1].streaming = False
        proxies.append(start_nginx(ctx, "nginx", access_log=False))
        proxies.append(start_nginx(ctx, "nginx-log", access_log=True))
        starters = {"floor": start_floor, "haproxy": start_haproxy, "envoy": start_envoy, "caddy": start_caddy, "chp": start_chp}
        for name in wanted:
            if name in starters and (name in ctx.tools or name == "floor"):
                try:
                    proxies.append(starters[name](ctx))
                except Exception as error:
                    say(f"  note: {name} did not start, skipped: {error}")
        focus(*proxies)
        for p in list(proxies):
            problem = sanity(p)
            if problem:
                if p.name.startswith(("ingressd", "nginx")):
                    raise RuntimeError(f"{p.label} does not answer as expected: {problem}\n{p.procs[0].tail()}")
                say(f"  note: {p.label} does not answer as expected ({problem}); skipped")
                p.stop()
                proxies.remove(p)
        say("proxies: " + ", ".join(f"{p.label} (pid {', '.join(str(x.pid) for x in p.procs)})" for p in proxies))
        idle = [idle_cpu(p, 1.0) for p in proxies]
        say("CPU while idle (1 s each, no traffic, alone on its core): "
            + ", ".join(f"{p.label} {x:.0%}" for p, x in zip(proxies, idle)))
        for p, x in zip(proxies, idle):
            if x > 0.05:
                ctx.anomalies.append(f"{p.label} uses {x:.0%} of a core while idle (before any load)")
        say("nginx is configured as ingress-nginx configures it (keepalive 320 to the upstream, proxy_http_version 1.1, "
            "the same X-Forwarded-*/X-Request-ID headers, HSTS, TLS 1.2/1.3 with the same ECDSA P-256 certificate, "
            "upstreaminfo access log to stdout=/dev/null or off), but without ingress-nginx's Lua balancer, so it is "
            "a slightly stricter reference; proxy_request_buffering off (ingress-nginx's annotation "
            "proxy-request-buffering: \"off\") so uploads stream through every proxy. During each measurement "
            "every other proxy is paused (SIGSTOP) so that only the proxy under test runs on its core.")

        tp, st, lat = {}, {}, {}
        if "throughput" not in skip:
            section("Throughput: 12-byte responses")
            tp = print_throughput(ctx, proxies, throughput_rounds(ctx, proxies, ctx.rounds, ctx.seconds))
        ctx.results["throughput"] = tp

        if "streaming" not in skip:
            section(f"Streaming: {ctx.big_size >> 20} MiB download (sparse file from the upstream) and upload "
                    f"(to a sink that counts bytes); byte counts checked")
            streamers = [p for p in proxies if p.streaming]
            st = print_streaming(ctx, streamers, streaming_rounds(ctx, streamers, ctx.rounds))
        ctx.results["streaming"] = st

        if "latency" not in skip:
            nginx_max = tp.get("HTTP keep-alive", {}).get("nginx")
            if not nginx_max:
                nginx = next(p for p in proxies if p.name == "nginx")
                focus(nginx)
                r = wrk(f"http://127.0.0.1:{nginx.http_port}/", ctx.seconds)
                nginx_max = r.rps
            ctx.latency_rate = rate = nginx_max / 2
            method = ("bench/pace.c: open-loop constant rate, 32 keep-alive connections, latency from each request's "
                      "intended send time (no coordinated omission)" if ctx.pace_bin else
                      "wrk + Lua delay(): closed loop, each of 32 connections pauses 32/rate between requests "
                      "(an approximation of a constant rate)")
            section(f"Latency at half of nginx's HTTP keep-alive maximum: {rate:,.0f} req/s")
            say(f"generator: {method}; served/s counts responses completed within the measured window "
                f"(saturated: below 97% of the rate, so the percentiles are mostly queueing); "
                f"{ctx.latency_seconds:g} s measured after {ctx.latency_warmup:g} s warm-up, "
                f"{ctx.rounds} rounds, proxies alternating; proxies whose own maximum is below 1.1x the rate are left out")
            fast = [p for p in proxies if tp.get("HTTP keep-alive", {}).get(p.name, float("inf")) >= 1.1 * rate
                    or p.name in ("ingressd", "nginx", "ingressd-log", "nginx-log", "ingressd-baseline")]
            for p in proxies:
                if p not in fast:
                    say(f"  {p.label}: left out (max {tp['HTTP keep-alive'][p.name]:,.0f} req/s)")
            lat = print_latency(ctx, fast, latency_rounds(ctx, fast, rate, ctx.rounds, ctx.latency_seconds,
                                                        ctx.latency_warmup), rate)
        else:
            ctx.latency_rate = 0
        ctx.results["latency"] = lat

        if "profile" not in skip:
            section("ingressd CPU time per request by function (cProfile, one extra round, --no-access-log)")
            for scheme in ("http", "https"):
                profile_ingressd(ctx, ctx.profile_seconds, scheme)

        # the competitors are done: stop them so that they hold no memory or timers during the scale checks
        main_ingressd = next(p for p in proxies if p.name == "ingressd")
        nginx_ref = next(p for p in proxies if p.name == "nginx")
        for p in proxies:
            if p not in (main_ingressd, nginx_ref):
                p.stop()

        if "ingresses" not in skip:
            section(f"Scale: {ctx.scale_ingresses:,} Ingresses in files")
            scale_ingresses(ctx)
            section(f"Scale: {ctx.scale_ingresses:,} Ingresses through the Kubernetes source")
            scale_kubernetes(ctx)

        if "websockets" not in skip:
            section(f"Scale: {ctx.scale_websockets:,} idle websockets through TLS (wss -> proxy -> ws echo upstream)")
            if ctx.scale_websockets < ctx.scale_websockets_asked:
                say(f"note: {ctx.scale_websockets:,} rather than {ctx.scale_websockets_asked:,}: the open-files limit "
                    f"here is {fd_limit:,} and cannot be raised (setrlimit refused), and a proxy holds two "
                    f"descriptors per websocket")
            ws_ingressd = start_ingressd(ctx, "ingressd-ws", ctx.manifests, access_log=False)
            ws_ingressd.label = "ingressd"
            try:
                scale_websockets(ctx, [ws_ingressd, nginx_ref])
            finally:
                ws_ingressd.stop()

        if "churn" not in skip:
            section(f"Scale: one configuration change per second for {ctx.churn_seconds} s under full load")
            focus(main_ingressd)
            churn_under_load(ctx, main_ingressd)

        focus(*ALL_PROXIES)
        for p in (main_ingressd, nginx_ref):
            if not p.alive():
                ctx.anomalies.append(f"{p.label} is no longer running: {p.procs[0].tail()}")

        section("Targets (issues 5 and 10)")
        table(target_rows(ctx, tp, st, lat), ["target", "measured", "goal", "result"])

        errors_in_logs = []
        for name in ("ingressd", "ingressd-log", "ingressd-ws", f"ingressd-{ctx.scale_ingresses}-w1",
                     f"ingressd-{ctx.scale_ingresses}-wdefault", f"ingressd-kube-{ctx.scale_ingresses}", "ingressd-10",
                     "ingressd-profile-http", "ingressd-profile-https"):
            log = ctx.workdir / f"{name}.log"
            if log.exists():
                for line in log.read_text(errors="replace").splitlines():
                    if re.search(r"\b(ERROR|CRITICAL|Traceback|WARNING)\b|error", line) and "configuration applied" not in line:
                        errors_in_logs.append(f"{name}: {line}")
        section("Anomalies")
        if not ctx.anomalies and not errors_in_logs:
            say("none: no wrk errors, every transfer complete, no warnings or errors in ingressd's logs")
        for a in ctx.anomalies:
            say(f"  - {a}")
        for line in errors_in_logs[:40]:
            say(f"  - log: {line[:300]}")
        if len(errors_in_logs) > 40:
            say(f"  ... {len(errors_in_logs) - 40} more log lines in {ctx.workdir}")
        (ctx.workdir / "results.json").write_text(json.dumps(ctx.results, indent=1, default=str))
        say("")
        say(f"total time {time.monotonic() - started:.0f} s; results.json, configs and logs in {ctx.workdir}"
            + ("" if args.keep else " (removed at exit; --keep keeps them)"))
        return 0
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        for proc in list(STARTED_ASYNC):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        stop_all()
        if hasattr(ctx, "start_times"):
            (b0, t0), own0 = ctx.start_times
            b1, t1 = cpu_times()
            own = sum(os.times()[:4]) - own0
            other = max(0.0, (b1 - b0) - own)
            say(f"CPU used by programs outside this benchmark during the run: {other:.0f} s "
                f"({other / max(1e-9, t1 - t0):.0%} of the machine)"
                + ("  <-- WARNING: results are noisy" if other / max(1e-9, t1 - t0) > 0.05 else ""))
        if not args.keep:
            shutil.rmtree(ctx.workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
