"""The controller ConfigMap's HTTP/2 keys through real clients (curl --http2, nghttp, raw ``h2`` over
TLS): use-http2 (also changed while serving; --no-http2 wins), http2-max-concurrent-streams,
http2-max-requests (in-flight streams finish after the GOAWAY), and http2-max-field-size /
http2-max-header-size, ignored as by ingress-nginx's nginx (large-client-header-buffers bounds the
headers)."""

from __future__ import annotations

import re
import subprocess
import time

import h2.errors
import h2.events
import h2.settings
import pytest

from support import certs
from support import client as h
from support import manifests as m
from support.h2raw import RawH2
from support.ingressd import launch
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOST = "h2cm.example.com"
MAX_STREAMS = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS


def controller(**data) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
             "data": {k.replace("_", "-"): v for k, v in data.items()}}]


def files(backend, ca, **data) -> dict:
    cert = certs.issue(ca, HOST)
    return {"svc.yaml": backend.services("a"),
            "secrets.yaml": [m.tls_secret("h2cm-tls", *cert)],
            "cm.yaml": controller(**data),
            "ing.yaml": [m.ingress("ing-h2cm", [m.rule(HOST, m.path("/", "svc-a"))], tls=[([HOST], "h2cm-tls")])]}


@pytest.fixture(scope="module")
def h2cm(tmp_path_factory, backend, ca):
    inst = launch(tmp_path_factory.mktemp("h2cm"), files(
        backend, ca, http2_max_concurrent_streams="4", http2_max_requests="5",
        http2_max_field_size="1k", http2_max_header_size="1k"), args=["--workers", "1"])
    yield inst
    inst.stop()


def headers(path: str = "/echo", extra=()) -> list:
    return [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", HOST.encode()), (b":path", path.encode()),
            *extra]


def alpn(inst, ca) -> str | None:
    """The protocol a new handshake offering h2 and http/1.1 gets."""
    with certs.handshake(inst.https_port, HOST, certs.client_context(ca, alpn=["h2", "http/1.1"])) as s:
        return s.selected_alpn_protocol()


def release(inst, token: str) -> None:
    assert h.curl("-k", "--resolve", inst.resolve(HOST, https=True),
                  inst.url(HOST, f"/release?token={token}", https=True)).returncode == 0


def test_max_concurrent_streams_advertised_and_refused_beyond(h2cm, ca):
    client = RawH2(h2cm.https_port, HOST, ca)
    assert client.settings()[MAX_STREAMS] == 4
    client.conn.remote_settings[MAX_STREAMS] = 100  # let the test client exceed the server's limit
    client.conn.remote_settings.acknowledge()
    token = f"h2cm-{time.monotonic_ns()}"
    ids = [1, 3, 5, 7, 9, 11]
    for stream_id in ids:
        client.conn.send_headers(stream_id, headers(f"/stream?chunks=2&hold={token}"), end_stream=True)
    client.send()
    refused = lambda: {e.stream_id for e in client.events if isinstance(e, h2.events.StreamReset)}
    wait_until(lambda: client.read(0.2) is not None and len(refused()) >= 2, timeout=10)
    assert refused() == {9, 11}
    assert all(e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
               for e in client.events if isinstance(e, h2.events.StreamReset))
    release(h2cm, token)
    ended = lambda: {e.stream_id for e in client.events if isinstance(e, h2.events.StreamEnded)}
    wait_until(lambda: client.read(0.2) is not None and len(ended()) >= 4 or client.closed, timeout=10)
    assert ended() == {1, 3, 5, 7}
    client.close()


def test_max_requests_goaway_after_the_fifth_stream_in_flight_streams_finish(h2cm):
    """nghttp multiplexes five requests on one connection, four at a time (the advertised limit): a
    quick one, then four slow ones. The GOAWAY NO_ERROR naming the fifth stream comes when it opens,
    while the four slow ones are in flight, and each of them is answered to its end."""
    base = f"https://127.0.0.1:{h2cm.https_port}"
    slow = [f"{base}/stream?chunks=3&delay=0.3&n={i}" for i in range(4)]
    # -M 4: the server's limit from the start (nghttp would open all five before its SETTINGS arrive)
    proc = subprocess.run(["nghttp", "-nv", "--no-dep", "--peer-max-concurrent-streams=4", "-H", f":authority: {HOST}",
                           base + "/echo", *slow], capture_output=True, timeout=30)
    out = proc.stdout.decode(errors="replace")
    answered = re.findall(r"recv \(stream_id=(\d+)\) :status: 200", out)
    assert len(answered) == 5, out[-3000:]
    goaway = re.search(r"recv GOAWAY frame.*\n.*last_stream_id=(\d+), error_code=NO_ERROR", out)
    assert goaway is not None and goaway.group(1) == max(answered, key=int), out[-3000:]
    after_goaway = out[goaway.start():]
    for stream_id in sorted(answered, key=int)[1:]:  # each slow stream ends (END_STREAM) after the GOAWAY
        assert f"flags=0x01, stream_id={stream_id}>" in after_goaway, (stream_id, out[-3000:])


