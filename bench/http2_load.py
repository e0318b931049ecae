#!/usr/bin/env python3
"""HTTP/2 keep-alive requests per core: ingressd against nginx ``http2``, side by side, with h2load.

    python3 bench/http2_load.py [--quick] [--rounds N] [--seconds S] [--baseline DIR] [--profile] [--keep]

Use ``bash bench/run.sh --h2`` to install what it needs first (nginx-light, nghttp2-client's h2load,
taskset). The layout is bench/bench.py's: ingressd (``--workers 1``) and nginx (``worker_processes 1``,
ingress-nginx's settings, ``listen ... ssl http2``; ``http2 on`` from nginx 1.25.1) pinned to core 0;
the upstream (nginx, ``return 200 "hello world\\n"``: 12-byte responses) and h2load on core 1.
The load is h2load's ``-c 10 -m 10``: 100 concurrent streams over 10 TLS connections, all kept alive.
Rounds alternate the proxies (A B A B ...), each measured with the others paused (SIGSTOP), and the
median is compared: the target is ingressd >= 0.5x nginx. ``--baseline DIR`` adds another source tree's
ingressd (``git archive`` of an older commit) to the same rounds, for before/after numbers;
``--profile`` then runs ingressd under cProfile (bench/profile_serve.py) with the same load and prints
the functions that cost the most.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench as b  # bench/bench.py: processes, pinning, certificates, manifests, the upstream

H2LOAD_CONNECTIONS, H2LOAD_STREAMS = 10, 10
REQUESTS_PER_CONNECTION = 100_000_000  # keepalive_requests / keep-alive-requests (default 1000: GOAWAY after it)


def h2load(port: int, seconds: float, cpu_pid: int | None = None, connections: int = H2LOAD_CONNECTIONS,
           streams: int = H2LOAD_STREAMS, warmup: int = 1) -> dict:
    """One h2load run on core 1 against https://127.0.0.1:PORT/ (Host bench.localhost): req/s, the
    requests that did not succeed, and the proxy's CPU per request."""
    cmd = ["h2load", "-c", str(connections), "-m", str(streams), "-t", "1", "-D", f"{seconds:g}",
           "--warm-up-time", str(warmup), "-H", f":authority: {b.HOST}", f"https://127.0.0.1:{port}/"]
    if b.PIN:
        cmd = ["taskset", "-c", b.LOAD_CORE] + cmd
    cpu0 = b.cpu_seconds(cpu_pid) if cpu_pid else None
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60).stdout
    cpu1 = b.cpu_seconds(cpu_pid) if cpu_pid else None
    return parse_h2load(out, None if cpu_pid is None else cpu1 - cpu0)


def parse_h2load(out: str, cpu: float | None = None) -> dict:
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", out)
    status = re.search(r"status codes: (\d+) 2xx", out)
    done = int(counts.group(3)) if counts else 0
    ok = int(status.group(1)) if status else 0
    errors = sum(int(counts.group(i)) for i in (5, 6, 7)) if counts else 0  # failed, errored, timeout
    return {"rps": float(rate.group(1)) if rate else 0.0, "done": done,
            "failed": max(errors, done - ok),
            "cpu_us": cpu / done * 1e6 if cpu is not None and done else None, "raw": out}


def nginx_h2_conf(ctx, name: str, http_port: int, https_port: int) -> Path:
    """bench.py's nginx (ingress-nginx's configuration) with HTTP/2 on its TLS listener."""
    conf = b.nginx_conf(ctx, name, http_port, https_port, access_log=False)
    text = conf.read_text()
    version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    modern = match is not None and tuple(map(int, match.groups())) >= (1, 25, 1)
    listen = f"listen 127.0.0.1:{https_port} default_server reuseport backlog=4096 ssl;"
    assert listen in text
    text = text.replace(listen, listen + "\n    http2 on;" if modern else listen[:-1] + " http2;")
    # h2load does not reconnect when a connection ends: no limit on requests per connection (both proxies)
    text = text.replace("keepalive_requests 1000;", f"keepalive_requests {REQUESTS_PER_CONNECTION};")
    conf.write_text(text)
    return conf


def start_nginx_h2(ctx) -> b.Proxy:
    http_port, https_port = b.free_port(), b.free_port()
    conf = nginx_h2_conf(ctx, "nginx-h2", http_port, https_port)
    proc = b.Proc("nginx-h2", ["nginx", "-c", str(conf), "-e", str(ctx.workdir / "nginx-h2.error.log")],
                  ctx.workdir, b.PROXY_CORE, stdout=subprocess.DEVNULL)
    b.wait_port(https_port, proc)
    return b.Proxy("nginx", "nginx (http2)", http_port, https_port, [proc])


def check_h2(proxy: b.Proxy) -> None:
    """One request with curl: HTTP/2 and the 12-byte body, or the run is meaningless."""
    out = b.curl(["--http2", "-o", "-", "-w", " %{http_version}", "-H", f"Host: {b.HOST}",
                  f"https://127.0.0.1:{proxy.https_port}/"], 20)
    if out != "hello world\n 2":
        raise RuntimeError(f"{proxy.label}: expected an HTTP/2 'hello world', got {out!r}")


