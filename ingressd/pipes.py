"""Messages over a ``multiprocessing`` pipe from an asyncio loop, of any size.

``loop.add_reader`` makes the pipe's descriptor non-blocking, and ``Connection.recv_bytes`` /
``send_bytes`` then fail with ``BlockingIOError`` halfway through any message larger than the
socket buffer (a configuration of a few hundred Ingresses): a worker took that for its control
plane going away and stopped. :class:`Channel` reads and writes the same framing as
``Connection`` (a 4-byte big-endian length, then the bytes) with non-blocking reads and writes
driven by the loop, buffering what does not fit yet.

:class:`FrameReader` is the sans-IO half:

>>> reader = FrameReader()
>>> reader.feed(frame(b"hello")[:3]), reader.feed(frame(b"hello")[3:] + frame(b"!"))
([], [b'hello', b'!'])
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from typing import Callable

log = logging.getLogger("ingressd.pipes")
_HEADER = struct.Struct("!i")
READ_SIZE = 1 << 20


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Complete messages out of a byte stream in ``Connection``'s framing."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        while len(buffer) - start >= 4:
            (size,) = _HEADER.unpack_from(buffer, start)
            if size < 0 or len(buffer) - start - 4 < size:
                break
            messages.append(bytes(buffer[start + 4:start + 4 + size]))
            start += 4 + size
        if start:
            del buffer[:start]
        return messages


class Channel:
    """One end of a pipe on the running loop: ``send(bytes)`` never blocks; each message
    received is passed to ``on_message(bytes)``; ``on_close()`` once the other end is gone."""

    def __init__(self, fd: int, on_message: Callable[[bytes], None], on_close: Callable[[], None]):
        self.fd = fd
        self.loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.on_close = on_close
        self.reader = FrameReader()
        self._out = bytearray()
        self._writing = False
        self.closed = False
        os.set_blocking(fd, False)  # uvloop's add_reader does it anyway; asyncio's does not
        self.loop.add_reader(fd, self._readable)

    def send(self, payload: bytes) -> None:
        if self.closed:
            return
        self._out += frame(payload)
        if not self._writing:
            self._flush()

    put_nowait = send  # the pool's outbox interface

    def _flush(self) -> None:
        while self._out:
            try:
                written = os.write(self.fd, self._out[:READ_SIZE])
            except BlockingIOError:
                break
            except OSError:
                self._close()
                return
            del self._out[:written]
        if self._out and not self._writing:
            self._writing = True
            self.loop.add_writer(self.fd, self._writable)
        elif not self._out and self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)

    def _writable(self) -> None:
        self._flush()

    def _readable(self) -> None:
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close()
                return
            for message in self.reader.feed(data):
                try:
                    self.on_message(message)
                except Exception:  # noqa: BLE001 - one bad message must not lose the ones after it
                    log.exception("handling a message from the pipe failed")
                if self.closed:
                    return

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self._writing:
            self.loop.remove_writer(self.fd)
        self.on_close()

    def close(self) -> None:
        """Stop using the descriptor (its owner closes it)."""
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            if self._writing:
                self.loop.remove_writer(self.fd)
