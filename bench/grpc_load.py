#!/usr/bin/env python3
"""gRPC unary calls per core: ingressd (``backend-protocol: GRPC``) against nginx ``grpc_pass``, side by side.

Both proxies are pinned to core 0 with one worker process and proxy TLS (ALPN h2) from h2load to the
same upstream over cleartext HTTP/2: nginx itself faking a gRPC server (``listen ... http2``, a
5-byte-framed message as the answer of ``return 200`` with ``add_trailer grpc-status 0``), pinned to core 1 with the load
generator, so that the upstream is never the bottleneck. The load is h2load (Debian nghttp2-client)
sending length-prefixed messages with ``content-type: application/grpc`` and ``te: trailers``:
``-c 10 -m 10`` (100 calls in flight over 10 connections). Rounds alternate between the proxies and
the best round of each counts. "Per core" is calls per CPU-second of the proxy process: on a shared
machine, other processes on core 0 slow the wall-clock rate of a proxy that needs the whole core
(ingressd) more than one that does not (nginx); both are printed, with the load average.

A run is valid only when the calls really succeed as gRPC calls: every h2load request is a 2xx with
the upstream's message as its DATA (ingressd's own failure answers are trailers-only 200s with no
DATA, so they would show up as missing bytes), and one grpcio call through each proxy returns OK with
the upstream's message.

    python bench/grpc_load.py [--seconds 8] [--rounds 3] [--quick]     (or: bash bench/run.sh --grpc)

Target (issue 13): ingressd >= 0.5x nginx. Prints PASS or MISS; exit status 0 either way, 2 when a
run is invalid.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench/bench.py: processes, pinning, ports, the certificate)
from bench import LOAD_CORE, PROXY_CORE, Proc, say, section, table  # noqa: E402

TARGET = 0.5
MESSAGE = b"hello"  # the upstream's answer
REQUEST = b"world"
PATH = "/bench.Echo/Unary"


def framed(message: bytes) -> bytes:
    """A gRPC length-prefixed message (not compressed)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def upstream_conf(workdir: Path, port: int) -> Path:
    """nginx as a minimal gRPC server: the answer's bytes are written into ``return`` raw (nginx takes
    any byte but quote, backslash and ``$`` in a quoted string), so the response head is only what a
    gRPC server sends (:status, content-type, and server, date, content-length) and the trailer."""
    answer = framed(MESSAGE)
    assert not set(answer) & set(b'"\\$'), answer
    conf = workdir / "upstream.conf"
    conf.write_bytes(f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/upstream.pid;
error_log {workdir}/upstream.error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/upstream-body;
  server {{
    listen 127.0.0.1:{port} http2;
    http2_max_concurrent_streams 1000;
    keepalive_requests 100000000;
    server_tokens off;
    location / {{
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      return 200 "ANSWER";
    }}
  }}
}}
""".encode().replace(b"ANSWER", answer))
    return conf


def nginx_conf(workdir: Path, port: int, upstream_port: int, cert: Path, key: Path) -> Path:
    conf = workdir / "nginx-grpc.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx-grpc.pid;
error_log {workdir}/nginx-grpc.error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/nginx-body;
  upstream grpc_upstream {{
    server 127.0.0.1:{upstream_port};
    keepalive 320;            # ingress-nginx's upstream-keepalive-connections
    keepalive_requests 10000;
  }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 128;
    keepalive_requests 100000000;
    location / {{
      grpc_pass grpc://grpc_upstream;
      grpc_connect_timeout 5s;
      grpc_send_timeout 60s;
      grpc_read_timeout 60s;
    }}
  }}
}}
""")
    return conf


