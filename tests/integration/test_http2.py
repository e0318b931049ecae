"""HTTP/2 from clients (``serve``'s default, ``--no-http2`` to turn off): curl --http2 through ingressd to the HTTP/1.1 backends,
and the attack classes with raw frames built by ``h2`` over a real TLS socket."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time

import h2.errors
import h2.events
import h2.settings
import pytest

from support import certs
from support import client as h
from support import manifests as m
from support.h2raw import RawH2
from support.ingressd import launch, sample_value
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOST = "h2.example.com"


@pytest.fixture(scope="module")
def h2px(tmp_path_factory, backend, ca):
    cert = certs.issue(ca, HOST, "small.example.com")
    inst = launch(tmp_path_factory.mktemp("http2"), {
        "svc.yaml": backend.services("a", "b"),
        "secrets.yaml": [m.tls_secret("h2-tls", *cert)],
        "ing.yaml": [
            m.ingress("ing-h2", [m.rule(HOST, m.path("/", "svc-a"))], tls=[([HOST], "h2-tls")]),
            m.ingress("ing-small", [m.rule("small.example.com", m.path("/", "svc-b"))],
                      tls=[(["small.example.com"], "h2-tls")], annotations={"proxy-body-size": "1k"}),
        ],
    }, args=["--workers", "2"])  # HTTP/2 is on by default, in every worker process
    yield inst
    inst.stop()


def curl2(inst, ca_pem, path, *args, host=HOST, timeout=60.0):
    return h.curl("--http2", "--cacert", str(ca_pem), "--resolve", inst.resolve(host, https=True), *args,
                  inst.url(host, path, https=True), timeout=timeout)


# --- curl --http2 -------------------------------------------------------------------------------


def test_get(h2px, ca_pem):
    proc = curl2(h2px, ca_pem, "/echo?x=1", "-D", "-", "-H", "X-Custom: kept", "-H", "Cookie: a=1",
                 "-H", "Cookie: b=2")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200"), head
    assert b"strict-transport-security:" in head.lower()
    assert b"date:" in head.lower()
    up = json.loads(body)["header_map"]
    assert up["host"] == f"{HOST}:{h2px.https_port}"  # :authority as curl sent it
    assert up["x-forwarded-proto"] == "https"
    assert up["x-forwarded-for"] == "127.0.0.1"
    assert up["x-custom"] == "kept"
    assert up["cookie"] == "a=1; b=2"
    assert len(up["x-request-id"]) == 32


def test_post_body(h2px, ca_pem):
    data = bytes(range(256)) * 1000
    proc = curl2(h2px, ca_pem, "/echo", "--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
                 input=None) if False else h.curl(
        "--http2", "--cacert", str(ca_pem), "--resolve", h2px.resolve(HOST, https=True), "--data-binary", "@-",
        h2px.url(HOST, "/echo", https=True), input=data)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["body_len"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()


def test_post_chunked_unknown_length(h2px, ca_pem):
    """A body without Content-Length reaches the HTTP/1.1 upstream chunked."""
    data = b"x" * 300_000
    proc = h.curl("--http2", "--cacert", str(ca_pem), "--resolve", h2px.resolve(HOST, https=True),
                  "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", h2px.url(HOST, "/echo", https=True),
                  input=data)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["body_len"] == len(data)


def test_large_download(h2px, ca_pem):
    size = 20 * 1024 * 1024
    proc = curl2(h2px, ca_pem, f"/download?size={size}", "-o", "-", "-w", "%{http_version} %{size_download}",
                 timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(b"2 %d" % size)


def test_parallel_streams(h2px, ca_pem):
    urls = []
    for i in range(60):
        urls += ["-o", "/dev/null", h2px.url(HOST, f"/echo?i={i}", https=True)]
    proc = h.curl("--http2", "--parallel", "--parallel-max", "60", "--cacert",
                  str(ca_pem), "--resolve", h2px.resolve(HOST, https=True), "-w", "%{http_code} %{num_connects}\n",
                  *urls)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().split()
    codes = lines[0::2]
    assert codes == ["200"] * 60, lines
    assert sum(int(n) for n in lines[1::2]) <= 2, lines  # multiplexed on (about) one connection


def test_local_answers(h2px, ca_pem):
    proc = curl2(h2px, ca_pem, "/", "-k", "-D", "-", "-o", "/dev/null", host="nothing.example.com")
    assert proc.stdout.startswith(b"HTTP/2 404"), proc.stdout



def test_body_over_the_limit_gets_413_then_reset_no_error(h2px, ca):
    """As nginx: the 413 is sent at once, then RST_STREAM NO_ERROR tells the client to stop sending
    (RFC 9113 §8.1). Raw frames, because curl 7.88 reads that reset as an error (exit 92) when it
    comes before curl has sent its END_STREAM: a race in the client, which made a curl test flaky."""
    c = RawH2(h2px.https_port, "small.example.com", ca)
    c.conn.send_headers(1, [(b":method", b"POST"), *c.headers()[1:], (b"content-length", b"10000")])
    c.conn.send_data(1, b"y" * 5000)  # over the limit, and more to come
    c.send()
    head = c.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == 1)
    assert head is not None and dict(head.headers)[b":status"] == b"413"
    reset = c.until(lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == 1)
    assert reset is not None and reset.error_code == h2.errors.ErrorCodes.NO_ERROR
    c.close()


def test_metrics_and_access_log(h2px, ca_pem):
    """Counted with the same labels as HTTP/1.1, logged with protocol HTTP/2.0."""
    labels = dict(namespace="default", ingress="ing-h2", service="svc-a", host=HOST, method="POST", status="200")
    before = sample_value(h2px.metrics(), "nginx_ingress_controller_requests", **labels)
    marker = f"log-{time.monotonic_ns()}"
    for _ in range(3):
        proc = curl2(h2px, ca_pem, f"/echo?{marker}", "-d", "x=1", "-o", "/dev/null")
        assert proc.returncode == 0, proc.stderr
    wait_until(lambda: sample_value(h2px.metrics(), "nginx_ingress_controller_requests", **labels) - before == 3,
               timeout=10)
    wait_until(lambda: f"POST /echo?{marker} HTTP/2.0" in h2px.stdout(), timeout=10)


def test_http11_still_offered(h2px, ca_pem):
    proc = curl2(h2px, ca_pem, "/echo", "--http1.1", "-o", "/dev/null", "-w", "%{http_version}")
    assert proc.stdout == b"1.1", proc.stdout


def test_no_http2(tmp_path, backend, ca, ca_pem):
    cert = certs.issue(ca, HOST)
    inst = launch(tmp_path, {
        "svc.yaml": backend.services("a"),
        "secrets.yaml": [m.tls_secret("h2-tls", *cert)],
        "ing.yaml": [m.ingress("ing-h2", [m.rule(HOST, m.path("/", "svc-a"))], tls=[([HOST], "h2-tls")])],
    }, args=["--no-http2", "--workers", "1"])
    try:
        ctx = certs.client_context(ca, alpn=["h2", "http/1.1"])
        with certs.handshake(inst.https_port, HOST, ctx) as s:
            assert s.selected_alpn_protocol() == "http/1.1"
        proc = curl2(inst, ca_pem, "/echo", "-o", "/dev/null", "-w", "%{http_version}")
        assert proc.stdout == b"1.1", proc.stdout
    finally:
        inst.stop()


# --- raw frames ---------------------------------------------------------------------------------


def test_raw_get_and_request_shape(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    c.request(1, "/echo?raw=1")
    c.send()
    done = c.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 1)
    assert done is not None
    head = [e for e in c.events if isinstance(e, h2.events.ResponseReceived)][0]
    assert dict(head.headers)[b":status"] == b"200"
    settings = [e for e in c.events if isinstance(e, h2.events.RemoteSettingsChanged)][0]
    codes = h2.settings.SettingCodes
    assert settings.changed_settings[codes.MAX_CONCURRENT_STREAMS].new_value == 128
    assert settings.changed_settings[codes.MAX_HEADER_LIST_SIZE].new_value == 32 * 1024
    c.close()


def test_connection_specific_header_refused(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    # h2's own client refuses to send it: frame the header block by hand with its encoder.
    from hyperframe.frame import HeadersFrame
    frame = HeadersFrame(1)
    frame.data = c.conn.encoder.encode(c.headers() + [(b"connection", b"keep-alive")])
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    c.send(frame.serialize())
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    c.close()


def test_missing_pseudo_header_refused(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    from hyperframe.frame import HeadersFrame
    frame = HeadersFrame(1)
    frame.data = c.conn.encoder.encode([(b":method", b"GET"), (b":authority", HOST.encode())])  # no :path, :scheme
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    c.send(frame.serialize())
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    c.close()


def test_concurrent_streams_refused_beyond_128(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    c.conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    c.conn.remote_settings.max_concurrent_streams = 1000  # let the test client exceed the server's limit
    token = f"h2-{time.monotonic_ns()}"
    ids = [1 + 2 * i for i in range(130)]
    for stream_id in ids:
        c.request(stream_id, f"/stream?chunks=2&hold={token}")
    c.send()
    refused = c.until(lambda e: isinstance(e, h2.events.StreamReset))
    assert refused is not None and refused.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
    assert refused.stream_id in ids[128:]
    # the 128 admitted streams are answered once released
    assert h.curl("--cacert", "/dev/null", "-k", "--resolve", h2px.resolve(HOST, https=True),
                  h2px.url(HOST, f"/release?token={token}", https=True)).returncode == 0
    ended = lambda: {e.stream_id for e in c.events if isinstance(e, h2.events.StreamEnded)}
    wait_until(lambda: c.read(0.2) is not None and len(ended()) >= 128, timeout=20)
    resets = {e.stream_id for e in c.events if isinstance(e, h2.events.StreamReset)}
    assert resets == set(ids[128:]), resets
    assert ended() == set(ids[:128])
    c.close()


def test_rapid_reset(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    other = RawH2(h2px.https_port, HOST, ca)
    started = time.monotonic()
    for i in range(300):
        stream_id = 1 + 2 * i
        c.request(stream_id, "/slow?delay=5")
        c.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        if i % 20 == 0:
            try:
                c.send()
            except OSError:
                break
    try:
        c.send()
    except OSError:
        pass
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert time.monotonic() - started < 5
    # another connection is served meanwhile
    other.request(1)
    other.send()
    assert other.until(lambda e: isinstance(e, h2.events.StreamEnded)) is not None
    c.close()
    other.close()


def test_ping_flood(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    for i in range(500):
        c.conn.ping(b"%08d" % i)
    try:
        c.send()
    except OSError:
        pass
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    c.close()


def test_settings_flood(h2px, ca):
    c = RawH2(h2px.https_port, HOST, ca)
    for i in range(300):
        c.conn.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 4096 + i})
    try:
        c.send()
    except OSError:
        pass
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    c.close()


def test_window_update_flood(h2px, ca):
    """WINDOW_UPDATE frames with nothing sent to open a window for: GOAWAY ENHANCE_YOUR_CALM."""
    c = RawH2(h2px.https_port, HOST, ca)
    for _ in range(400):
        c.conn.increment_flow_control_window(1)
    try:
        c.send()
    except OSError:
        pass
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    c.close()


def test_continuation_flood(h2px, ca):
    """HEADERS then CONTINUATION frames without END_HEADERS: cut once past the head limit."""
    from hyperframe.frame import ContinuationFrame, HeadersFrame
    c = RawH2(h2px.https_port, HOST, ca)
    block = c.conn.encoder.encode(c.headers())
    frame = HeadersFrame(1)
    frame.data = block
    c.send(frame.serialize())
    filler = b"\x40\x03abc\x03def" * 1000  # literal headers, never ending
    sent = 0
    try:
        for _ in range(200):
            cont = ContinuationFrame(1)
            cont.data = filler[:16000]
            c.send(cont.serialize())
            sent += 1
    except OSError:
        pass
    event = c.goaway()
    assert event is not None
    assert event.error_code in (h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, h2.errors.ErrorCodes.PROTOCOL_ERROR)
    c.close()


def test_header_list_too_large(h2px, ca):
    """An HPACK bomb: one indexed 3000-byte field referenced twelve times, a 4 KB block that decodes
    past the 32 KiB header list limit: GOAWAY ENHANCE_YOUR_CALM."""
    from hyperframe.frame import HeadersFrame
    c = RawH2(h2px.https_port, HOST, ca)
    frame = HeadersFrame(1)
    frame.data = c.conn.encoder.encode(c.headers(extra=[(b"x-big", b"v" * 3000)] * 12))
    assert len(frame.data) < 16384
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    c.send(frame.serialize())
    event = c.goaway()
    assert event is not None and event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    c.close()


def test_goaway_counted_in_metrics(h2px, ca):
    test_ping_flood(h2px, ca)
    wait_until(lambda: 'ingressd_http2_goaway_total{code="ENHANCE_YOUR_CALM"}' in h2px.metrics(), timeout=10)


# --- timeouts and slow readers (keep-alive, client-header-timeout, client-body-timeout: 2 s) ------


@pytest.fixture(scope="module")
def sink():
    """An upstream that accepts connections and never reads from them."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture(scope="module")
