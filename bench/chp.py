#!/usr/bin/env python3
"""ingressd's CHP mode (``python -m ingressd chp``) against the real configurable-http-proxy (Node.js).

    python3 bench/chp.py [--quick] [--requests N] [--keep]

Use ``bash bench/run.sh --chp`` to install what it needs first (nginx-light, wrk, configurable-http-proxy
from npm under ~/.cache/ingressd-bench/npm; the real CHP is only ever taken from there, never from PATH,
where ingressd installs a ``configurable-http-proxy`` alias of its own).

Layout (2 cores): each proxy is one process pinned to core 0; the upstream (nginx, ``return 200 "hello
world\\n"``, started as bench/bench.py starts it), wrk and this script (the REST API client) on core 1.
During each measurement the other proxy is paused (SIGSTOP). Both proxies get the same 1,000 routes over
their REST API (``POST /api/routes/user/u{i}`` -> the upstream, token from CONFIGPROXY_AUTH_TOKEN).

a) Throughput: wrk -t1 -c32, HTTP keep-alive, requests spread round-robin over /user/u0/ .. /user/u999/;
   median req/s of a few alternating rounds, and the ratio ingressd/CHP against the goal >= 5x.
b) Leak: per proxy, a warm-up then N requests (1,000,000; --requests) in one wrk run while a thread changes
   the routes 10 times per second (each change: POST /user/churn{n}, DELETE /user/churn{n-1}); VmRSS is
   sampled after the warm-up, every 100,000 requests (N/10 when N < 1,000,000) and at the end. Goal "flat":
   ingressd's growth from the post-warm-up sample to the end < 10 MB.
Every process started here is stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: processes, pinning, wrk, the upstream)
from bench import LOAD_CORE, PROXY_CORE, REPO, Proc, Proxy, say, section, table  # noqa: E402

TOKEN = "chp-bench-token"
ROUTES = 1000
CONNS = 32
THROUGHPUT_GOAL = 5.0  # ingressd/CHP req/s
GROWTH_GOAL_MB = 10.0  # ingressd's RSS growth after warm-up
CHURN_PER_SECOND = 10


# --- the REST API -------------------------------------------------------------------------------------

class Api:
    """A keep-alive client of one proxy's REST API (CHP's: Authorization: token ...)."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"token {TOKEN}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # once more on a fresh connection if the kept-alive one was closed
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                if response.will_close:
                    self.close()
                return response.status, payload
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def add(self, path: str, target: str) -> int:
        return self.call("POST", f"/api/routes{path}", {"target": target})[0]

    def delete(self, path: str) -> int:
        return self.call("DELETE", f"/api/routes{path}")[0]

    def routes(self) -> dict:
        status, payload = self.call("GET", "/api/routes")
        if status != 200:
            raise RuntimeError(f"GET /api/routes: {status} {payload[:200]!r}")
        return json.loads(payload)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- the two proxies ----------------------------------------------------------------------------------

def start_proxy(ctx, name: str) -> Proxy:
    port, api_port = bench.free_port(), bench.free_port()
    flags = ["--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1", "--api-port", str(api_port),
             "--log-level", "error"]
    env = bench.child_env(CONFIGPROXY_AUTH_TOKEN=TOKEN)
    if name == "chp":
        proc = Proc("chp", [ctx.chp] + flags, ctx.workdir, PROXY_CORE, env=env)
        label = f"configurable-http-proxy {ctx.chp_version}"
    else:
        proc = Proc("ingressd-chp", [sys.executable, "-m", "ingressd", "chp"] + flags, ctx.workdir, PROXY_CORE,
                    env=env, cwd=REPO)
        label = "ingressd chp"
    bench.wait_port(port, proc)
    bench.wait_port(api_port, proc)
    proxy = Proxy(name, label, port, port, [proc], reference="chp", streaming=False)
    proxy.api = Api(api_port)
    return proxy


