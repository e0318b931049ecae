"""In-process protocol tests of the data plane: bytes in, bytes out, no sockets, no event loop.

As uvicorn tests its httptools protocol: a ``ClientConnection`` and the ``UpstreamConnection``s it
dials are real, their transports are fakes that record what is written, and time is a manual clock.

    rig = Rig(compile_config(...))
    client = rig.client()
    client.send(b"GET / HTTP/1.1\\r\\nHost: a.com\\r\\n\\r\\n")
    upstream = rig.upstream()            # the connection the request was sent on
    assert upstream.received().startswith(b"GET / HTTP/1.1\\r\\nHost: a.com\\r\\n")
    upstream.send(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    assert client.response().status == 200

Transports deliver ``connection_lost`` when closed, after the call that closed them returns
(``Rig.settle``, run by every ``send``), as asyncio does on its next loop iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingressd.config import Config
from ingressd.dataplane.http import ClientConnection, ClientContext, Listener
from ingressd.dataplane.stats import AccessLog, Recorder
from ingressd.dataplane.timers import ManualClock, Timers
from ingressd.dataplane.upstream import UpstreamConnection, UpstreamPool
from ingressd.routing import RouteTable


class FakeTransport:
    def __init__(self, rig: Rig, protocol, peer=("203.0.113.7", 50000)):
        self.rig = rig
        self.protocol = protocol
        self.peer = peer
        self.data = bytearray()
        self.writes = 0  # write/writelines calls: each is one send on a socket
        self.closed = False
        self.reading = True
        self.eof_written = False

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.data += data
            self.writes += 1

    def writelines(self, chunks) -> None:
        if not self.closed:
            for chunk in chunks:
                self.data += chunk
            self.writes += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.rig.lost.append(self.protocol)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default=None):
        return {"peername": self.peer}.get(name, default)

    def take(self) -> bytes:
        data, self.data = bytes(self.data), bytearray()
        return data


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


def parse_responses(data: bytes, head_only: bool = False) -> list[Response]:
    """Split what a client received into responses (Content-Length, chunked or to the end)."""
    out = []
    while data:
        end = data.index(b"\r\n\r\n")
        head, data = data[:end].decode("latin-1"), data[end + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        response = Response(status, headers)
        length = response.header("content-length")
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif length is not None:
            response.body, data = data[:int(length)], data[int(length):]
        elif (response.header("transfer-encoding") or "").lower() == "chunked":
            body = b""
            while True:
                line_end = data.index(b"\r\n")
                size = int(data[:line_end], 16)
                data = data[line_end + 2:]
                if size == 0:
                    data = data[data.index(b"\r\n") + 2:]
                    break
                body, data = body + data[:size], data[size + 2:]
            response.body = body
        else:
            response.body, data = data, b""
        response.raw = head.encode("latin-1")
        out.append(response)
    return out


class Client:
    def __init__(self, rig: Rig, scheme: str, peer, proxy_protocol: bool = False):
        self.rig = rig
        self.conn = ClientConnection(rig.ctx, Listener(scheme, 443 if scheme == "https" else 80, rig.hsts,
                                                       proxy_protocol=proxy_protocol))
        self.transport = FakeTransport(rig, self.conn, peer)
        self.conn.connection_made(self.transport)

    def send(self, data: bytes) -> Client:
        self.conn.data_received(data)
        self.rig.settle()
        return self

    def eof(self) -> None:
        if not self.conn.eof_received():
            self.transport.close()
        self.rig.settle()

    def received(self) -> bytes:
        return bytes(self.transport.data)

    def responses(self, head_only: bool = False) -> list[Response]:
        return parse_responses(self.received(), head_only)

    def response(self, head_only: bool = False) -> Response:
        responses = self.responses(head_only)
        assert len(responses) == 1, responses
        return responses[0]

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def disconnect(self) -> None:
        self.transport.close()
        self.rig.settle()


class Upstream:
    def __init__(self, rig: Rig, conn: UpstreamConnection):
        self.rig = rig
        self.conn = conn
        self.transport = FakeTransport(rig, conn, conn.endpoint)
        conn.connection_made(self.transport)

    def send(self, data: bytes) -> Upstream:
        self.conn.data_received(data)
        self.rig.settle()
        return self

    def received(self) -> bytes:
        return bytes(self.transport.data)

    def take(self) -> bytes:
        return self.transport.take()

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def disconnect(self) -> None:
        self.transport.close()
        self.rig.settle()


class Rig:
    """One data plane's client side and upstream pool over fake transports.

    ``dial`` decides what happens when the pool dials an endpoint: ``"connect"`` (at once),
    ``"hold"`` (kept in ``held`` until ``complete_dial``), or ``"refuse"``.
    """

    def __init__(self, config: Config | None = None, *, https_port: int = 443, hsts: bool = True,
                 access_log: AccessLog | None = None):
        self.clock = ManualClock()
        self.timers = Timers(self.clock)
        self.pool = UpstreamPool(self.timers, dial=self._dial)
        self.recorder = Recorder(access_log)
        self.ctx = ClientContext(config or Config(RouteTable()), self.timers, self.pool, self.recorder, https_port)
        self.pool.configure(self.ctx.config.upstream)  # as DataPlane.apply
        self.hsts = hsts
        self.dial = "connect"
        self.dialed: list[tuple[str, int]] = []
        self.held: list[tuple] = []
        self.upstreams: list[Upstream] = []
        self.lost: list = []

    def client(self, scheme: str = "http", peer=("203.0.113.7", 50000), proxy_protocol: bool = False) -> Client:
        return Client(self, scheme, peer, proxy_protocol)

    def upstream(self, index: int = -1) -> Upstream:
        return self.upstreams[index]

    def _dial(self, pool: UpstreamPool, exchange, endpoint) -> None:
        self.dialed.append(endpoint)
        if self.dial == "connect":
            self._connect(pool, exchange, endpoint)
        elif self.dial == "hold":
            self.held.append((pool, exchange, endpoint))
        else:
            pool.dial_failed(exchange, 502, f"cannot connect to upstream {exchange.route.backend.name}: refused")

    def _connect(self, pool, exchange, endpoint) -> None:
        upstream = Upstream(self, UpstreamConnection(pool, endpoint))
        self.upstreams.append(upstream)
        pool.connected(exchange, upstream.conn)

    def complete_dial(self) -> Upstream:
        self._connect(*self.held.pop(0))
        self.settle()
        return self.upstreams[-1]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds, self.timers)
        self.settle()

    def settle(self) -> None:
        while self.lost:
            protocol = self.lost.pop(0)
            protocol.connection_lost(None)
            protocol.transport.protocol = None  # as asyncio's and uvloop's transports drop it
