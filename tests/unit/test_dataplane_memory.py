"""Closed connections are freed by reference counting, never left to the cyclic collector.

Issue 9: ``ingressd chp``'s RSS grew ~6 bytes per request (+5.7 MB over 1,000,000 keep-alive
requests). Every client connection closed after keep-alive-requests (1,000) stayed behind as a
reference cycle (its httptools parser holds bound methods of the connection; its last exchange
points back at it), ~6 KB each. The cyclic collector seldom ran a full pass over them, and each
route change's ``DataPlane.apply`` (``gc.freeze()``) moved the live connections to the permanent
generation, where they were never collected once closed.

These tests run with the cyclic collector disabled: whatever a closed connection leaves behind
is still in ``gc.get_objects()`` at the end. The first ones use the in-process kit (dataplanekit);
the last one runs ``ingressd chp``'s proxy on real sockets and changes a route while each client
connection is open, as the leak benchmark does (bench/chp.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections import Counter
from dataclasses import replace

import pytest

from dataplanekit import FakeTransport, Rig
from unitkit import compile_config, ingress, path, rule, svc_with_endpoints

from ingressd.admin import AdminConnection
from ingressd.chp.server import APIConnection, ChpOptions, ChpProxy, ProxyAPI
from ingressd.chp.routes import ProxyRoutes
from ingressd.dataplane.exchange import Exchange
from ingressd.dataplane.h2client import H2ClientConnection, Stream
from ingressd.dataplane.http import ClientConnection, Listener
from ingressd.dataplane.upstream import UpstreamConnection

GET = b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
WATCHED = (ClientConnection, UpstreamConnection, Exchange, APIConnection, AdminConnection, H2ClientConnection, Stream)


@pytest.fixture
def no_cyclic_gc():
    """The cyclic collector off (and the young garbage of earlier tests collected first)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def alive(*types) -> Counter:
    """Instances of ``types`` that the cyclic collector sees (not frozen), by class name."""
    return Counter(type(o).__name__ for o in gc.get_objects() if isinstance(o, types))


def test_connections_closed_by_keepalive_requests_are_freed(no_cyclic_gc):
    config = compile_config(ingress("web", rule("a.com", path("/", "web"))), svc_with_endpoints("web", ["10.0.0.1"]))
    rig = Rig(replace(config, client=replace(config.client, keepalive_requests=2)))
    rig.pool.max_requests = 3  # upstream connections are closed and replaced too
    before = alive(*WATCHED)
    for _ in range(10):
        client = rig.client()
        for _ in range(2):
            client.send(GET)
            rig.upstream().send(OK)
        assert client.closed  # the 2nd response said Connection: close
        del client
    assert len(rig.upstreams) > 1
    rig.upstreams.clear()  # the kit's own references; the pool keeps the idle one
    assert alive(*WATCHED) - before == Counter({"UpstreamConnection": 1})


def test_connections_closed_mid_request_are_freed(no_cyclic_gc):
    """A client that goes away while its request is at the upstream, and an upstream that
    closes mid-response: both exchanges are aborted or failed, and everything is freed."""
    config = compile_config(ingress("web", rule("a.com", path("/", "web"))), svc_with_endpoints("web", ["10.0.0.1"]))
    rig = Rig(config)
    before = alive(*WATCHED)
    for _ in range(5):
        client = rig.client()
        client.send(GET)
        client.disconnect()
        assert rig.upstream().closed  # abandoned with its exchange
        client = rig.client()
        client.send(GET)
        upstream = rig.upstream()
        upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
        upstream.disconnect()
        assert client.closed  # the response cannot be completed
        del client, upstream
    rig.upstreams.clear()
    assert alive(*WATCHED) - before == Counter()


def test_http2_streams_and_connections_are_freed(no_cyclic_gc):
    """Each HTTP/2 stream's exchange points back at its stream: freed once the stream is done
    (answered, or reset by the client), and the connection once it is closed."""
    h2 = pytest.importorskip("h2.connection")
    import h2.config

    config = compile_config(ingress("web", rule("a.com", path("/", "web"))), svc_with_endpoints("web", ["10.0.0.1"]))
    rig = Rig(config)
    # h2client writes once per event loop iteration (loop.call_soon): a loop of its own, run a step
    # after each delivery, so that no callback is left holding the connection.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    step = lambda: loop.run_until_complete(asyncio.sleep(0))  # noqa: E731
    before = alive(*WATCHED)
    conn = H2ClientConnection(rig.ctx, Listener("https", 443, b""))
    transport = FakeTransport(rig, conn)
    conn.connection_made(transport)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    request = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.com"), (b":path", b"/")]
    for n in range(6):
        stream_id = client.get_next_available_stream_id()
        client.send_headers(stream_id, request, end_stream=True)
        conn.data_received(client.data_to_send())
        step()
        if n % 2:  # reset by the client before the answer
            client.reset_stream(stream_id)
            conn.data_received(client.data_to_send())
            step()
        else:
            rig.upstream().send(OK)
            step()
        events = client.receive_data(transport.take())
        assert n % 2 or any(type(e).__name__ == "StreamEnded" for e in events)
    assert alive(Stream, Exchange) - before == Counter()  # while the connection is open
    transport.close()
    rig.settle()
    step()
    loop.close()
    asyncio.set_event_loop(None)
    del conn, transport
    rig.upstreams.clear()
    idle = sum(len(conns) for conns in rig.pool.idle.values())
    assert alive(*WATCHED) - before == Counter({"UpstreamConnection": idle} if idle else {})  # pooled ones live on