def add_routes(ctx, proxy: Proxy) -> float:
    """The 1,000 routes, one POST each over one keep-alive connection; returns the seconds it took."""
    bench.focus(proxy)
    started = time.monotonic()
    for i in range(ROUTES):
        status = proxy.api.add(f"/user/u{i}", ctx.target)
        if status != 201:
            raise RuntimeError(f"{proxy.label}: POST /api/routes/user/u{i} answered {status}")
    took = time.monotonic() - started
    count = len(proxy.api.routes())
    if count != ROUTES:
        raise RuntimeError(f"{proxy.label}: GET /api/routes lists {count} routes, not {ROUTES}")
    return took


def sanity(proxy: Proxy) -> str | None:
    """None if /user/u0/ and /user/u999/x answer 200 "hello world" through the proxy, else what is wrong."""
    for path in ("/user/u0/", f"/user/u{ROUTES - 1}/x?y=1"):
        out = bench.curl(["-o", "-", "-w", "\n%{http_code}", f"http://127.0.0.1:{proxy.http_port}{path}"], timeout=10)
        body, _, code = out.rpartition("\n")
        if code != "200" or body.strip() != "hello world":
            return f"{path}: status {code!r}, body {body[:80]!r}"
    return None


# --- wrk scripts --------------------------------------------------------------------------------------

SPREAD_LUA = """-- round-robin over /user/u0/ .. /user/u{last}/ (requests built once, in init)
local reqs, n, i = {{}}, {routes}, 0
function init(args)
  for k = 0, n - 1 do reqs[k + 1] = wrk.format(nil, "/user/u" .. k .. "/") end
end
function request()
  i = i % n + 1
  return reqs[i]
end
"""

PROGRESS_LUA = SPREAD_LUA + """
-- a progress line every 1,000 responses (this script's reader stops wrk with SIGINT)
local done, bad = 0, 0
function response(status, headers, body)
  done = done + 1
  if status ~= 200 then bad = bad + 1 end
  if done % 1000 == 0 then
    io.write("progress ", done, " ", bad, "\\n")
    io.flush()
  end
end
"""


parse_wrk = bench.parse_wrk


def proxy_core_times() -> tuple[float, float] | None:
    return bench.cpu_times(int(PROXY_CORE)) if bench.PIN else None


def other_load(start: tuple[float, float] | None, used: float) -> float | None:
    """Share of the proxy's core that something other than the proxy (``used`` CPU seconds) took since ``start``."""
    if start is None:
        return None
    busy, total = bench.cpu_times(int(PROXY_CORE))
    return max(0.0, (busy - start[0]) - used) / max(1e-9, total - start[1])


# --- a) throughput --------------------------------------------------------------------------------------