def manifests(directory: Path, cert: Path, key: Path, upstream_port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    docs = [bench.secret_doc("bench", "bench-tls", cert, key), *bench.service_docs("bench", "grpc", upstream_port)]
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                 "metadata": {"name": "grpc", "namespace": "bench", "annotations": {
                     "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
                     "nginx.ingress.kubernetes.io/ssl-redirect": "false"}},
                 "spec": {"ingressClassName": "ingressd", "rules": [{"http": {"paths": [
                     {"path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "grpc", "port": {"number": 80}}}}]}}]}})
    # as nginx's keepalive_requests below: h2load does not reconnect after a GOAWAY
    docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                 "data": {"keep-alive-requests": "100000000"}})
    bench.write_yaml(directory / "grpc.yaml", docs)
    return directory


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_TRAFFIC = re.compile(r"traffic: .*?, .*? headers .*?, [\d.]+\w*B \((\d+)\) data")


def h2load(port: int, seconds: float, body: Path, warmup: float) -> dict:
    cmd = ["h2load", "-D", f"{seconds:g}", "--warm-up-time", f"{warmup:g}", "-c", "10", "-m", "10", "-t", "1",
           "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"https://127.0.0.1:{port}{PATH}"]
    if bench.PIN:
        cmd = ["taskset", "-c", LOAD_CORE] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60).stdout
    finished, requests, status, traffic = (p.search(out) for p in (_FINISHED, _REQUESTS, _STATUS, _TRAFFIC))
    if not (finished and requests and status and traffic):
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    done, succeeded = int(requests.group(3)), int(requests.group(4))
    return {"rate": float(finished.group(3)), "done": done, "succeeded": succeeded,
            "errors": done - succeeded + sum(int(x) for x in requests.group(5, 6, 7)),
            "ok_status": int(status.group(1)), "data": int(traffic.group(1))}


def import_grpcio():
    """grpcio's ``grpc`` package, or None (it is a test extra)."""
    try:
        import grpc
    except ImportError:
        return None
    return grpc


def grpcio_check(port: int) -> str | None:
    """One real gRPC call through the proxy: None when it is OK with the upstream's message."""
    grpc = import_grpcio()
    if grpc is None:
        return None  # grpcio is a test extra; without it the byte count check stands alone
    credentials = grpc.ssl_channel_credentials(root_certificates=CERT.read_bytes())
    options = [("grpc.ssl_target_name_override", bench.HOST)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        call = channel.unary_unary(PATH, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            answer, info = call.with_call(REQUEST, timeout=10)
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
    if info.code() != grpc.StatusCode.OK or answer != MESSAGE:
        return f"{info.code().name}, answer {answer!r}"
    return None


CERT = Path()


def main() -> int:
    global CERT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 4 seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.warmup = 4.0, 2, 1.0
    for tool in ("nginx", "h2load", "taskset"):
        if shutil.which(tool) is None:
            say(f"grpc_load.py: {tool} not found (bash bench/run.sh --grpc installs it)")
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="ingressd-grpc-bench-"))
    ctx = types.SimpleNamespace(workdir=workdir)
    try:
        cert, key, _ = bench.make_certificate(workdir)
        CERT = cert
        body = workdir / "request.bin"
        body.write_bytes(framed(REQUEST))
        upstream_port, nginx_port = bench.free_port(), bench.free_port()
        upstream = Proc("grpc-upstream", ["nginx", "-c", str(upstream_conf(workdir, upstream_port))], workdir,
                        LOAD_CORE, stdout=subprocess.DEVNULL)
        bench.wait_port(upstream_port, upstream)
        nginx = Proc("nginx-grpc", ["nginx", "-c", str(nginx_conf(workdir, nginx_port, upstream_port, cert, key))],
                     workdir, PROXY_CORE, stdout=subprocess.DEVNULL)
        bench.wait_port(nginx_port, nginx)
        ingressd = bench.start_ingressd(ctx, "ingressd-grpc", manifests(workdir / "manifests", cert, key,
                                                                          upstream_port), access_log=False)
        proxies = [("nginx grpc_pass", nginx_port, nginx.pid), ("ingressd", ingressd.https_port, ingressd.pid)]

        section(f"gRPC unary calls per core (h2load -c 10 -m 10, {args.rounds} x {args.seconds:g}s, "
                f"proxies pinned to core {PROXY_CORE}, one worker)")
        invalid = []
        for name, port, _ in proxies:
            problem = grpcio_check(port)
            if problem:
                invalid.append(f"{name}: grpcio call failed: {problem}")
        best = {name: None for name, _, _ in proxies}
        for round_ in range(args.rounds):
            for name, port, pid in proxies:
                cpu = bench.cpu_seconds(pid)
                result = h2load(port, args.seconds, body, args.warmup)
                # calls per CPU-second of the proxy: its calls per core, whatever else the shared machine
                # runs on core 0 meanwhile (the warm-up's calls and CPU are both in, roughly in proportion)
                used = bench.cpu_seconds(pid) - cpu
                result["per_cpu"] = result["done"] * (args.seconds + args.warmup) / args.seconds / used if used else 0.0
                result["cpu"] = used
                frame = len(framed(MESSAGE))
                # nginx grpc_pass itself fails a few calls in 10,000 here ("upstream sent frame for unknown
                # stream" on its keep-alive upstream connections): tolerated up to 1%, shown either way.
                if (result["errors"] > result["done"] / 100 or result["data"] < result["ok_status"] * frame
                        or result["ok_status"] < result["done"] - result["done"] / 100):
                    invalid.append(f"{name} round {round_ + 1}: {result}")
                say(f"  round {round_ + 1} {name:16} {result['rate']:>10,.0f} calls/s, "
                    f"{result['per_cpu']:>10,.0f} calls per CPU-second ({result['cpu']:.1f} s CPU; "
                    f"{result['ok_status']} 2xx, {result['data']} DATA bytes, {result['errors']} errors)")
                if best[name] is None or result["per_cpu"] > best[name]["per_cpu"]:
                    best[name] = result
        load = os.getloadavg()
        reference = best["nginx grpc_pass"]
        table([[name, f"{best[name]['rate']:,.0f}", f"{best[name]['per_cpu']:,.0f}",
                f"{best[name]['rate'] / reference['rate']:.2f}x", f"{best[name]['per_cpu'] / reference['per_cpu']:.2f}x"]
               for name, _, _ in proxies],
              ["proxy", "calls/s", "calls/CPU-s", "vs nginx (wall)", "vs nginx (per core)"])
        ratio = best["ingressd"]["per_cpu"] / reference["per_cpu"] if reference["per_cpu"] else 0.0
        verdict = "PASS" if ratio >= TARGET else "MISS"
        say(f"\ningressd / nginx grpc_pass, calls per core = {ratio:.2f}x (target >= {TARGET}x): {verdict}   "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if invalid:
            say("INVALID RUN:\n  " + "\n  ".join(invalid))
            return 2
        return 0
    finally:
        bench.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"work directory kept: {workdir}")


if __name__ == "__main__":
    sys.exit(main())
