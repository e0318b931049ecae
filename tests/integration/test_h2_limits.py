"""How little an HTTP/2 attacker gets out of one read: streams opened and reset in it never reach an
upstream (rapid reset), and a flood of small frames is cut after a slice of it, not after all of it."""

from __future__ import annotations

import h2.errors
import h2.events
import pytest

from support import certs
from support import manifests as m
from support.h2raw import RawH2
from support.ingressd import launch, sample_value
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

HOST = "limits.example.com"


@pytest.fixture(scope="module")
def h2limits(tmp_path_factory, backend, ca):
    cert = certs.issue(ca, HOST)
    inst = launch(tmp_path_factory.mktemp("h2limits"), {
        "svc.yaml": backend.services("a"),
        "secrets.yaml": [m.tls_secret("limits-tls", *cert)],
        "ing.yaml": [m.ingress("ing-limits", [m.rule(HOST, m.path("/", "svc-a"))], tls=[([HOST], "limits-tls")])],
    }, args=["--workers", "1"])
    yield inst
    inst.stop()


def dialed(inst) -> float:
    return sample_value(inst.metrics(), "ingressd_upstream_connections_total", result="new")


def request(client: RawH2, stream_id: int, path: str = "/echo") -> list:
    return [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", HOST.encode()), (b":path", path.encode())]


def test_streams_reset_in_the_same_read_never_reach_an_upstream(h2limits, ca):
    client = RawH2(h2limits.https_port, HOST, ca)
    assert client.settings()  # the connection is set up: what follows goes in one TLS record
    before = dialed(h2limits)
    for i in range(50):  # under the rapid-reset limit: the connection stays
        client.conn.send_headers(1 + 2 * i, request(client, 1 + 2 * i, "/slow?delay=2"), end_stream=True)
        client.conn.reset_stream(1 + 2 * i, h2.errors.ErrorCodes.CANCEL)
    client.send()
    client.conn.send_headers(101, request(client, 101), end_stream=True)
    client.send()
    assert client.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 101) is not None
    assert not client.closed
    assert dialed(h2limits) - before <= 1, "streams reset before they were proxied dialed upstreams"
    client.close()


def test_a_ping_flood_is_cut_after_a_slice_of_the_read(h2limits, ca):
    """2,000 PINGs (34 KB) written at once: GOAWAY ENHANCE_YOUR_CALM after acknowledging the PINGs
    of the first 4 KB slice (about 240), not all of them."""
    client = RawH2(h2limits.https_port, HOST, ca)
    assert client.settings()
    for i in range(2000):
        client.conn.ping(b"%08d" % i)
    client.send()
    goaway = client.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    acks = sum(1 for e in client.events if isinstance(e, h2.events.PingAckReceived))
    assert acks < 500, f"{acks} PINGs acknowledged before the GOAWAY"
    client.close()
