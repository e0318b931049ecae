"""Websockets over HTTP/2 (RFC 8441 extended CONNECT): a real websocket handshake and echo through
ingressd, on raw ``h2`` frames over TLS (and h2c), to the test websocket backend (an HTTP/1.1
``Upgrade: websocket`` upstream); idle past configuration changes; closed from either side."""

from __future__ import annotations

import time

import h2.errors
import h2.events
import h2.settings
import pytest

from support import certs
from support import manifests as m
from support.h2raw import H2WebSocket, RawH2
from support.ingressd import launch, sample_value
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOST = "wsh2.example.com"


def manifests(backend, ca):
    cert = certs.issue(ca, HOST)
    return {
        "svc.yaml": backend.services("ws", "a"),
        "secrets.yaml": [m.tls_secret("wsh2-tls", *cert)],
        "ing.yaml": [m.ingress("ing-wsh2", [m.rule(HOST, m.path("/", "svc-ws"))], tls=[([HOST], "wsh2-tls")],
                               annotations={"proxy-read-timeout": "1", "ssl-redirect": "false"})],
    }


@pytest.fixture(scope="module")
def wsd(tmp_path_factory, backend, ca):
    inst = launch(tmp_path_factory.mktemp("wsh2"), manifests(backend, ca), args=["--workers", "1", "--h2c"])
    yield inst
    inst.stop()


def open_ws(inst, ca, stream_id=1, path="/ws", tls=True):
    client = RawH2(inst.https_port if tls else inst.http_port, HOST, ca if tls else None)
    ws = H2WebSocket(client, stream_id, path)
    return client, ws


def upgraded(inst) -> float:
    return sample_value(inst.metrics(), "ingressd_upgraded_connections")


def test_connect_protocol_advertised(wsd, ca):
    client = RawH2(wsd.https_port, HOST, ca)
    assert client.settings()[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
    client.close()


def test_echo_over_tls(wsd, ca):
    client, ws = open_ws(wsd, ca)
    assert ws.handshake() == 200
    assert b"sec-websocket-accept" not in ws.response  # HTTP/1.1's handshake stays with the upstream
    assert ws.response[b"x-backend-name"] == b"ws"
    for i in range(3):
        ws.send(f"hello {i}")
        assert ws.recv() == f"hello {i}"
    ws.send("whoami")
    assert ws.recv() == "ws"
    ws.send(b"\x00\x01binary")
    assert ws.recv() == b"\x00\x01binary"
    big = "x" * 300_000  # past the stream windows both ways (65535): flow control and WINDOW_UPDATE
    ws.send(big)
    assert ws.recv(timeout=20) == big
    client.close()


def test_echo_over_h2c_and_other_streams_alongside(wsd, ca):
    client, ws = open_ws(wsd, ca, tls=False)
    assert ws.handshake() == 200
    ws.send("over h2c")
    assert ws.recv() == "over h2c"
    # an ordinary request on the same connection while the websocket is open
    client.conn.send_headers(3, [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", HOST.encode()),
                                 (b":path", b"/echo")], end_stream=True)
    client.send()
    assert client.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 3) is not None
    ws.send("still open")
    assert ws.recv() == "still open"
    client.close()


def test_idle_past_read_timeout_and_configuration_changes(wsd, ca, backend):
    client, ws = open_ws(wsd, ca)
    assert ws.handshake() == 200
    ws.send("one")
    assert ws.recv() == "one"
    time.sleep(2.5)  # idle past the route's proxy-read-timeout (1 s): a tunnel has none
    ws.send("two")
    assert ws.recv() == "two"
    # another Ingress appears, then the websocket's own Ingress changes
    wsd.dir.write("new.yaml", [m.ingress("ing-new", [m.rule("new.example.com", m.path("/", "svc-a"))])])
    wait_until(lambda: wsd.get("/", "new.example.com").status == 200, 10, message="new Ingress routes")
    ws.send("three")
    assert ws.recv() == "three"
    docs = manifests(backend, ca)
    docs["ing.yaml"][0]["spec"]["rules"][0]["http"]["paths"].append(m.path("/added", "svc-a"))
    wsd.dir.write("ing.yaml", docs["ing.yaml"])
    wait_until(lambda: wsd.get("/added", HOST).name == "a", 10, message="modified Ingress")
    ws.send("four")
    assert ws.recv() == "four"
    wsd.dir.remove("new.yaml")
    client.close()