class _Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.data = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


def test_api_connections_are_freed(no_cyclic_gc):
    """The Hub's API client opens a connection per call: each is freed once closed."""
    api = ProxyAPI(ProxyRoutes(), "secret", lambda: None)
    before = alive(*WATCHED)
    for i in range(5):
        conn = APIConnection(api)
        transport = _Transport()
        conn.connection_made(transport)
        body = json.dumps({"target": "http://127.0.0.1:1"}).encode()
        conn.data_received(b"POST /api/routes/user/u%d HTTP/1.1\r\nHost: x\r\nAuthorization: token secret\r\n"
                           b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (i, len(body), body))
        assert transport.data.startswith(b"HTTP/1.1 201 ") and transport.closing
        conn.connection_lost(None)
        del conn, transport
    assert alive(*WATCHED) - before == Counter()


def test_metrics_port_connections_are_freed(no_cyclic_gc):
    before = alive(*WATCHED)
    for _ in range(5):
        conn = AdminConnection({"/healthz": lambda: (200, "text/plain", b"ok\n")})
        transport = _Transport()
        conn.connection_made(transport)
        conn.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert transport.data.startswith(b"HTTP/1.1 200 ") and transport.closing
        conn.connection_lost(None)
        del conn, transport
    assert alive(*WATCHED) - before == Counter()


# --- ingressd chp on real sockets ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):  # closed, or the test ends
        writer.close()


async def _exchange(reader, writer, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    return head + await reader.readexactly(length)


async def _route_changes_while_clients_come_and_go(rounds: int) -> tuple[list[int], Counter]:
    upstream = await asyncio.start_server(_upstream, "127.0.0.1", 0)
    target = "http://127.0.0.1:%d" % upstream.sockets[0].getsockname()[1]
    options = ChpOptions(ip="127.0.0.1", port=_free_port(), api_ip="127.0.0.1", api_port=_free_port(), token="t")
    proxy = ChpProxy(options)
    await proxy.start()
    frozen = []
    try:
        api = await asyncio.open_connection("127.0.0.1", options.api_port)
        for n in range(rounds):
            reader, writer = await asyncio.open_connection("127.0.0.1", options.port)
            body = json.dumps({"target": target}).encode()
            # The route replaced while the client connection is open: DataPlane.apply freezes it
            # (the route table itself stays the same size).
            answer = await _exchange(*api, b"POST /api/routes/user/u HTTP/1.1\r\nHost: x\r\n"
                                          b"Authorization: token t\r\nContent-Length: %d\r\n\r\n%s"
                                     % (len(body), body))
            assert answer.startswith(b"HTTP/1.1 201 ")
            response = await _exchange(reader, writer, b"GET /user/u/%d HTTP/1.1\r\nHost: a\r\n"
                                                       b"Connection: close\r\n\r\n" % n)
            assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"ok")
            assert await reader.read() == b""  # closed by ingressd
            writer.close()
            await writer.wait_closed()
            await _until(lambda: not proxy.plane.ctx.connections)  # connection_lost runs on a later iteration
            frozen.append(gc.get_freeze_count())
        api[1].close()
    finally:
        await proxy.close()
        upstream.close()
    # the pool's upstream connections, closed by proxy.close, are lost on later iterations too
    left = await _until(lambda: alive(ClientConnection, UpstreamConnection, Exchange) or None, want=None)
    return frozen, left or Counter()


async def _until(value, want=True, timeout: float = 5.0):
    """Poll ``value()`` on the running loop until it is truthy (``want=None``: until it is None);
    returns its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = value()
        done = result is None if want is None else bool(result)
        if done or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.001)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_chp_route_changes_freeze_no_closed_connection(no_cyclic_gc, loop):
    """Each round opens a client connection, replaces a route (gc.freeze() with the connection
    open), is served and closed. No closed connection is left, neither for the cyclic collector
    nor in the permanent generation (before the fix, all 20 were: ~40 objects per round)."""
    runner = asyncio.run
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        runner = uvloop.run
    frozen, left = runner(_route_changes_while_clients_come_and_go(20))
    assert left == Counter(), left
    if loop == "uvloop":  # asyncio's own selector transports are cycles (CPython 3.11), frozen with the rest
        per_round = (frozen[-1] - frozen[4]) / (len(frozen) - 5)  # after the first rounds (caches)
        assert per_round < 5, (per_round, frozen)
    gc.unfreeze()  # the permanent generation back to the oldest one, where get_objects sees it
    try:
        frozen_left = alive(ClientConnection, UpstreamConnection, Exchange)
    finally:
        gc.freeze()
    assert frozen_left == Counter(), frozen_left