def throughput(ctx, proxies: list[Proxy]) -> dict:
    say(f"wrk -t1 -c{CONNS}, HTTP keep-alive, paths round-robin over the {ROUTES} routes; warm-up 1 s per proxy, "
        f"then {ctx.rounds} rounds of {ctx.seconds} s per proxy, alternating")
    for p in proxies:
        bench.focus(p)
        bench.wrk(f"http://127.0.0.1:{p.http_port}/", 1, CONNS, script=ctx.spread_lua)
    runs = {p.name: [] for p in proxies}
    for r in range(ctx.rounds):
        for p in proxies:
            bench.focus(p)
            cpu0 = p.cpu()
            core0 = proxy_core_times()
            res = bench.wrk(f"http://127.0.0.1:{p.http_port}/", ctx.seconds, CONNS, script=ctx.spread_lua)
            used = p.cpu() - cpu0
            if res.requests:
                res.cpu_us = used / res.requests * 1e6
            res.other = other_load(core0, used)
            runs[p.name].append(res)
            if res.error_count:
                ctx.anomalies.append(f"{p.label}, throughput round {r + 1}: wrk errors {res.errors}")
            if not p.alive():
                raise RuntimeError(f"{p.label} died during the throughput rounds:\n{p.procs[0].tail()}")
    medians = {name: statistics.median(r.rps for r in rs) for name, rs in runs.items()}
    rows = []
    for p in proxies:
        rs = runs[p.name]
        rows.append([p.label, bench.fmt_rate(medians[p.name]), " ".join(bench.fmt_rate(r.rps) for r in rs),
                     f"{statistics.median(r.cpu_us for r in rs if r.cpu_us):.1f}",
                     bench.fmt_ms(statistics.median(r.latency.get('50', 0) for r in rs)) + "/"
                     + bench.fmt_ms(statistics.median(r.latency.get('99', 0) for r in rs)),
                     str(sum(r.error_count for r in rs)),
                     "-" if rs[0].other is None else f"{100 * max(r.other for r in rs):.0f}%"])
    say("(CPU us/req = the proxy's user+system time per request; other load = the most CPU other programs took "
        "on the proxy's core in a round)")
    say("")
    table(rows, ["proxy", "median req/s", "rounds", "CPU us/req", "p50/p99 ms", "errors", "other load"])
    ratio = medians["ingressd"] / medians["chp"] if medians.get("chp") else None
    cpu = {name: statistics.median(r.cpu_us for r in rs if r.cpu_us) for name, rs in runs.items()}
    cpu_ratio = cpu["chp"] / cpu["ingressd"] if cpu.get("ingressd") else None
    say("")
    say(f"ingressd/CHP throughput ratio: {bench.fmt_ratio(ratio)}x  (goal >= {THROUGHPUT_GOAL:g}x: "
        f"{'PASS' if ratio is not None and ratio >= THROUGHPUT_GOAL else 'MISS'})")
    say(f"CPU time per request, CHP/ingressd: {bench.fmt_ratio(cpu_ratio)}x")
    return {"medians": medians, "ratio": ratio, "cpu_us": cpu, "cpu_ratio": cpu_ratio}


# --- b) leak under route churn -----------------------------------------------------------------------------

class Churn(threading.Thread):
    """Changes the routes CHURN_PER_SECOND times a second: POST /user/churn{n}, DELETE /user/churn{n-1}."""

    def __init__(self, ctx, proxy: Proxy):
        super().__init__(daemon=True)
        self.target = ctx.target
        self.api = Api(proxy.api.port)
        self.stop_event = threading.Event()
        self.changes = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []  # seconds per change (both calls)
        self.late = 0  # ticks started more than one period late

    def run(self) -> None:
        period = 1.0 / CHURN_PER_SECOND
        start = time.monotonic()
        n = 0
        while not self.stop_event.is_set():
            due = start + n * period
            now = time.monotonic()
            if now < due:
                if self.stop_event.wait(due - now):
                    break
            elif now - due > period:
                self.late += 1
            t0 = time.monotonic()
            try:
                status = self.api.add(f"/user/churn{n}", self.target)
                if status != 201:
                    self.failures.append(f"POST churn{n}: {status}")
                if n > 0:
                    status = self.api.delete(f"/user/churn{n - 1}")
                    if status != 204:
                        self.failures.append(f"DELETE churn{n - 1}: {status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"change {n}: {error}")
            self.latencies.append(time.monotonic() - t0)
            self.changes += 1
            n += 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)
        self.api.close()


