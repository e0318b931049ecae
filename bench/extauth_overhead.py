"""What an auth-url subrequest adds per request: sequential keep-alive requests through ingressd.

    python bench/extauth_overhead.py [N]   (N at most 900: keep-alive-requests closes the connection at 1000)

Starts an asyncio upstream (one write per answer), tests/support's auth server (http.server, keep-alive)
and one ingressd worker with
three Ingresses: no auth, auth-url, auth-url with auth-cache-key; sends N GETs on one client
connection to each and prints the median and 95th percentile latency.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import client as h  # noqa: E402
from support import manifests as m  # noqa: E402
from support.authserver import AuthServer  # noqa: E402

import asyncio  # noqa: E402
import threading  # noqa: E402


class _Upstream:
    """A keep-alive upstream answering every request with one write (no Nagle/delayed-ACK stalls)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    if not head:
                        break
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
from support.ingressd import launch  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    work = Path(tempfile.mkdtemp(prefix="extauth-bench-"))
    auth = AuthServer().start()
    upstream = _Upstream()
    proxy = launch(work, {
        "svc.yaml": m.service_with_endpoints("svc-a", upstream.port),
        "ing.yaml": [
            m.ingress("plain", [m.rule("plain.example.com", m.path("/", "svc-a"))]),
            m.ingress("auth", [m.rule("auth.example.com", m.path("/", "svc-a"))],
                      annotations={"auth-url": auth.url(), "auth-response-headers": "X-Auth-Request-User"}),
            m.ingress("cached", [m.rule("cached.example.com", m.path("/", "svc-a"))],
                      annotations={"auth-url": auth.url(), "auth-cache-key": "$http_authorization"}),
        ],
    }, args=["--workers", "1", "--no-access-log"])
    try:
        for host in ("plain.example.com", "auth.example.com", "cached.example.com"):
            conn = h.RawConn(proxy.http_port)  # TCP_NODELAY
            request = f"GET /echo HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer good\r\n\r\n".encode()
            times = []
            for i in range(min(n, 900) + 50):
                start = time.perf_counter()
                conn.send(request)
                r = conn.read_response()
                if i >= 50:  # warm-up excluded
                    times.append(time.perf_counter() - start)
                assert r.status == 200, r
            conn.close()
            times.sort()
            print(f"{host:20s} {n} requests: median {statistics.median(times) * 1e3:.2f} ms, "
                  f"p95 {times[int(len(times) * 0.95)] * 1e3:.2f} ms")
        print(f"auth server connections used: {len({s['conn'] for s in auth.seen})} for {len(auth.seen)} subrequests")
    finally:
        proxy.stop()
        upstream.stop()
        auth.stop()


if __name__ == "__main__":
    main()