def h2short(tmp_path_factory, backend, ca, sink):
    cert = certs.issue(ca, HOST, "sink.example.com")
    inst = launch(tmp_path_factory.mktemp("http2-short"), {
        "svc.yaml": backend.services("a") + m.service_with_endpoints("svc-sink", sink),
        "secrets.yaml": [m.tls_secret("h2-tls", *cert)],
        "cm.yaml": [{"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
                     "data": {"keep-alive": "2", "client-header-timeout": "2", "client-body-timeout": "2",
                              "keep-alive-requests": "10"}}],
        "ing.yaml": [m.ingress("ing-h2", [m.rule(HOST, m.path("/", "svc-a"))], tls=[([HOST], "h2-tls")]),
                     m.ingress("ing-sink", [m.rule("sink.example.com", m.path("/", "svc-sink"))],
                               tls=[(["sink.example.com"], "h2-tls")], annotations={"proxy-body-size": "0"})],
    }, args=["--workers", "1"])
    yield inst
    inst.stop()


def test_idle_connection_goaway(h2short, ca):
    c = RawH2(h2short.https_port, HOST, ca)
    c.request(1)
    c.send()
    assert c.until(lambda e: isinstance(e, h2.events.StreamEnded)) is not None
    started = time.monotonic()
    event = c.goaway(timeout=10)
    assert event is not None and event.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert 0.5 < time.monotonic() - started < 6  # 2 s, on the timers' coarse clock
    c.close()


