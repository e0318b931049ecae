#!/usr/bin/env python3
"""A test upstream for ingressd's integration tests.

Run as its own process (robust under pytest-xdist)::

    python tests/support/backend.py --listen a=127.0.0.1:0 --listen rr=127.0.0.2,127.0.0.3:0

Each ``--listen NAME=ADDR[,ADDR...]:PORT`` binds every address on the same port (port 0: one free
port is chosen for the whole group). Once everything is bound, one JSON line is printed on stdout:
``{"listeners": {"a": {"port": 41234, "addrs": ["127.0.0.1"]}, ...}}``.

Every listener answers HTTP/1.1 with keep-alive:

The action is the last path segment (``/api/status`` is ``/status``):

* ``/echo`` (and any path not listed below): JSON describing the request: method, path, query,
  headers, body length and sha256, listener name, local address, connection id and the index of the
  request on that connection (to observe upstream connection reuse).
* ``/upload``: same as echo (the body is streamed and hashed, never held in memory).
* ``/download?size=N``: N bytes of :func:`pattern` with Content-Length.
* ``/stream?chunks=N&delay=S&hold=TOKEN``: a chunked response of N chunks ``chunk I\\n``; with
  ``hold`` the backend waits after the first chunk until ``/release?token=TOKEN`` is requested.
* ``/release?token=T``: releases a held stream.
* ``/slow?delay=S``: echo after S seconds.
* ``/status?code=N``: that status with a short body.
* ``/close``: reads the request and closes the connection without answering.
* ``/closeafter``: echo without ``Connection: close``, then closes the connection.
* ``/ws`` with ``Upgrade: websocket``: a websocket echo (sans-I/O protocol from ``websockets``).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path: keep its modules from shadowing others.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import hashlib
import itertools
import json
import signal
import socket
import urllib.parse

from websockets.frames import Opcode
from websockets.server import ServerProtocol

BLOCK = bytes(range(256)) * 1024  # 256 KiB


def pattern(size: int):
    """The bytes /download?size=N sends, as successive blocks."""
    left = size
    while left > 0:
        block = BLOCK if left >= len(BLOCK) else BLOCK[:left]
        left -= len(block)
        yield block


_conn_ids = itertools.count(1)
_holds: dict[str, asyncio.Event] = {}


class BadRequest(Exception):
    pass


class Request:
    def __init__(self, head: bytes):
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.method, self.target, self.version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest(lines[0]) from None
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            if ":" not in line:
                raise BadRequest(line)
            name, value = line.split(":", 1)
            self.headers.append((name.strip(), value.strip()))
        parsed = urllib.parse.urlsplit(self.target)
        self.path = parsed.path
        self.query = parsed.query
        self.params = dict(urllib.parse.parse_qsl(parsed.query))
        self.head = head
        # Dispatch on the last path segment, so /ws, /api/ws and /x/status all work behind a prefix.
        self.action = self.path.rstrip("/").rsplit("/", 1)[-1]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.headers:
            k = k.lower()
            out[k] = f"{out[k]}, {v}" if k in out else v
        return out

    @property
    def chunked(self) -> bool:
        te = self.header("transfer-encoding")
        return bool(te) and "chunked" in te.lower()

    @property
    def content_length(self) -> int:
        cl = self.header("content-length")
        return int(cl) if cl else 0

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


async def body_chunks(req: Request, reader: asyncio.StreamReader):
    if req.chunked:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return
            left = size
            while left:
                data = await reader.read(min(left, 1 << 18))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                yield data
            await reader.readexactly(2)
    else:
        left = req.content_length
        while left:
            data = await reader.read(min(left, 1 << 18))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            yield data


class Connection:
    def __init__(self, name: str, reader, writer):
        self.name = name
        self.reader = reader
        self.writer = writer
        self.conn_id = next(_conn_ids)
        self.index = 0
        sockname = writer.get_extra_info("sockname")
        self.local = (sockname[0], sockname[1])
        peer = writer.get_extra_info("peername")
        self.peer = (peer[0], peer[1])

    def respond(self, req: Request, status: int, body: bytes, ctype="application/json", extra=()):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                 f"X-Backend-Name: {self.name}"]
        lines += [f"{k}: {v}" for k, v in extra]
        if not req.keep_alive:
            lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if req.method != "HEAD":
            self.writer.write(body)

    async def serve(self):
        try:
            while True:
                try:
                    head = await self.reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                try:
                    req = Request(head)
                except BadRequest:
                    self.writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    await self.writer.drain()
                    return
                self.index += 1
                if req.action == "ws" and (req.header("upgrade") or "").lower() == "websocket":
                    await self.websocket(req)
                    return
                keep = await self.handle(req)
                await self.writer.drain()
                if not keep or not req.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            try:
                self.writer.close()
            except Exception:
                pass

    async def consume(self, req: Request) -> tuple[int, str]:
        if (req.header("expect") or "").lower() == "100-continue" and (req.chunked or req.content_length):
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.writer.drain()
        digest = hashlib.sha256()
        n = 0
        async for chunk in body_chunks(req, self.reader):
            digest.update(chunk)
            n += len(chunk)
        return n, digest.hexdigest()

    def describe(self, req: Request, n: int, sha: str) -> dict:
        return {
            "name": self.name,
            "addr": self.local[0],
            "port": self.local[1],
            "method": req.method,
            "target": req.target,
            "path": req.path,
            "query": req.query,
            "version": req.version,
            "headers": req.headers,
            "header_map": req.header_map(),
            "body_len": n,
            "sha256": sha,
            "conn_id": self.conn_id,
            "conn_index": self.index,
            "peer": list(self.peer),
        }

    async def handle(self, req: Request) -> bool:
        n, sha = await self.consume(req)
        path = "/" + req.action
        if path == "/close":
            return False
        if path == "/closeafter":
            # Answer as if keeping the connection alive, then close it: a stale pooled connection.
            self.respond(req, 200, json.dumps(self.describe(req, n, sha)).encode())
            await self.writer.drain()
            return False
        if path == "/download":
            size = int(req.params.get("size", "0"))
            lines = [
                "HTTP/1.1 200 OK",
                "Content-Type: application/octet-stream",
                f"Content-Length: {size}",
                f"X-Backend-Name: {self.name}",
            ]
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            if req.method != "HEAD":
                for block in pattern(size):
                    self.writer.write(block)
                    await self.writer.drain()
            return True
        if path == "/stream":
            chunks = int(req.params.get("chunks", "3"))
            delay = float(req.params.get("delay", "0"))
            hold = req.params.get("hold")
            self.writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                + f"X-Backend-Name: {self.name}\r\n\r\n".encode()
            )
            for i in range(chunks):
                data = f"chunk {i}\n".encode()
                self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await self.writer.drain()
                if i == 0 and hold:
                    event = _holds.setdefault(hold, asyncio.Event())
                    try:
                        await asyncio.wait_for(event.wait(), 60)
                    except asyncio.TimeoutError:
                        return False
                elif delay:
                    await asyncio.sleep(delay)
            self.writer.write(b"0\r\n\r\n")
            return True
        if path == "/release":
            _holds.setdefault(req.params.get("token", ""), asyncio.Event()).set()
            self.respond(req, 200, b"released\n", "text/plain")
            return True
        if path == "/status":
            code = int(req.params.get("code", "200"))
            self.respond(req, code, f"status {code} from {self.name}\n".encode(), "text/plain")
            return True
        if path == "/slow":
            await asyncio.sleep(float(req.params.get("delay", "1")))
        body = json.dumps(self.describe(req, n, sha)).encode()
        self.respond(req, 200, body)
        return True

    async def websocket(self, req: Request):
        proto = ServerProtocol(max_size=None)
        proto.receive_data(req.head)
        events = proto.events_received()
        response = proto.accept(events[0])
        response.headers["X-Backend-Name"] = self.name
        proto.send_response(response)
        for data in proto.data_to_send():
            self.writer.write(data)
        await self.writer.drain()
        if response.status_code != 101:
            return
        while True:
            data = await self.reader.read(1 << 16)
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            for event in proto.events_received():
                if event.opcode is Opcode.TEXT:
                    text = event.data
                    if text == b"whoami":
                        text = self.name.encode()
                    proto.send_text(text)
                elif event.opcode is Opcode.BINARY:
                    proto.send_binary(event.data)
            closing = False
            for out in proto.data_to_send():
                if out:
                    self.writer.write(out)
                else:
                    closing = True
            await self.writer.drain()
            if closing or not data:
                return


def bind_group(addrs: list[str], port: int) -> list[socket.socket]:
    for _ in range(100):
        socks: list[socket.socket] = []
        try:
            chosen = port
            for addr in addrs:
                s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((addr, chosen))
                chosen = s.getsockname()[1]
                s.listen(512)
                s.setblocking(False)
            return socks
        except OSError:
            for s in socks:
                s.close()
            if port:
                raise
    raise RuntimeError(f"could not bind {addrs} on one port")


async def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", action="append", required=True, help="NAME=ADDR[,ADDR...]:PORT")
    args = parser.parse_args(argv)
    listeners = {}
    servers = []
    for spec in args.listen:
        name, rest = spec.split("=", 1)
        addr_part, port = rest.rsplit(":", 1)
        addrs = addr_part.split(",")
        socks = bind_group(addrs, int(port))
        listeners[name] = {"port": socks[0].getsockname()[1], "addrs": addrs}
        for s in socks:
            async def on_conn(reader, writer, _name=name):
                await Connection(_name, reader, writer).serve()

            servers.append(await asyncio.start_server(on_conn, sock=s, limit=1 << 20))
    print(json.dumps({"listeners": listeners}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
