"""backend-protocol GRPC and GRPCS: a real grpcio server behind ingressd, a real grpcio client through
ingressd's HTTPS port (ALPN h2). Unary and the three streaming kinds, trailers (status, message,
binary details), deadlines, upstream failures as gRPC statuses, a stream across configuration changes."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import trustme

from support import certs
from support import manifests as m
from support.grpcservice import DETAILS, EchoServer, stub
from support.ingressd import free_port, launch, sample_value
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOST = "grpc.example.com"
TLS_HOST = "grpcs.example.com"
DOWN_HOST = "down.example.com"
EMPTY_HOST = "empty.example.com"
SLOW_HOST = "slow.example.com"
HOLE_HOST = "hole.example.com"
STREAM_HOST = "stream.example.com"
NARROW_HOST = "narrow.example.com"
RESTART_HOST = "restart.example.com"
HALF_HOST = "half.example.com"
MUTE_HOST = "mute.example.com"
HOSTS = (HOST, TLS_HOST, DOWN_HOST, EMPTY_HOST, SLOW_HOST, HOLE_HOST, STREAM_HOST, NARROW_HOST, RESTART_HOST, HALF_HOST,
         MUTE_HOST)
UPSTREAM_NAME = "grpcs-svc.default.svc"


@pytest.fixture(scope="module")
def upstreams():
    """A cleartext (h2c) and a TLS grpcio server; the TLS one's certificate from its own CA."""
    upstream_ca = trustme.CA()
    plain = EchoServer()
    secure = EchoServer(certificate=certs.issue(upstream_ca, UPSTREAM_NAME))
    yield plain, secure, upstream_ca
    plain.stop()
    secure.stop()


