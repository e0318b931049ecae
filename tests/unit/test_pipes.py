"""ingressd/pipes.py: messages of any size between the control plane and a worker, on the loop.

The bug it fixes: ``loop.add_reader`` makes a pipe non-blocking, and ``Connection.recv_bytes`` then
raised ``BlockingIOError`` halfway through a configuration larger than the socket buffer; the
worker took it for a closed pipe and stopped (every change with a few hundred Ingresses)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os

import pytest

from ingressd.pipes import Channel, FrameReader, frame


def test_frames_cut_anywhere_come_out_whole():
    payloads = [b"", b"x", os.urandom(70_000), b"last"]
    stream = b"".join(frame(p) for p in payloads)
    for step in (1, 3, 4096, len(stream)):
        reader = FrameReader()
        got = []
        for start in range(0, len(stream), step):
            got += reader.feed(stream[start:start + step])
        assert got == payloads


def test_the_framing_is_multiprocessing_s():
    a, b = multiprocessing.Pipe()
    a.send_bytes(b"from a connection")
    assert FrameReader().feed(os.read(b.fileno(), 100)) == [b"from a connection"]
    os.write(b.fileno(), frame(b"from a frame"))
    assert a.recv_bytes() == b"from a frame"


@pytest.mark.parametrize("size", [10, 8 << 20])
def test_large_messages_both_ways_without_blocking_the_loop(size):
    async def run():
        left, right = multiprocessing.Pipe()
        got: list[bytes] = []
        done = asyncio.get_running_loop().create_future()

        def on_right(data):
            got.append(data)
            if len(got) == 3:
                done.set_result(None)

        sender = Channel(left.fileno(), lambda data: None, lambda: None)
        receiver = Channel(right.fileno(), on_right, lambda: None)
        assert not os.get_blocking(left.fileno())  # as uvloop's add_reader leaves it, which broke recv_bytes
        payloads = [os.urandom(size), b"small", os.urandom(size // 2)]
        for payload in payloads:
            sender.send(payload)  # returns at once; the loop writes what the pipe takes
        ticks = 0
        while not done.done():  # the loop keeps running while megabytes go through
            await asyncio.sleep(0)
            ticks += 1
        assert got == payloads and ticks > 0
        closed = asyncio.get_running_loop().create_future()
        receiver.on_close = lambda: closed.set_result(True)
        sender.close()
        left.close()
        assert await asyncio.wait_for(closed, 5)
        right.close()

    asyncio.run(run())
