#!/usr/bin/env python3
"""ingressd's own Python work per proxied request, without sockets, syscalls or an event loop.

    python3 bench/request_cost.py [--requests N] [--profile] [--access-log] [--trusted-peer | --chp]

A real ClientConnection and UpstreamConnection (the in-process rig of tests/unit/dataplanekit.py:
fake transports, manual clock) proxy N keep-alive requests like wrk's (GET / with a Host) to an
upstream answering like the benchmark's nginx. It prints CPU microseconds per request (process
time, so less sensitive to other load than wall time) — the part of the cost that is ingressd's
code, as opposed to uvloop, the kernel and TLS. Metrics are recorded as in production.
With --chp, the configuration is ``ingressd chp``'s (1,000 API routes, requests spread over
/user/u0/ .. /user/u999/, as bench/chp.py's wrk script). With --profile, the top functions (cProfile) follow. ``bash bench/request_instructions.sh`` counts
instructions per request with callgrind instead, which other load on the machine does not change.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

REPO = Path(os.environ.get("INGRESSD_TREE") or Path(__file__).resolve().parents[1])  # the tree measured
sys.path[:0] = [str(REPO), str(REPO / "tests" / "unit")]

from dataplanekit import Rig  # noqa: E402
from unitkit import compile_config, ingress, path, rule, svc_with_endpoints  # noqa: E402

from ingressd.config import ClientTrust  # noqa: E402
from ingressd.dataplane.stats import AccessLog  # noqa: E402

# ingressd chp's (CHP's xfwd): every peer's X-Forwarded-* kept and appended to
CHP_TRUST = ClientTrust(use_forwarded_headers=True, compute_full_forwarded_for=True, address_from_headers=False)

REQUEST = (b"GET / HTTP/1.1\r\nHost: bench.localhost\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 04 Dec 2026 03:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n")


CHP_ROUTES = 1000


def chp_config():
    """``ingressd chp``'s configuration with bench/chp.py's 1,000 routes, and its requests."""
    from ingressd.chp.server import ChpOptions, ChpProxy

    proxy = ChpProxy(ChpOptions(ip="127.0.0.1", port=8000, api_ip="127.0.0.1", api_port=8001, token="t"))
    for i in range(CHP_ROUTES):
        proxy.store.add(f"/user/u{i}", {"target": "http://10.0.0.1:8080"})
    proxy.apply()
    requests = [REQUEST.replace(b"GET / ", b"GET /user/u%d/ " % i) for i in range(CHP_ROUTES)]
    return proxy, requests


def run(requests: int, access_log: bool, scheme: str = "http", trusted: bool = False,
        chp: bool = False) -> tuple[float, Rig]:
    metrics = True
    if chp:
        proxy, heads = chp_config()
        config, metrics = proxy.plane.ctx.config, proxy.plane.recorder.metrics  # none without --metrics-port
    else:
        settings = {"trust": CHP_TRUST} if trusted else {}
        config = compile_config(ingress("bench", rule("bench.localhost", path("/", "web"))),
                                svc_with_endpoints("web", ("10.0.0.1",)), **settings)
        heads = [REQUEST]
    log = AccessLog(fd=os.open(os.devnull, os.O_WRONLY)) if access_log else None
    rig = Rig(config, access_log=log)
    rig.recorder.metrics = metrics
    done = 0
    start = time.process_time()
    while done < requests:  # a new client connection when one is closed (keep-alive-requests), as wrk does
        client = rig.client(scheme)
        feed, out = client.conn.data_received, client.transport.data
        while not client.closed and done < requests:
            feed(heads[done % len(heads)])
            upstream = rig.upstreams[-1]  # the pooled one, or the one just dialed
            upstream.conn.data_received(RESPONSE)
            rig.settle()
            done += 1
            if len(out) > 1 << 16:  # keep the fake transports' buffers small
                del out[:], upstream.transport.data[:]
        assert out.endswith(b"hello world\n") or not out, out[-200:]
    elapsed = time.process_time() - start
    if log is not None:
        log.flush()
    return elapsed / requests * 1e6, rig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--once", action="store_true",
                        help="one run, no warm-up: for instruction counts, e.g. the difference of two "
                             "`valgrind --tool=callgrind` runs with different --requests")
    parser.add_argument("--trusted-peer", action="store_true",
                        help="the peer's forwarded headers are believed, as in ingressd chp")
    parser.add_argument("--chp", action="store_true",
                        help="ingressd chp's configuration: 1,000 API routes, paths spread over them")
    parser.add_argument("--https", action="store_true", help="the client connection is an HTTPS one (no TLS here)")
    args = parser.parse_args()
    scheme = "https" if args.https else "http"
    if args.once:
        run(args.requests, args.access_log, scheme, args.trusted_peer, args.chp)
        return 0
    run(min(20_000, args.requests), args.access_log, scheme, args.trusted_peer, args.chp)  # warm-up
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        cost, _ = run(args.requests, args.access_log, scheme, args.trusted_peer, args.chp)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
        print(f"{cost:.2f} us/request under cProfile")
        return 0
    costs = sorted(run(args.requests, args.access_log, scheme, args.trusted_peer, args.chp)[0] for _ in range(5))
    print(f"ingressd's Python work per request ({scheme}, access log {'on' if args.access_log else 'off'}): "
          f"median {costs[2]:.2f} us (min {costs[0]:.2f}, max {costs[-1]:.2f}; {args.requests:,} requests x 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
