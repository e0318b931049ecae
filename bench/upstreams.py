"""Benchmark upstreams that nginx cannot be: an upload sink and a websocket echo server.

    python bench/upstreams.py sink PORT     # HTTP/1.1 keep-alive; reads each request body whole,
                                            # discards it, answers "received N\\n" (N = body bytes)
    python bench/upstreams.py wsecho PORT   # websocket echo (the `websockets` package), any path

Both listen on 127.0.0.1 only and stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import httptools


class Sink(asyncio.Protocol):
    """Counts body bytes with httptools (Content-Length and chunked), answers when the body is done."""

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.received = 0

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self):
        self.received = 0
        self.expect = False

    def on_header(self, name, value):
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            self.expect = True

    def on_headers_complete(self):
        if self.expect:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body):
        self.received += len(body)

    def on_message_complete(self):
        body = b"received %d\n" % self.received
        keep = self.parser.should_keep_alive()
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                             % (len(body), b"" if keep else b"Connection: close\r\n", body))
        if not keep:
            self.transport.close()


async def run_sink(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=1024)
    await _until_signal(loop)
    server.close()


async def run_wsecho(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except Exception:
            pass

    loop = asyncio.get_running_loop()
    async with serve(echo, "127.0.0.1", port, ping_interval=None, compression=None, max_size=2**20,
                     backlog=4096):
        await _until_signal(loop)


async def _until_signal(loop) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    runner = {"sink": run_sink, "wsecho": run_wsecho}[kind]
    try:
        import uvloop
        uvloop.run(runner(port))
    except ImportError:
        asyncio.run(runner(port))


if __name__ == "__main__":
    main()