def rounds_table(ctx, proxies: list[b.Proxy]) -> dict:
    results = {p.name: [] for p in proxies}
    b.say(f"warm-up {ctx.warmup:g} s per proxy; then {ctx.rounds} rounds of {ctx.seconds:g} s per proxy, alternating "
          f"(h2load -c {H2LOAD_CONNECTIONS} -m {H2LOAD_STREAMS}: {H2LOAD_CONNECTIONS * H2LOAD_STREAMS} streams)")
    for p in proxies:
        b.focus(p)
        h2load(p.https_port, ctx.warmup, warmup=0)
    for _ in range(ctx.rounds):
        for p in proxies:
            b.focus(p)
            result = h2load(p.https_port, ctx.seconds, cpu_pid=p.pid)
            if not result["rps"]:
                b.say(f"  note: h2load against {p.label} measured nothing:\n{result['raw'][-600:]}")
            results[p.name].append(result)
    b.focus(*proxies)
    reference = b.median([r["rps"] for r in results["nginx"]])
    rows = []
    for p in proxies:
        runs = results[p.name]
        rate = b.median([r["rps"] for r in runs])
        rows.append([p.label, b.fmt_rate(rate), " ".join(b.fmt_rate(r["rps"]) for r in runs),
                     b.fmt_ratio(rate / reference if rate and reference else None),
                     f"{b.median([r['cpu_us'] for r in runs]) or 0:.0f}", str(sum(r["failed"] for r in runs))])
    b.table(rows, ["proxy", "median req/s", "rounds", "vs nginx", "CPU us/req", "failed"])
    return {name: b.median([r["rps"] for r in runs]) for name, runs in results.items()}


def profile(ctx, manifests: Path) -> None:
    """ingressd under cProfile with the same load: the functions with the most own time."""
    out = ctx.workdir / "ingressd-h2.prof"
    proxy = b.start_ingressd(ctx, "ingressd-profiled", manifests, access_log=False, profile_out=out)
    try:
        b.focus(proxy)
        h2load(proxy.https_port, ctx.warmup, warmup=0)
        os.kill(proxy.pid, signal.SIGUSR1)
        result = h2load(proxy.https_port, ctx.seconds)
    finally:
        proxy.stop()
    b.say(f"under cProfile: {b.fmt_rate(result['rps'])} req/s (the profiler slows it down)")
    stats = pstats.Stats(str(out))
    total = stats.total_tt or 1.0
    requests = max(1, result["done"])
    rows = []
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:ctx.top]
    for (path, line, function), (_, calls, own, cumulative, _) in entries:
        where = f"{Path(path).name}:{line}({function})" if line else function
        rows.append([where[:70], f"{own / total * 100:.1f}", f"{cumulative / total * 100:.1f}",
                     f"{calls / requests:.2f}"])
    b.table(rows, ["function", "own %", "cum %", "calls/req"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the ingressd of another source tree (e.g. `git archive` of an older commit)")
    parser.add_argument("--profile", action="store_true", help="then profile ingressd under the same load")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    for tool in ("nginx", "h2load", "curl", "taskset"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            b.say(f"missing {tool}: run `bash bench/run.sh --h2`, which installs it")
            return 2
    ctx = b.Context()
    ctx.rounds, ctx.seconds = (3, 2.0) if args.quick else (args.rounds, args.seconds)
    ctx.warmup = 1.0
    ctx.top = args.top
    b.prepare_machine()
    ctx.workdir = Path(tempfile.mkdtemp(prefix="ingressd-bench-h2-"))
    os.chmod(ctx.workdir, 0o755)
    ctx.ports = {"upstream": b.free_port(), "sink": b.free_port(), "wsecho": b.free_port()}
    ctx.cert, ctx.key, _ = b.make_certificate(ctx.workdir)
    b.section("HTTP/2 keep-alive requests per core: ingressd vs nginx http2 (h2load)")
    b.say(f"{time.strftime('%Y-%m-%d %H:%M:%S')}; load average before: {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; work directory {ctx.workdir}")
    try:
        b.start_upstream(ctx)
        manifests = ctx.workdir / "manifests"
        b.bench_manifests(manifests, ctx.cert, ctx.key, ctx.ports)
        b.write_yaml(manifests / "configmap.yaml", [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
            "data": {"keep-alive-requests": str(REQUESTS_PER_CONNECTION)}}])
        proxies = [b.start_ingressd(ctx, "ingressd", manifests, access_log=False), start_nginx_h2(ctx)]
        if args.baseline is not None:
            proxies.insert(1, b.start_ingressd(ctx, "baseline", manifests, access_log=False,
                                               tree=args.baseline.resolve(), label=f"ingressd ({args.baseline.name})"))
        for p in proxies:
            check_h2(p)
        rates = rounds_table(ctx, proxies)
        ratio = rates["ingressd"] / rates["nginx"] if rates.get("ingressd") and rates.get("nginx") else None
        b.say("")
        b.say(f"target: ingressd >= 0.5x nginx http2: {b.fmt_ratio(ratio)}x "
              f"{'PASS' if ratio is not None and ratio >= 0.5 else 'MISS'}")
        if args.baseline is not None and rates.get("baseline"):
            b.say(f"ingressd / baseline: {rates['ingressd'] / rates['baseline']:.2f}x")
        b.say(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        if args.profile:
            for p in list(proxies):
                p.stop()
            b.section("ingressd under cProfile, same load")
            profile(ctx, manifests)
    finally:
        b.stop_all()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(ctx.workdir)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
