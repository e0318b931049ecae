"""``ssl-passthrough``: TLS connections for some hosts go to their backend undecrypted, chosen by SNI.

As ingress-nginx with ``--enable-ssl-passthrough``: every connection to the HTTPS port is read up
to its ClientHello first (peeked, not consumed); when the server name's ``/`` route is an Ingress
annotated ``ssl-passthrough: "true"``, the raw TCP stream goes to an endpoint of that route's
Service (the backend's own certificate answers), else ingressd terminates TLS as usual. The other
annotations of such an Ingress do not apply to those connections (layer 4), as in ingress-nginx.

``server_name`` is pure: a bounded parse of the first TLS record (RFC 8446 §4.1.2, RFC 6066 §3).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket

log = logging.getLogger("ingressd.passthrough")

MAX_HELLO = 16 * 1024 + 5  # one TLS record: ClientHellos fit (a larger one is terminated locally)
HELLO_TIMEOUT = 10.0  # seconds for a client to send its ClientHello
CONNECT_TIMEOUT = 5.0
_rotation = itertools.count()


class NeedMore(Exception):
    """The bytes so far are the start of a ClientHello: read more."""


def server_name(data: bytes) -> str | None:
    """The SNI host name of the ClientHello starting ``data`` (lower-case), None when there is none
    or ``data`` is not a TLS ClientHello. Raises ``NeedMore`` when the record is not complete yet."""
    if len(data) < 5:
        if data and data[0] != 0x16:
            return None
        raise NeedMore
    if data[0] != 0x16 or data[1] != 0x03:  # handshake record, TLS 1.x
        return None
    length = int.from_bytes(data[3:5], "big")
    if length > MAX_HELLO - 5:
        return None
    if len(data) < 5 + length:
        raise NeedMore
    hello = memoryview(data)[5:5 + length]
    try:
        if hello[0] != 0x01:  # ClientHello
            return None
        pos = 4 + 2 + 32  # handshake header, legacy_version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + int.from_bytes(hello[pos:pos + 2], "big")  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = pos + 2 + int.from_bytes(hello[pos:pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(hello[pos:pos + 2], "big")
            size = int.from_bytes(hello[pos + 2:pos + 4], "big")
            pos += 4
            if kind == 0:  # server_name: list length, then (type, length, name) entries
                entry = pos + 2
                while entry + 3 <= pos + size:
                    name_type = hello[entry]
                    name_length = int.from_bytes(hello[entry + 1:entry + 3], "big")
                    name = bytes(hello[entry + 3:entry + 3 + name_length])
                    if name_type == 0 and len(name) == name_length:
                        text = name.decode("ascii").lower().rstrip(".")
                        return text or None
                    entry += 3 + name_length
                return None
            pos += size
    except (IndexError, UnicodeDecodeError):
        return None
    return None


async def peek(loop: asyncio.AbstractEventLoop, conn: socket.socket, size: int, what: str) -> bytes:
    """Up to ``size`` bytes of ``conn`` (non-blocking) once it is readable, left unread; ConnectionError
    when it closes before ``what``."""
    readable = loop.create_future()
    loop.add_reader(conn.fileno(), readable.set_result, None)
    try:
        await readable
    finally:
        loop.remove_reader(conn.fileno())
    data = conn.recv(size, socket.MSG_PEEK)
    if not data:
        raise ConnectionError(f"closed before its {what}")
    return data


async def peek_server_name(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> str | None:
    """The SNI of the ClientHello arriving on ``conn``, leaving every byte unread."""
    while True:
        data = await peek(loop, conn, MAX_HELLO, "ClientHello")
        try:
            return server_name(data)
        except NeedMore:
            if len(data) >= MAX_HELLO:
                return None
            await asyncio.sleep(0.01)  # a partial record stays readable: wait for more, do not spin


class _Half(asyncio.Protocol):
    """One side of a passthrough pipe: what it reads is written to ``peer``, with backpressure."""

    def __init__(self, pipe: "Pipe"):
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.peer: "_Half | None" = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
            self.pipe.moved += len(data)

    def eof_received(self):
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # keep the other direction open (a half-close)
        self.pipe.close()
        return False

    def connection_lost(self, exc) -> None:
        self.pipe.close()

    def pause_writing(self) -> None:  # our write buffer is full: stop reading the other side
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Pipe:
    """A client connection and an upstream connection joined byte for byte."""

    def __init__(self):
        self.client = _Half(self)
        self.upstream = _Half(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.moved = 0
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for half in (self.client, self.upstream):
            if half.transport is not None:
                half.transport.close()


async def pass_through(loop: asyncio.AbstractEventLoop, conn: socket.socket, backend, host: str) -> None:
    """Join ``conn`` (its ClientHello still unread) to an endpoint of ``backend``; the client is cut if
    none answers."""
    if not backend.endpoints:
        log.warning("ssl-passthrough %s: %s", host, backend.error or "no endpoint")
        conn.close()
        return
    pipe = Pipe()
    endpoints = backend.endpoints
    start = next(_rotation)
    for attempt in range(min(3, len(endpoints))):
        address = endpoints[(start + attempt) % len(endpoints)]
        try:
            await asyncio.wait_for(loop.create_connection(lambda: pipe.upstream, *address), CONNECT_TIMEOUT)
            break
        except (OSError, asyncio.TimeoutError) as error:
            log.warning("ssl-passthrough %s: cannot connect to %s:%d: %s", host, *address, error)
    else:
        conn.close()
        return
    try:
        await loop.connect_accepted_socket(lambda: pipe.client, conn)
    except OSError:
        pipe.close()
        conn.close()
