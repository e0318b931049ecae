"""A real grpcio test service, without protoc: generic handlers whose messages are raw bytes.

``/test.Echo/Unary`` answers ``b"echo:" + request``; ``ServerStream`` answers ``int(request)``
messages ``b"0"``, ``b"1"``...; ``ClientStream`` answers the requests joined with ``b","``; ``Bidi``
answers each request with ``b"re:" + request`` as it comes; ``Fail`` ends with NOT_FOUND, a message
and ``grpc-status-details-bin`` in the trailers; ``Flood`` streams 64 KiB messages as fast as they
are taken; ``Slow`` answers after ``float(request)`` seconds
(waiting on an event that ``stop`` sets, so no handler outlives its server).
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc

SERVICE = "test.Echo"
DETAILS = b"\x08\x05\x12\x07details"  # arbitrary binary trailer bytes


def _identity(data: bytes) -> bytes:
    return data


class EchoService(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.peers: list[str] = []
        self.metadata: list[tuple] = []
        self._methods = {
            f"/{SERVICE}/Unary": grpc.unary_unary_rpc_method_handler(self.unary, _identity, _identity),
            f"/{SERVICE}/ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, _identity, _identity),
            f"/{SERVICE}/ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, _identity, _identity),
            f"/{SERVICE}/Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, _identity, _identity),
            f"/{SERVICE}/Fail": grpc.unary_unary_rpc_method_handler(self.fail, _identity, _identity),
            f"/{SERVICE}/Slow": grpc.unary_unary_rpc_method_handler(self.slow, _identity, _identity),
            f"/{SERVICE}/Flood": grpc.unary_stream_rpc_method_handler(self.flood, _identity, _identity),
        }
        self.flooded = 0  # bytes Flood produced
        self.flooding = 0  # Flood calls under way

    def service(self, handler_call_details):
        return self._methods.get(handler_call_details.method)

    def unary(self, request: bytes, context) -> bytes:
        self.peers.append(context.peer())
        self.metadata.append(tuple(context.invocation_metadata()))
        return b"echo:" + request

    def server_stream(self, request: bytes, context):
        for i in range(int(request)):
            yield b"%d" % i

    def client_stream(self, requests, context) -> bytes:
        return b",".join(requests)

    def bidi(self, requests, context):
        for request in requests:
            yield b"re:" + request

    def fail(self, request: bytes, context) -> bytes:
        context.set_trailing_metadata((("grpc-status-details-bin", DETAILS),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())

    def flood(self, request: bytes, context):
        """64 KiB messages for as long as the call lasts (``flooded`` counts them)."""
        chunk = b"f" * 65536
        self.flooding += 1
        try:
            while context.is_active() and not self.stopping.is_set():
                self.flooded += len(chunk)
                yield chunk
        finally:
            self.flooding -= 1

    def slow(self, request: bytes, context) -> bytes:
        self.peers.append(context.peer())
        self.stopping.wait(float(request))
        return b"late"


class EchoServer:
    """The service on 127.0.0.1 (cleartext h2c, or TLS with ALPN h2 given ``certificate``), announcing
    SETTINGS_MAX_CONCURRENT_STREAMS ``max_streams`` if given."""

    def __init__(self, port: int = 0, certificate: tuple[bytes, bytes] | None = None, max_streams: int | None = None):
        self.service = EchoService()
        options = [] if max_streams is None else [("grpc.max_concurrent_streams", max_streams)]
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
        self.server.add_generic_rpc_handlers((self.service,))
        if certificate is None:
            self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        else:
            credentials = grpc.ssl_server_credentials([(certificate[1], certificate[0])])
            self.port = self.server.add_secure_port(f"127.0.0.1:{port}", credentials)
        self.server.start()

    def stop(self) -> None:
        self.service.stopping.set()
        self.server.stop(0).wait(10)


def stub(channel: grpc.Channel, method: str, kind: str = "unary_unary"):
    """The callable of ``/test.Echo/METHOD`` on ``channel`` (``kind``: unary_unary, unary_stream,
    stream_unary, stream_stream), with raw bytes messages."""
    return getattr(channel, kind)(f"/{SERVICE}/{method}", request_serializer=_identity,
                                  response_deserializer=_identity)
