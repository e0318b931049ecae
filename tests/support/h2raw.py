"""A raw HTTP/2 client (frames built by ``h2``) over a real socket to ingressd, and a websocket
spoken over one of its streams (RFC 8441) with the ``websockets`` sans-I/O protocol."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events

from . import certs

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawH2:
    """An h2 client connection to 127.0.0.1:``port``: TLS with ALPN h2 when ``ca`` is given, else
    h2c with prior knowledge."""

    def __init__(self, port: int, host: str, ca=None, timeout: float = 10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ca is not None:
            ctx = certs.client_context(ca)
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
            assert self.sock.selected_alpn_protocol() == "h2"
            self.scheme = b"https"
        else:
            self.sock = raw
            self.scheme = b"http"
        self.host = host
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.send()
        self.events: list = []
        self.closed = False
        self.data: dict[int, bytearray] = {}  # DATA received per stream
        self.ack = True  # give received DATA back to the server's windows (False: a zero-window reader)

    def send(self, data: bytes | None = None) -> None:
        self.sock.sendall(data if data is not None else self.conn.data_to_send())

    def read(self, timeout: float = 5.0) -> list:
        """Events of one read (nothing when the socket stays quiet for ``timeout``); DATA is
        acknowledged at once."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            return []
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                if event.flow_controlled_length and self.ack:
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.send()
        self.events += events
        return events

    def headers(self, path: str = "/echo", extra=()) -> list:
        """A GET's request headers for ``path`` on this connection's host."""
        return [(b":method", b"GET"), (b":scheme", self.scheme), (b":authority", self.host.encode()),
                (b":path", path.encode()), *extra]

    def request(self, stream_id: int, path: str = "/echo", end: bool = True, extra=()) -> None:
        self.conn.send_headers(stream_id, self.headers(path, extra), end_stream=end)

    def until(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if predicate(e)]
            if found:
                return found[0]
            if time.monotonic() >= deadline or self.closed:
                return None
            self.read(0.2)

    def settings(self) -> dict:
        event = self.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        assert event is not None, "no SETTINGS from the server"
        return {code: change.new_value for code, change in event.changed_settings.items()}

    def goaway(self, timeout: float = 10.0):
        """The server's GOAWAY (h2's ConnectionTerminated), or None."""
        return self.until(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout)

    def close(self) -> None:
        self.sock.close()


class H2WebSocket:
    """A websocket on one extended CONNECT stream of ``client`` (RFC 8441): ``websockets``' client
    protocol frames and parses the messages; the handshake is the stream's HEADERS (it is shown a
    synthetic 101 so that it moves to OPEN, since HTTP/2 has no Sec-WebSocket-Accept)."""

    def __init__(self, client: RawH2, stream_id: int, path: str = "/ws", extra=()):
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.client = client
        self.stream_id = stream_id
        self.proto = ClientProtocol(parse_uri(f"ws://{client.host}{path}"), max_size=None)
        self.request = self.proto.connect()
        client.conn.send_headers(stream_id, [
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", client.scheme),
            (b":authority", client.host.encode()), (b":path", path.encode()),
            (b"sec-websocket-version", b"13"), *extra])
        client.send()
        self.response = None
        self.status = None
        self.used = 0  # DATA bytes of the stream already given to the protocol

    def handshake(self, timeout: float = 10.0) -> int:
        """The :status of the answer; with 200 the protocol is open."""
        sid = self.stream_id
        event = self.client.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid
                                  or isinstance(e, h2.events.StreamReset) and e.stream_id == sid, timeout)
        assert event is not None, "no answer to the extended CONNECT"
        if isinstance(event, h2.events.StreamReset):
            self.status = 0
            return 0
        self.response = dict(event.headers)
        self.status = int(self.response[b":status"])
        if self.status == 200:
            key = self.request.headers["Sec-WebSocket-Key"].encode()
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
            self.proto.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.proto.events_received()
        return self.status

    def _flush(self, end: bool = False) -> None:
        data = b"".join(self.proto.data_to_send())
        conn = self.client.conn
        while data:  # within the windows, waiting for WINDOW_UPDATE when needed
            window = min(conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                self.client.read(0.5)
                continue
            conn.send_data(self.stream_id, data[:window])
            data = data[window:]
            self.client.send()
        if end:
            conn.end_stream(self.stream_id)
            self.client.send()

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.proto.send_text(message.encode())
        else:
            self.proto.send_binary(message)
        self._flush()

    def recv(self, timeout: float = 10.0):
        from websockets.frames import Opcode

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buffered = self.client.data.get(self.stream_id, b"")
            if len(buffered) > self.used:
                self.proto.receive_data(bytes(buffered[self.used:]))
                self.used = len(buffered)
            for frame in self.proto.events_received():
                if frame.opcode is Opcode.TEXT:
                    return frame.data.decode()
                if frame.opcode is Opcode.BINARY:
                    return frame.data
            if self.client.closed:
                break
            self.client.read(0.2)
        raise TimeoutError("no websocket message")

    def close_frame(self) -> None:
        """The websocket closing handshake's first frame (the upstream answers and closes)."""
        self.proto.send_close(1000, "bye")
        self._flush()

    def ended(self, timeout: float = 10.0):
        sid = self.stream_id
        return self.client.until(lambda e: isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
                                 and e.stream_id == sid, timeout)