def test_closed_by_the_upstream(wsd, ca):
    """A websocket close: the backend answers it and closes its connection; ingressd ends the stream."""
    client, ws = open_ws(wsd, ca)
    assert ws.handshake() == 200
    wait_until(lambda: upgraded(wsd) >= 1, 10)
    ws.close_frame()
    event = ws.ended()
    assert isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)), event
    # the connection goes on
    client.conn.send_headers(3, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", HOST.encode()),
                                 (b":path", b"/echo")], end_stream=True)
    client.send()
    assert client.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 3) is not None
    wait_until(lambda: upgraded(wsd) == 0, 10, message="the tunnel closed")
    client.close()


def test_end_stream_from_the_client_closes_the_upstream(wsd, ca):
    client, ws = open_ws(wsd, ca)
    assert ws.handshake() == 200
    ws.send("x")
    assert ws.recv() == "x"
    wait_until(lambda: upgraded(wsd) >= 1, 10)
    client.conn.end_stream(1)
    client.send()
    assert isinstance(ws.ended(), h2.events.StreamEnded)
    wait_until(lambda: upgraded(wsd) == 0, 10, message="the tunnel closed")
    client.close()


def test_reset_from_the_client_closes_the_upstream(wsd, ca):
    client, ws = open_ws(wsd, ca)
    assert ws.handshake() == 200
    wait_until(lambda: upgraded(wsd) >= 1, 10)
    client.conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
    client.send()
    wait_until(lambda: upgraded(wsd) == 0, 10, message="the tunnel closed")
    client.close()


def test_connection_closed_closes_the_upstream(wsd, ca):
    client, ws = open_ws(wsd, ca)
    assert ws.handshake() == 200
    wait_until(lambda: upgraded(wsd) >= 1, 10)
    client.close()
    wait_until(lambda: upgraded(wsd) == 0, 10, message="the tunnel closed")


def test_upstream_refusing_the_upgrade(wsd, ca):
    """/echo answers 200 without switching: never a 2xx to the CONNECT (it would mean open), the stream is reset."""
    client, ws = open_ws(wsd, ca, path="/echo")
    assert ws.handshake() == 0
    reset = [e for e in client.events if isinstance(e, h2.events.StreamReset)]
    assert reset and reset[0].error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    client.close()


def test_unknown_host_and_protocol(wsd, ca):
    client = RawH2(wsd.https_port, HOST, ca)
    client.conn.send_headers(1, [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                                 (b":authority", b"nothing.example.com"), (b":path", b"/ws")])
    client.conn.send_headers(3, [(b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
                                 (b":authority", HOST.encode()), (b":path", b"/ws")])
    client.send()
    statuses = lambda: {e.stream_id: dict(e.headers)[b":status"] for e in client.events
                        if isinstance(e, h2.events.ResponseReceived)}
    wait_until(lambda: client.read(0.2) is not None and len(statuses()) == 2, 10)
    assert statuses() == {1: b"404", 3: b"501"}
    # both streams are closed by ingressd after the answer (the client never ended them)
    assert client.until(lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == 3) is not None
    client.close()


def test_chromium_uses_rfc8441_through_ingressd(wsd, tmp_path):
    """A real client: headless chromium opens a page over HTTP/2, then a websocket to the same host,
    which it sends as an extended CONNECT on that connection since ingressd advertises
    ENABLE_CONNECT_PROTOCOL; the echo comes back and the access log shows the websocket as HTTP/2."""
    from test_status_page import CHROMIUM, Browser  # the DevTools driver of the status page's test

    if CHROMIUM is None:
        pytest.fail("chromium is not installed (apt-get install -y chromium; scripts/test.sh installs it)")
    browser = Browser(tmp_path / "chromium", extra_args=(
        f"--host-resolver-rules=MAP {HOST} 127.0.0.1", "--ignore-certificate-errors"))
    try:
        browser.start()
        origin = f"https://{HOST}:{wsd.https_port}"
        browser.call("Page.navigate", url=f"{origin}/echo?page=1")
        wait_until(lambda: browser.evaluate("document.readyState") == "complete"
                   and browser.evaluate("location.href").startswith(origin), 30, message="the page loaded")
        assert browser.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
        echoed = browser.evaluate("""new Promise((resolve, reject) => {
            const ws = new WebSocket(`wss://${location.host}/ws?from=chromium`);
            ws.onopen = () => ws.send("hello from chromium");
            ws.onmessage = (event) => { resolve(event.data); ws.close(); };
            ws.onerror = () => reject(new Error("websocket error"));
            setTimeout(() => reject(new Error("timeout")), 15000);
        })""")
        assert echoed == "hello from chromium"
        wait_until(lambda: "GET /ws?from=chromium HTTP/2.0" in wsd.stdout(), 15,
                   message="the websocket logged as HTTP/2")
    finally:
        browser.stop()