def leak(ctx, proxy: Proxy) -> dict:
    bench.focus(proxy)
    warmup, total, every = ctx.leak_warmup, ctx.leak_requests, ctx.sample_every
    cmd = ["wrk", "-t1", f"-c{CONNS}", "-d3600s", "-s", str(ctx.progress_lua), f"http://127.0.0.1:{proxy.http_port}/"]
    if bench.PIN:
        cmd = ["taskset", "-c", LOAD_CORE] + cmd
    churn = Churn(ctx, proxy)
    cpu0, core0 = proxy.cpu(), proxy_core_times()
    churn.start()
    wrk_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    lines: queue.Queue = queue.Queue()
    other: list[str] = []

    def reader():
        for line in wrk_proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    samples: list[tuple[int, int]] = []  # (requests after the warm-up, VmRSS kB)
    bad = 0
    next_sample = 0
    started = time.monotonic()
    measured_from = None
    try:
        while True:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                raise RuntimeError(f"{proxy.label}: no progress from wrk for 30 s\n{proxy.procs[0].tail()}") from None
            if line is None:
                raise RuntimeError(f"{proxy.label}: wrk ended early:\n{''.join(other)[-1500:]}")
            if not line.startswith("progress "):
                other.append(line)
                continue
            done, bad = (int(x) for x in line.split()[1:3])
            after = done - warmup
            if after >= next_sample:
                if measured_from is None:
                    measured_from = (time.monotonic(), done)
                samples.append((min(after, total), bench.rss_kb(proxy.pid)))
                next_sample = min(next_sample + every, total) if after < total else total + 1
                if after >= total:
                    break
            if not proxy.alive():
                raise RuntimeError(f"{proxy.label} died during the leak run:\n{proxy.procs[0].tail()}")
    finally:
        if wrk_proc.poll() is None:
            wrk_proc.send_signal(signal.SIGINT)  # wrk prints its summary and exits
        try:
            wrk_proc.wait(15)
        except subprocess.TimeoutExpired:
            wrk_proc.kill()
            wrk_proc.wait(5)
        churn.stop()
    other_share = other_load(core0, proxy.cpu() - cpu0)
    elapsed = time.monotonic() - measured_from[0]
    while True:
        line = lines.get(timeout=10)
        if line is None:
            break
        if not line.startswith("progress "):
            other.append(line)
    result = parse_wrk("".join(other))
    routes = proxy.api.routes()
    churn_left = sorted(k for k in routes if k.startswith("/user/churn"))
    # leave the proxy with its 1,000 routes only
    for key in churn_left:
        proxy.api.delete(key)
    start_kb, end_kb = samples[0][1], samples[-1][1]
    slope = None  # least-squares MB per 100,000 requests over the samples: a leak grows linearly, GC saw-teeth do not
    if len(samples) > 2:
        xs, ys = [n / 1e5 for n, _ in samples], [kb / 1024 for _, kb in samples]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None
    return {"samples": samples, "growth_mb": (end_kb - start_kb) / 1024, "max_mb": max(kb for _, kb in samples) / 1024,
            "start_mb": start_kb / 1024, "end_mb": end_kb / 1024, "requests": result.requests, "errors": result.errors,
            "bad_status": bad, "rate": (samples[-1][0] - samples[0][0]) / elapsed if elapsed > 0 else 0.0,
            "changes": churn.changes, "churn_failures": churn.failures, "late": churn.late,
            "churn_p50_ms": 1000 * statistics.median(churn.latencies) if churn.latencies else None,
            "churn_max_ms": 1000 * max(churn.latencies) if churn.latencies else None,
            "churn_rate": churn.changes / (time.monotonic() - started), "routes_after": len(routes),
            "churn_left": churn_left, "seconds": elapsed, "other": other_share, "slope": slope}


def print_leak(ctx, proxy: Proxy, r: dict) -> None:
    say("")
    say(f"{proxy.label}: {r['samples'][-1][0]:,} requests after a {ctx.leak_warmup:,}-request warm-up, "
        f"{r['seconds']:.0f} s at {r['rate']:,.0f} req/s; wrk counted {r['requests']:,} requests in all, "
        f"errors {r['errors'] or 'none'}, non-200 {r['bad_status']}"
        + ("" if r["other"] is None else f"; other programs took {r['other']:.0%} of the proxy's core"))
    say(f"  route changes: {r['changes']} ({r['churn_rate']:.1f}/s; each a POST and a DELETE; API time per change "
        f"p50 {bench.fmt_ms(r['churn_p50_ms'])} ms, max {bench.fmt_ms(r['churn_max_ms'])} ms; late ticks {r['late']}; "
        f"failures {len(r['churn_failures'])}{': ' + '; '.join(r['churn_failures'][:3]) if r['churn_failures'] else ''})")
    say(f"  routes listed at the end: {r['routes_after']} ({ROUTES} + {', '.join(r['churn_left']) or 'no churn route'})")
    say("  VmRSS MB by requests after warm-up: "
        + ", ".join(f"{n // 1000}k {kb / 1024:.1f}" for n, kb in r["samples"]))
    verdict = ""
    if proxy.name == "ingressd":
        verdict = (f"  (goal flat = growth < {GROWTH_GOAL_MB:g} MB after warm-up: "
                   f"{'PASS' if r['growth_mb'] < GROWTH_GOAL_MB else 'MISS'})")
    say(f"  growth: {r['growth_mb']:+.1f} MB ({r['start_mb']:.1f} -> {r['end_mb']:.1f} MB; max {r['max_mb']:.1f} MB; "
        f"trend {'-' if r['slope'] is None else format(r['slope'], '+.2f')} MB per 100k requests)" + verdict)