def test_max_requests_with_curl_opens_a_new_connection(h2cm, ca_pem):
    urls = []
    for i in range(11):
        urls += ["-o", "/dev/null", h2cm.url(HOST, f"/echo?i={i}", https=True)]
    proc = h.curl("--http2", "--cacert", str(ca_pem), "--resolve", h2cm.resolve(HOST, https=True),
                  "-w", "%{http_code} %{http_version} %{num_connects}\n", *urls)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().split()
    assert lines[0::3] == ["200"] * 11 and lines[1::3] == ["2"] * 11, lines
    assert sum(int(n) for n in lines[2::3]) == 3, lines  # 5 + 5 + 1 requests


def test_field_and_header_sizes_ignored_as_by_nginx(h2cm, ca_pem):
    """http2-max-field-size / -header-size "1k" change nothing (nginx ignores them since 1.19.7): a
    4 KB header passes; large-client-header-buffers (default 4 x 8k) is the limit."""
    proc = h.curl("--http2", "--cacert", str(ca_pem), "--resolve", h2cm.resolve(HOST, https=True),
                  "-H", "X-Big: " + "v" * 4000, "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                  h2cm.url(HOST, "/echo", https=True))
    assert proc.stdout == b"200 2", (proc.stdout, proc.stderr)


def test_large_client_header_buffers_bounds_http2_headers(h2cm, ca):
    client = RawH2(h2cm.https_port, HOST, ca)
    assert client.settings()[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 32 * 1024
    client.conn.send_headers(1, headers(extra=[(b"x-big-%d" % i, b"v" * 4000) for i in range(10)]), end_stream=True)
    client.send()
    goaway = client.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    client.close()


def test_use_http2_false_while_serving(tmp_path, backend, ca):
    """use-http2 "false" in a ConfigMap edited while serving: new handshakes get http/1.1, an HTTP/2
    connection opened before goes on (with the stream limit it was opened with); back to "true",
    new connections get h2 and the new http2-max-concurrent-streams."""
    inst = launch(tmp_path, files(backend, ca, http2_max_concurrent_streams="8"), args=["--workers", "1"])
    try:
        assert alpn(inst, ca) == "h2"
        before = RawH2(inst.https_port, HOST, ca)
        assert before.settings()[MAX_STREAMS] == 8
        inst.dir.write("cm.yaml", controller(use_http2="false", http2_max_concurrent_streams="2"))
        wait_until(lambda: alpn(inst, ca) == "http/1.1", timeout=15)
        proc = h.curl("--http2", "-k", "--resolve", inst.resolve(HOST, https=True), "-o", "/dev/null",
                      "-w", "%{http_version}", inst.url(HOST, "/echo", https=True))
        assert proc.stdout == b"1.1", proc.stdout
        token = f"h2cm-{time.monotonic_ns()}"
        for stream_id in (1, 3, 5):  # three at once: over the new limit of 2, within the connection's 8
            before.conn.send_headers(stream_id, headers(f"/stream?chunks=2&hold={token}"), end_stream=True)
        before.send()
        release(inst, token)
        ended = lambda: {e.stream_id for e in before.events if isinstance(e, h2.events.StreamEnded)}
        wait_until(lambda: before.read(0.2) is not None and len(ended()) >= 3 or before.closed, timeout=10)
        assert ended() == {1, 3, 5} and not any(isinstance(e, h2.events.StreamReset) for e in before.events)
        before.close()
        inst.dir.write("cm.yaml", controller(use_http2="true", http2_max_concurrent_streams="2"))
        wait_until(lambda: alpn(inst, ca) == "h2", timeout=15)
        after = RawH2(inst.https_port, HOST, ca)
        assert after.settings()[MAX_STREAMS] == 2
        after.close()
    finally:
        inst.stop()


def test_no_http2_wins_over_use_http2(tmp_path, backend, ca):
    inst = launch(tmp_path, files(backend, ca, use_http2="true"), args=["--no-http2", "--workers", "1"])
    try:
        assert alpn(inst, ca) == "http/1.1"
    finally:
        inst.stop()