def test_incomplete_head_timeout(h2short, ca):
    """HEADERS without END_HEADERS and no CONTINUATION: closed after client-header-timeout."""
    from hyperframe.frame import HeadersFrame
    c = RawH2(h2short.https_port, HOST, ca)
    assert c.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged)) is not None  # acknowledged now
    frame = HeadersFrame(1)
    frame.data = c.conn.encoder.encode(c.headers())
    c.send(frame.serialize())
    started = time.monotonic()
    event = c.goaway(timeout=10)
    assert event is not None and event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert 0.5 < time.monotonic() - started < 6  # 2 s, on the timers' coarse clock
    c.close()


def test_stalled_body_408(h2short, ca):
    c = RawH2(h2short.https_port, HOST, ca)
    c.conn.send_headers(1, [(b":method", b"POST"), *c.headers()[1:], (b"content-length", b"100")])
    c.conn.send_data(1, b"x" * 10)
    c.send()
    head = c.until(lambda e: isinstance(e, h2.events.ResponseReceived), timeout=10)
    assert head is not None and dict(head.headers)[b":status"] == b"408"
    # the connection itself stays usable
    c.request(3)
    c.send()
    assert c.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 3) is not None
    c.close()


def test_zero_window_reader_stays_bounded(h2short, ca):
    """A client that opens no window for 4 large downloads: ingressd stops reading the upstream
    (its memory does not grow by the 400 MB), and other streams on the connection go on."""
    c = RawH2(h2short.https_port, HOST, ca)
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    c.send()
    before = h2short.memory_kb("VmRSS")
    for stream_id in (1, 3, 5, 7):
        c.request(stream_id, "/download?size=100000000")
    c.send()
    heads = lambda: [e for e in c.events if isinstance(e, h2.events.ResponseReceived)]
    wait_until(lambda: c.read(0.2) is not None and len(heads()) == 4, timeout=10)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        c.read(0.2)
    grown = h2short.memory_kb("VmRSS") - before
    assert grown < 30_000, f"ingressd grew by {grown} kB for stalled streams"
    # one stream's window opened: it is served while the others stay stalled
    c.conn.increment_flow_control_window(1_000_000, stream_id=1)
    c.conn.increment_flow_control_window(10_000_000)
    c.send()
    got = lambda: sum(len(e.data) for e in c.events if isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
    wait_until(lambda: c.read(0.2) is not None and got() >= 1_000_000, timeout=10)
    c.close()


def test_upload_to_an_upstream_not_reading_is_bounded(h2short, ca):
    """The request body's window is given back only as the upstream takes the bytes: a 50 MB upload
    to an upstream that never reads stops after a few MB (socket buffers and one window)."""
    c = RawH2(h2short.https_port, "sink.example.com", ca)
    c.conn.send_headers(1, [(b":method", b"POST"), *c.headers()[1:], (b"content-length", b"50000000")])
    c.send()
    sent = 0
    last_growth = time.monotonic()
    deadline = last_growth + 15
    while time.monotonic() < deadline and time.monotonic() - last_growth < 1.5:
        window = min(c.conn.local_flow_control_window(1), c.conn.max_outbound_frame_size)
        if window > 0:
            c.conn.send_data(1, b"u" * window)
            c.send()
            sent += window
            last_growth = time.monotonic()
        else:
            c.read(0.1)
    assert sent < 20_000_000, f"{sent} bytes of the body accepted by ingressd"
    assert sent > 65535  # the first window at least, and what the upstream's socket took
    c.close()


def test_keepalive_requests_graceful_goaway(h2short, ca, ca_pem):
    """keep-alive-requests (10 here): GOAWAY NO_ERROR naming the 10th stream, which is still answered;
    curl moves to a new connection for the 11th request."""
    c = RawH2(h2short.https_port, HOST, ca)
    ended = lambda: {e.stream_id for e in c.events if isinstance(e, h2.events.StreamEnded)}
    for i in range(10):
        c.request(1 + 2 * i)
        c.send()
        wait_until(lambda: c.read(0.2) is not None and (1 + 2 * i) in ended() or c.closed, timeout=10)
    goaway = c.goaway(timeout=10)
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert goaway.last_stream_id == 19
    assert ended() >= {1 + 2 * i for i in range(9)}  # (h2's client drops what follows a GOAWAY)
    c.close()
    urls = []
    for i in range(12):
        urls += ["-o", "/dev/null", h2short.url(HOST, f"/echo?i={i}", https=True)]
    proc = h.curl("--http2", "--cacert", str(ca_pem), "--resolve", h2short.resolve(HOST, https=True),
                  "-w", "%{http_code} %{num_connects}\n", *urls)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().split()
    assert lines[0::2] == ["200"] * 12, lines
    assert sum(int(n) for n in lines[1::2]) == 2, lines