@pytest.fixture(scope="module")
def narrow():
    """A server that takes 2 concurrent streams per connection."""
    server = EchoServer(max_streams=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def restart_port():
    return free_port()


def listening_socket() -> socket.socket:
    """A listening socket nobody accepts on: connections open, nothing is ever answered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.fixture(scope="module")
def black_hole():
    with listening_socket() as sock:
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def mute_hole():
    with listening_socket() as sock:
        yield sock.getsockname()[1]


def grpc_service(name: str, port: int) -> list[dict]:
    return [m.service(name, [m.port_spec(None, 80, port)]), m.endpoint_slice(name, [(None, port)], ["127.0.0.1"])]


def ingress_file(extra_annotations: dict | None = None) -> list[dict]:
    grpc_ann = {"backend-protocol": "GRPC", "proxy-body-size": "8m", **(extra_annotations or {})}
    tls = [(list(HOSTS), "grpc-tls")]
    return [
        m.ingress("plain", [m.rule(HOST, m.path("/", "grpc-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("secure", [m.rule(TLS_HOST, m.path("/", "grpcs-svc"))], tls=tls,
                  annotations={"backend-protocol": "GRPCS", "proxy-ssl-verify": "on",
                               "proxy-ssl-secret": "default/upstream-ca"}),
        m.ingress("down", [m.rule(DOWN_HOST, m.path("/", "down-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("empty", [m.rule(EMPTY_HOST, m.path("/", "empty-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("slow", [m.rule(SLOW_HOST, m.path("/", "grpc-svc"))], tls=tls,
                  annotations={**grpc_ann, "proxy-read-timeout": "1"}),
        m.ingress("hole", [m.rule(HOLE_HOST, m.path("/", "hole-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("stream", [m.rule(STREAM_HOST, m.path("/", "grpc-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("narrow", [m.rule(NARROW_HOST, m.path("/", "narrow-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("restart", [m.rule(RESTART_HOST, m.path("/", "restart-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("half", [m.rule(HALF_HOST, m.path("/", "half-svc"))], tls=tls, annotations=grpc_ann),
        m.ingress("mute", [m.rule(MUTE_HOST, m.path("/", "mute-svc"))], tls=tls,
                  annotations={**grpc_ann, "proxy-connect-timeout": "1", "proxy-read-timeout": "2"}),
    ]


@pytest.fixture(scope="module")
def px(tmp_path_factory, ca, upstreams, black_hole, mute_hole, narrow, restart_port):
    import base64
    plain, secure, upstream_ca = upstreams
    cert = certs.issue(ca, *HOSTS)
    ca_secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "upstream-ca", "namespace": "default"},
                 "data": {"ca.crt": base64.b64encode(upstream_ca.cert_pem.bytes()).decode()}}
    inst = launch(tmp_path_factory.mktemp("grpc"), {
        "svc.yaml": [*grpc_service("grpc-svc", plain.port), *grpc_service("grpcs-svc", secure.port),
                     *grpc_service("down-svc", free_port()), *grpc_service("hole-svc", black_hole),
                     *grpc_service("mute-svc", mute_hole),
                     *grpc_service("narrow-svc", narrow.port), *grpc_service("restart-svc", restart_port),
                     # the server listens on 127.0.0.1 only: 127.0.0.2 refuses
                     m.service("half-svc", [m.port_spec(None, 80, plain.port)]),
                     m.endpoint_slice("half-svc", [(None, plain.port)], ["127.0.0.2", "127.0.0.1"]),
                     m.service("empty-svc", [m.port_spec(None, 80, 80)]),
                     m.tls_secret("grpc-tls", *cert), ca_secret],
        "ing.yaml": ingress_file(),
    })
    yield inst
    inst.stop()


def channel(px, ca_pem, host: str = HOST) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem.read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{px.https_port}", credentials,
                               options=[("grpc.ssl_target_name_override", host), ("grpc.default_authority", host)])


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


# --- the four kinds of RPC ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", [HOST, TLS_HOST])
def test_unary(px, ca_pem, upstreams, host):
    with channel(px, ca_pem, host) as ch:
        answer, call = stub(ch, "Unary").with_call(b"hello", metadata=(("x-custom", "kept"),), timeout=10)
    assert answer == b"echo:hello"
    assert call.code() == grpc.StatusCode.OK
    server = upstreams[0] if host == HOST else upstreams[1]
    metadata = dict(server.service.metadata[-1])
    assert metadata["x-custom"] == "kept"
    assert metadata["x-forwarded-proto"] == "https"
    assert metadata[":authority"] == host if ":authority" in metadata else True


@pytest.mark.parametrize("host", [HOST, TLS_HOST])
def test_server_streaming(px, ca_pem, host):
    with channel(px, ca_pem, host) as ch:
        assert list(stub(ch, "ServerStream", "unary_stream")(b"50", timeout=10)) == [b"%d" % i for i in range(50)]


def test_client_streaming(px, ca_pem):
    with channel(px, ca_pem) as ch:
        parts = [b"part%d" % i for i in range(20)] + [b"x" * 100_000]
        assert stub(ch, "ClientStream", "stream_unary")(iter(parts), timeout=10) == b",".join(parts)


def test_large_messages_both_ways(px, ca_pem):
    """Bigger than every flow-control window on the way: backpressure, not loss."""
    big = bytes(range(256)) * 8192  # 2 MiB
    with channel(px, ca_pem) as ch:
        assert stub(ch, "Unary")(big, timeout=20) == b"echo:" + big


def test_bidirectional_streaming(px, ca_pem):
    """Each answer comes back before the next request is sent: a real two-way stream."""
    with channel(px, ca_pem) as ch:
        requests = Feed()
        responses = stub(ch, "Bidi", "stream_stream")(iter(requests), timeout=10)
        for i in range(10):
            requests.put(b"m%d" % i)
            assert next(responses) == b"re:m%d" % i
        requests.close()
        assert list(responses) == []


def test_a_client_that_reads_nothing_stops_the_upstream(px, ca_pem, upstreams):
    """Flow control tied to backpressure: a raw HTTP/2 client opens no window beyond its first 64 KiB;
    the server's stream of 64 KiB messages stalls within a few windows (not gigabytes later). When the
    client goes away, the upstream call is cancelled."""
    service = upstreams[0].service
    service.flooded = 0
    with raw_stream(px, ca_pem, HOST, b"/test.Echo/Flood") as (sock, conn):
        history = []

        def stalled() -> bool:
            history.append(service.flooded)
            return len(history) > 4 and history[-1] == history[-5] and history[-1] > 0
        wait_until(stalled, 20, 0.25, message="the upstream never stopped producing")
        assert service.flooded < 8 * 1024 * 1024, service.flooded
        # Reading resumes the flow: open the windows wide and the stream moves again.
        before = service.flooded
        conn.increment_flow_control_window(1 << 24)
        conn.increment_flow_control_window(1 << 24, stream_id=1)
        sock.sendall(conn.data_to_send())
        wait_until(lambda: service.flooded > before, 10, message="the stream did not move on again")
    # The client went away: ingressd cancels the upstream stream (RST_STREAM), the handler ends.
    wait_until(lambda: service.flooding == 0, 10, message="the upstream call was not cancelled")


# --- statuses and trailers ----------------------------------------------------------------------------


def test_server_error_status_message_and_details_pass_through(px, ca_pem):
    with channel(px, ca_pem) as ch:
        error = rpc_error(lambda: stub(ch, "Fail")(b"widget", timeout=10))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such thing: widget"
    assert dict(error.trailing_metadata())["grpc-status-details-bin"] == DETAILS


def test_upstream_down_is_unavailable(px, ca_pem):
    with channel(px, ca_pem, DOWN_HOST) as ch:
        error = rpc_error(lambda: stub(ch, "Unary")(b"x", timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot connect to upstream" in error.details()


def test_no_endpoints_is_unavailable(px, ca_pem):
    with channel(px, ca_pem, EMPTY_HOST) as ch:
        error = rpc_error(lambda: stub(ch, "Unary")(b"x", timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "empty-svc" in error.details()


def test_read_timeout_is_deadline_exceeded(px, ca_pem):
    """proxy-read-timeout 1s and a handler taking 5s; the client itself sets no deadline."""
    started = time.monotonic()
    with channel(px, ca_pem, SLOW_HOST) as ch:
        error = rpc_error(lambda: stub(ch, "Slow")(b"5"))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not answer within 1s" in error.details()
    assert time.monotonic() - started < 4


def test_client_deadline(px, ca_pem):
    with channel(px, ca_pem) as ch:
        error = rpc_error(lambda: stub(ch, "Slow")(b"5", timeout=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpc_timeout_is_enforced_by_ingressd(px, ca_pem):
    """A raw HTTP/2 client (no deadline of its own) sends grpc-timeout: 500m to an upstream that never
    answers: ingressd ends the call with DEADLINE_EXCEEDED in a trailers-only response."""
    started = time.monotonic()
    headers, data, trailers = raw_call(px, ca_pem, HOLE_HOST, [(b"grpc-timeout", b"500m")])
    assert time.monotonic() - started < 3
    fields = dict(headers)
    assert fields[b":status"] == b"200"
    assert fields[b"content-type"] == b"application/grpc"
    assert fields[b"grpc-status"] == b"4"
    assert b"grpc-timeout" in fields[b"grpc-message"]
    assert data == b"" and trailers is None


def curl_http1(px, ca_pem, *headers: str) -> bytes:
    proc = subprocess.run(
        ["curl", "-sS", "--http1.1", "--raw", "--cacert", str(ca_pem), "--resolve", f"{HOST}:{px.https_port}:127.0.0.1",
         "-H", "content-type: application/grpc", *(arg for h in headers for arg in ("-H", h)), "--data-binary", "@-",
         f"https://{HOST}:{px.https_port}/test.Echo/Unary"], input=b"\x00\x00\x00\x00\x02hi", capture_output=True,
        timeout=20)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_an_upstream_that_never_speaks_http2_fails_every_call(px, ca_pem):
    """The black hole accepts TCP and never sends SETTINGS: the call sent at once and those waiting for
    the SETTINGS all end after proxy-connect-timeout (the HTTP/2 handshake is part of connecting)."""
    started = time.monotonic()
    with channel(px, ca_pem, MUTE_HOST) as ch:
        unary = stub(ch, "Unary")
        errors = concurrently(3, lambda: rpc_error(lambda: unary(b"x", timeout=30)))
    assert time.monotonic() - started < 10
    assert {error.code() for error in errors} == {grpc.StatusCode.DEADLINE_EXCEEDED}
    details = sorted(error.details() for error in errors)
    assert all("sent no HTTP/2 SETTINGS within 1s" in d for d in details), details


def test_http1_client_with_te_trailers_gets_chunked_trailers(px, ca_pem):
    out = curl_http1(px, ca_pem, "TE: trailers")
    assert b"echo:hi" in out
    assert out.endswith(b"\r\n0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n"), out[-60:]


def test_http1_client_without_te_trailers_gets_none(px, ca_pem):
    out = curl_http1(px, ca_pem)
    assert b"echo:hi" in out
    assert out.endswith(b"echo:hi\r\n0\r\n\r\n"), out[-60:]


# --- connections --------------------------------------------------------------------------------------


def concurrently(n: int, call) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def test_calls_share_one_upstream_connection(px, ca_pem, upstreams):
    """One client connection (one worker process): 20 concurrent calls are streams of one upstream connection."""
    service = upstreams[0].service
    with channel(px, ca_pem) as ch:
        unary = stub(ch, "Unary")
        assert unary(b"warm", timeout=10) == b"echo:warm"
        del service.peers[:]
        assert concurrently(20, lambda: unary(b"x", timeout=10)) == [b"echo:x"] * 20
    assert len(set(service.peers)) == 1, service.peers


def test_max_concurrent_streams_of_the_server_is_respected(px, ca_pem, narrow):
    """The server takes 2 streams per connection: 6 concurrent calls need (and get) 3 connections."""
    with channel(px, ca_pem, NARROW_HOST) as ch:
        slow = stub(ch, "Slow")
        assert concurrently(6, lambda: slow(b"0.5", timeout=10)) == [b"late"] * 6
    assert len(set(narrow.service.peers)) >= 3, narrow.service.peers


def test_a_refused_endpoint_is_skipped_for_the_next(px, ca_pem):
    """proxy-next-upstream "error" (the default): a refused connection tries the next endpoint."""
    with channel(px, ca_pem, HALF_HOST) as ch:
        unary = stub(ch, "Unary")
        assert [unary(b"%d" % i, timeout=10) for i in range(4)] == [b"echo:%d" % i for i in range(4)]


def test_upstream_restart_goaway_then_a_new_connection(px, ca_pem, restart_port):
    """A server that stops sends GOAWAY: ingressd drops that connection and dials the new server."""
    server = EchoServer(restart_port)
    try:
        with channel(px, ca_pem, RESTART_HOST) as ch:
            unary = stub(ch, "Unary")
            assert unary(b"one", timeout=10) == b"echo:one"
            server.stop()
            server = EchoServer(restart_port)
            assert unary(b"two", timeout=10) == b"echo:two"
            assert server.service.peers  # served by the new server
    finally:
        server.stop()


def test_a_call_in_flight_finishes_after_the_servers_graceful_goaway(px, ca_pem, restart_port):
    """grpcio's graceful stop sends GOAWAY (then PING, GOAWAY) and still answers the calls it has:
    they complete through ingressd (h2 alone would refuse every frame after the first GOAWAY)."""
    server = EchoServer(restart_port)
    try:
        with channel(px, ca_pem, RESTART_HOST) as ch, ThreadPoolExecutor(1) as pool:
            slow = stub(ch, "Slow")
            assert slow(b"0", timeout=10) == b"late"  # the connection exists
            del server.service.peers[:]
            call = pool.submit(slow, b"1.5", timeout=20)
            wait_until(lambda: server.service.peers, 10, message="the call did not reach the server")
            stopped = server.server.stop(grace=10)  # GOAWAY now, the call in the handler still answered
            assert call.result(timeout=20) == b"late"
            stopped.wait(10)
    finally:
        server.stop()


# --- a stream across configuration changes ------------------------------------------------------------


def test_bidi_stream_survives_20_configuration_changes(px, ca_pem):
    with channel(px, ca_pem, STREAM_HOST) as ch:
        requests = Feed()
        responses = stub(ch, "Bidi", "stream_stream")(iter(requests), timeout=60)
        requests.put(b"before")
        assert next(responses) == b"re:before"
        for i in range(20):
            before = config_hash(px)
            px.dir.write("ing.yaml", ingress_file({"proxy-body-size": f"{i + 2}m"}))
            wait_until(lambda: config_hash(px) not in (before, 0), 10, 0.05, message=f"configuration change {i}")
            requests.put(b"during%d" % i)
            assert next(responses) == b"re:during%d" % i
        requests.put(b"after")
        assert next(responses) == b"re:after"
        requests.close()
        assert list(responses) == []


# --- helpers -----------------------------------------------------------------------------------------


def config_hash(px) -> float:
    return sample_value(px.metrics(), "nginx_ingress_controller_config_hash")


class Feed:
    """Request messages for a streaming call, put one at a time; ``close`` ends the stream."""

    _END = object()

    def __init__(self) -> None:
        self.items: list = []
        self.ready = threading.Condition()

    def put(self, item) -> None:
        with self.ready:
            self.items.append(item)
            self.ready.notify()

    def close(self) -> None:
        self.put(self._END)

    def __iter__(self):
        while True:
            with self.ready:
                self.ready.wait_for(lambda: self.items)
                item = self.items.pop(0)
            if item is self._END:
                return
            yield item


@contextlib.contextmanager
def raw_stream(px, ca_pem, host: str, method: bytes, extra=()):
    """A gRPC call opened with ``h2`` over TLS (one request message sent): yields (socket, connection)."""
    context = ssl.create_default_context(cafile=str(ca_pem))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", px.https_port), 10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", host.encode()),
                              (b":path", method), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
                              *extra])
        conn.send_data(1, b"\x00\x00\x00\x00\x01x", end_stream=True)
        sock.sendall(conn.data_to_send())
        sock.settimeout(10)
        yield sock, conn


def raw_call(px, ca_pem, host: str, extra: list[tuple[bytes, bytes]], method: bytes = b"/test.Echo/Unary"):
    """One gRPC call with ``h2`` over TLS: (response headers, DATA, trailers or None)."""
    with raw_stream(px, ca_pem, host, method, extra) as (sock, conn):
        headers, data, trailers = None, b"", None
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before the stream ended")
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = event.headers
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.TrailersReceived):
                    trailers = event.headers
                elif isinstance(event, h2.events.StreamEnded):
                    return headers, data, trailers
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event.error_code}")
            sock.sendall(conn.data_to_send())
