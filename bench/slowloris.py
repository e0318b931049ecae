"""Slow and greedy clients against a real ingressd: latency of normal requests and memory.

    python3 bench/slowloris.py [--slow 2000] [--readers 1000] [--senders 1000] [--requests 300]

Starts, on 127.0.0.1, an upstream (this script, ``upstream`` mode: ``/`` answers "ok", ``/big``
streams 64 MiB), ingressd (``--workers 1``, access log off) and the slow clients in a separate
process (this script, ``slow`` mode), then prints:

1. a normal request's latency (new connection per request, and keep-alive) alone, then while
   ``--slow`` connections trickle a request head one byte per second (slowloris);
2. ingressd's RSS with ``--readers`` clients that asked for /big and read 4 KiB a second;
3. ingressd's RSS with ``--senders`` clients sending a 64 MiB body at 4 KiB a second.

Memory is bounded when RSS per slow connection stays a few tens of KiB (socket buffers are the
kernel's): ingressd pauses the upstream while a client's write buffer is full, and the client
while the upstream's is. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIG = 64 << 20
HOST = b"slow.example.com"


# --- the upstream ----------------------------------------------------------------------------------

class Upstream(asyncio.Protocol):
    def connection_made(self, transport):
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.paused = False

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_url(self, url):
        self.url = url

    def on_message_complete(self):
        if self.url.startswith(b"/big"):
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
            self.left = BIG
            self.stream()
        else:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def stream(self):
        chunk = b"x" * 65536
        while self.left > 0 and not self.paused:
            self.transport.write(chunk[:self.left])
            self.left -= len(chunk)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.stream()


async def run_upstream(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
    server.close()


# --- the slow clients --------------------------------------------------------------------------------

async def run_slow(mode: str, count: int, port: int) -> None:
    """``count`` connections of one kind, opened at once, kept until SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    opened = 0

    async def one(i: int) -> None:
        nonlocal opened
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        opened += 1
        try:
            if mode == "loris":
                head = b"GET / HTTP/1.1\r\nHost: " + HOST + b"\r\nX-Slow: " + b"a" * 100000
                for byte in range(len(head)):
                    writer.write(head[byte:byte + 1])
                    await asyncio.sleep(1)
            elif mode == "reader":
                writer.write(b"GET /big HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
                while not stop.done():
                    if not await reader.read(4096):
                        return
                    await asyncio.sleep(1)
            elif mode == "sender":
                writer.write(b"POST / HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: %d\r\n\r\n" % BIG)
                while not stop.done():
                    writer.write(b"y" * 4096)
                    await writer.drain()
                    await asyncio.sleep(1)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks = [loop.create_task(one(i)) for i in range(count)]
    await asyncio.sleep(0.5)
    print(f"opened {opened}", flush=True)
    await stop
    for task in tasks:
        task.cancel()


# --- measuring ------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def request(sock: socket.socket) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        more = sock.recv(4096)
        if not more:
            raise ConnectionError("closed")
        data += more


def latencies(port: int, count: int) -> tuple[list[float], list[float]]:
    fresh, kept = [], []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            request(sock)
        fresh.append(time.perf_counter() - started)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count):
            started = time.perf_counter()
            request(sock)
            kept.append(time.perf_counter() - started)
    return fresh, kept


def describe(name: str, values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (f"{name:34} p50 {statistics.median(values) * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms   "
            f"max {values[-1] * 1e3:7.2f} ms")


def manifests(directory: Path, upstream_port: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import yaml
    from support import manifests as m

    docs = m.service_with_endpoints("svc-slow", upstream_port) + [
        m.ingress("ing-slow", [m.rule(HOST.decode(), m.path("/", "svc-slow"))],
                  annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "0"})]
    (directory / "all.yaml").write_text(yaml.safe_dump_all(docs))


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                request(sock)
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("ingressd did not become ready")


def with_slow_clients(mode: str, count: int, port: int, settle: float):
    process = subprocess.Popen([sys.executable, __file__, "slow", mode, str(count), str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline().strip()
    time.sleep(settle)
    return process, line


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=2000, help="slowloris connections (default 2000)")
    parser.add_argument("--readers", type=int, default=1000, help="slow readers of /big (default 1000)")
    parser.add_argument("--senders", type=int, default=1000, help="slow body senders (default 1000)")
    parser.add_argument("--requests", type=int, default=300, help="requests per latency sample (default 300)")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))

    upstream_port, http_port = free_port(), free_port()
    processes = []
    with tempfile.TemporaryDirectory() as work:
        directory = Path(work, "manifests")
        directory.mkdir()
        manifests(directory, upstream_port)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        processes.append(subprocess.Popen([sys.executable, __file__, "upstream", str(upstream_port)]))
        ingressd = subprocess.Popen(
            [sys.executable, "-m", "ingressd", "serve", "--manifests", str(directory), "--listen", "127.0.0.1",
             "--http-port", str(http_port), "--https-port", str(free_port()), "--metrics-port", str(free_port()),
             "--workers", "1", "--no-access-log", "--log-level", "error"], env=env, cwd=ROOT)
        processes.append(ingressd)
        try:
            wait_ready(http_port)
            latencies(http_port, 50)  # warm up
            idle_rss = rss_kib(ingressd.pid)
            fresh, kept = latencies(http_port, args.requests)
            print(f"ingressd RSS idle: {idle_rss / 1024:.1f} MiB")
            print(describe("alone, new connection", fresh))
            print(describe("alone, keep-alive", kept))

            slow, line = with_slow_clients("loris", args.slow, http_port, settle=3)
            fresh, kept = latencies(http_port, args.requests)
            rss = rss_kib(ingressd.pid)
            print(f"with {args.slow} slowloris connections ({line}); ingressd RSS {rss / 1024:.1f} MiB "
                  f"({(rss - idle_rss) / max(args.slow, 1):.1f} KiB each):")
            print(describe("  new connection", fresh))
            print(describe("  keep-alive", kept))
            stop(slow)

            for mode, count in (("reader", args.readers), ("sender", args.senders)):
                time.sleep(1)
                before = rss_kib(ingressd.pid)
                slow, line = with_slow_clients(mode, count, http_port, settle=15)
                samples = []
                for _ in range(6):  # flat once every connection's buffers are full: bounded
                    samples.append(rss_kib(ingressd.pid))
                    time.sleep(2)
                fresh, kept = latencies(http_port, args.requests)
                growth = max(samples) - before
                print(f"with {count} slow {mode}s of 64 MiB ({line}): ingressd RSS {max(samples) / 1024:.1f} MiB, "
                      f"+{growth / 1024:.1f} MiB ({growth / max(count, 1):.1f} KiB each), "
                      f"samples {[round(s / 1024, 1) for s in samples]} MiB")
                print(describe("  new connection", fresh))
                stop(slow)
        finally:
            for process in processes:
                stop(process)


if __name__ == "__main__":
    if sys.argv[1:2] == ["upstream"]:
        asyncio.run(run_upstream(int(sys.argv[2])))
    elif sys.argv[1:2] == ["slow"]:
        resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
        asyncio.run(run_slow(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