# --- main -----------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short throughput rounds and 200,000 requests per leak run (about 3 minutes)")
    parser.add_argument("--requests", type=int, metavar="N",
                        help="requests per proxy in the leak run (default 1,000,000; 200,000 with --quick)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds per proxy (default 3)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,leak")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for other programs to use under 10%% of a core")
    args = parser.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    ctx = bench.Context()
    ctx.anomalies = []
    ctx.rounds = max(1, args.rounds)
    ctx.seconds = 2 if args.quick else 5
    ctx.leak_requests = args.requests or (200_000 if args.quick else 1_000_000)
    if ctx.leak_requests < 1000:
        parser.error("--requests: at least 1000")
    ctx.sample_every = 100_000 if ctx.leak_requests >= 1_000_000 else max(1000, ctx.leak_requests // 10 // 1000 * 1000)
    ctx.leak_warmup = min(100_000, max(1000, ctx.leak_requests // 10 // 1000 * 1000))

    for tool in ("nginx", "wrk", "curl", "taskset", "node"):
        if shutil.which(tool) is None:
            say(f"missing {tool}: run `bash bench/run.sh --chp`, which installs it")
            return 2
    ctx.chp, problem = bench.find_chp()
    if ctx.chp is None:
        say(f"configurable-http-proxy: {problem}; run `bash bench/run.sh --chp`, which installs it")
        return 2
    package = Path(ctx.chp).resolve().parents[1] / "package.json"
    ctx.chp_version = json.loads(package.read_text()).get("version", "?") if package.exists() else "?"
    cpus = os.cpu_count() or 1
    bench.prepare_machine()
    ctx.workdir = Path(tempfile.mkdtemp(prefix="ingressd-chpbench-"))
    os.chmod(ctx.workdir, 0o755)
    ctx.ports = {"upstream": bench.free_port()}
    ctx.target = f"http://127.0.0.1:{ctx.ports['upstream']}"
    ctx.spread_lua = ctx.workdir / "spread.lua"
    ctx.spread_lua.write_text(SPREAD_LUA.format(routes=ROUTES, last=ROUTES - 1))
    ctx.progress_lua = ctx.workdir / "progress.lua"
    ctx.progress_lua.write_text(PROGRESS_LUA.format(routes=ROUTES, last=ROUTES - 1))

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    import ingressd
    versions = {"python": sys.version.split()[0], "ingressd": ingressd.__version__,
                "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
                "configurable-http-proxy": ctx.chp_version}
    try:
        import uvloop
        versions["uvloop"] = uvloop.__version__
    except ImportError:
        pass
    section("ingressd chp against configurable-http-proxy" + (" (--quick)" if args.quick else ""))
    say(f"{datetime.datetime.now().isoformat(timespec='seconds')}; {cpus} CPUs; "
        + " ".join(f"{k} {v}" for k, v in versions.items()))
    say(f"CHP: {ctx.chp}; ingressd: `python -m ingressd chp` from {REPO}")
    say(f"layout: each proxy one process pinned to core {PROXY_CORE}; upstream nginx, wrk and the API client pinned "
        f"to core {LOAD_CORE}; the proxy not under test is paused (SIGSTOP)" if bench.PIN
        else "layout: only one CPU, nothing pinned")
    say(f"work directory: {ctx.workdir}")
    deadline = time.monotonic() + args.wait_quiet
    while True:  # what other programs use, measured over one second (this script's own CPU excluded)
        busy0, total0 = bench.cpu_times()
        own0 = sum(os.times()[:4])
        time.sleep(1.0)
        busy1, total1 = bench.cpu_times()
        own = sum(os.times()[:4]) - own0
        background = max(0.0, busy1 - busy0 - own) / max(1e-9, total1 - total0) * cpus
        if background <= 0.1 or time.monotonic() >= deadline:
            break
    say(f"other programs used {background:.0%} of one core in the second before the start"
        + ("  <-- WARNING: this machine is busy, results will be noisy" if background > 0.1 else ""))
    status = 0
    try:
        bench.start_upstream(ctx)
        proxies = [start_proxy(ctx, "ingressd"), start_proxy(ctx, "chp")]
        for p in proxies:
            took = add_routes(ctx, p)
            say(f"{p.label} (pid {p.pid}): {ROUTES} routes added over the REST API in {took:.2f} s "
                f"({took / ROUTES * 1000:.2f} ms per POST); VmRSS {bench.rss_kb(p.pid) / 1024:.1f} MB")
        for p in proxies:
            bench.focus(p)
            problem = sanity(p)
            if problem:
                raise RuntimeError(f"{p.label} does not answer as expected: {problem}\n{p.procs[0].tail()}")
        results = {}
        if "throughput" not in skip:
            section(f"a) Throughput: {ROUTES} routes, HTTP keep-alive, 12-byte responses")
            results["throughput"] = throughput(ctx, proxies)
        if "leak" not in skip:
            section(f"b) Leak: {ctx.leak_requests:,} requests per proxy while the routes change "
                    f"{CHURN_PER_SECOND} times a second")
            say(f"wrk -t1 -c{CONNS} keep-alive over the {ROUTES} routes; warm-up {ctx.leak_warmup:,} requests, then VmRSS "
                f"every {ctx.sample_every:,} requests and at the end")
            results["leak"] = {}
            for p in proxies:
                r = leak(ctx, p)
                results["leak"][p.name] = r
                print_leak(ctx, p, r)
        section("Summary")
        if "throughput" in results:
            t = results["throughput"]
            say(f"throughput: ingressd {bench.fmt_rate(t['medians']['ingressd'])} req/s, CHP "
                f"{bench.fmt_rate(t['medians']['chp'])} req/s, ratio {bench.fmt_ratio(t['ratio'])}x "
                f"(goal >= {THROUGHPUT_GOAL:g}x: {'PASS' if t['ratio'] and t['ratio'] >= THROUGHPUT_GOAL else 'MISS'}); "
                f"CPU per request {t['cpu_us']['ingressd']:.1f} vs {t['cpu_us']['chp']:.1f} us "
                f"({bench.fmt_ratio(t['cpu_ratio'])}x)")
        if "leak" in results:
            for name, r in results["leak"].items():
                verdict = ""
                if name == "ingressd":
                    verdict = (f" (goal < {GROWTH_GOAL_MB:g} MB: "
                               f"{'PASS' if r['growth_mb'] < GROWTH_GOAL_MB else 'MISS'})")
                say(f"RSS growth over {r['samples'][-1][0]:,} requests with route churn: "
                    f"{'ingressd' if name == 'ingressd' else 'CHP'} {r['growth_mb']:+.1f} MB "
                    f"(trend {'-' if r['slope'] is None else format(r['slope'], '+.2f')} MB per 100k){verdict}")
        for a in ctx.anomalies:
            say(f"  anomaly: {a}")
    except KeyboardInterrupt:
        say("interrupted")
        status = 130
    except Exception as error:
        say(f"failed: {error}")
        status = 1
    finally:
        bench.focus(*bench.ALL_PROXIES)
        bench.stop_all()
        if args.keep or status:
            say(f"work directory kept: {ctx.workdir}")
        else:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
