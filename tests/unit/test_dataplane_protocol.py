"""The HTTP/1.1 client side and the upstream side together, in process (see dataplanekit)."""

from __future__ import annotations

import re

import pytest

from dataplanekit import Rig
from unitkit import NGINX, compile_config, ingress, path, rule, svc_with_endpoints

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def web_config(annotations=None, addresses=("10.0.0.1",), tls=None, **settings):
    return compile_config(ingress("web", rule("a.com", path("/", "web")), annotations=annotations, tls=tls),
                          svc_with_endpoints("web", addresses), **settings)


GET = b"GET /x?y=1 HTTP/1.1\r\nHost: a.com\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def head_fields(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}


@pytest.fixture
def rig():
    return Rig(web_config())


# --- forwarding ---------------------------------------------------------------------------------

def test_request_head_as_ingress_nginx_sends_it(rig):
    client = rig.client()
    client.send(b"GET /x?y=1 HTTP/1.1\r\nHost: A.com:80\r\nUser-Agent: t\r\nX-Forwarded-For: 1.2.3.4\r\n"
                b"X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nProxy: evil\r\nKeep-Alive: 5\r\n"
                b"Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Kept: k\r\n\r\n")
    upstream = rig.upstream()
    assert rig.dialed == [("10.0.0.1", 8080)]
    raw = upstream.received()
    assert raw.startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: A.com:80\r\n")
    fields = head_fields(raw)
    assert fields["x-forwarded-for"] == "203.0.113.7" and fields["x-real-ip"] == "203.0.113.7"
    assert fields["x-original-forwarded-for"] == "1.2.3.4"
    assert fields["x-forwarded-proto"] == fields["x-forwarded-scheme"] == fields["x-scheme"] == "http"
    assert fields["x-forwarded-port"] == "80" and fields["x-forwarded-host"] == "A.com:80"
    assert re.fullmatch(r"[0-9a-f]{32}", fields["x-request-id"])
    assert fields["user-agent"] == "t" and fields["x-kept"] == "k"
    for dropped in ("proxy", "keep-alive", "connection", "x-secret"):
        assert dropped not in fields


def test_small_response_leaves_in_one_write_and_connection_is_pooled(rig):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                  b"X-App: 1\r\n\r\nok")
    response = client.response()
    assert response.status == 200 and response.body == b"ok" and response.header("x-app") == "1"
    assert response.header("connection") is None and response.header("keep-alive") is None
    assert client.transport.writes == 1
    assert rig.pool.count() == 1
    client.send(GET)  # keep-alive on both sides: the same upstream connection
    assert len(rig.upstreams) == 1 and rig.pool.reused == 1 and rig.pool.new == 1


def test_request_id_from_the_client_is_kept(rig):
    rig.client().send(b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Request-ID: abc\r\n\r\n")
    assert head_fields(rig.upstream().received())["x-request-id"] == "abc"


def test_absolute_form_target_routes_and_forwards_its_authority(rig):
    rig.client().send(b"GET http://a.com/p HTTP/1.1\r\nHost: other.com\r\n\r\n")
    raw = rig.upstream().received()
    assert raw.startswith(b"GET /p HTTP/1.1\r\nHost: a.com\r\n")


def test_pipelined_requests_are_answered_in_order_and_reading_pauses(rig):
    client = rig.client()
    client.send(GET + b"GET /second HTTP/1.1\r\nHost: a.com\r\n\r\n")
    assert len(rig.upstreams) == 1 and not client.transport.reading  # the second waits, reading paused
    rig.upstream().send(OK)
    assert rig.upstream().received().count(b"GET ") == 2  # the second went on the pooled connection
    rig.upstream().send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
    assert [r.body for r in client.responses()] == [b"ok", b"two"]
    assert client.transport.reading


def test_expect_100_continue_is_answered_by_ingressd_not_the_upstream(rig):
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert client.received() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"expect" not in rig.upstream().received().lower()
    client.send(b"data")
    rig.upstream().send(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert client.received().count(b"100 Continue") == 1
    assert rig.upstream().received().endswith(b"\r\n\r\ndata")


def test_chunked_request_body_is_forwarded_chunked(rig):
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    raw = rig.upstream().received()
    assert b"Transfer-Encoding: chunked\r\n" in raw and raw.endswith(b"5\r\nhello\r\n0\r\n\r\n")


def test_body_received_before_the_upstream_connects_is_sent_after_the_head(rig):
    rig.dial = "hold"
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 6\r\n\r\nabc")
    client.send(b"def")
    upstream = rig.complete_dial()
    raw = upstream.received()
    assert raw.endswith(b"\r\n\r\nabcdef") and raw.count(b"POST") == 1


def test_pending_body_beyond_the_limit_pauses_the_client(rig):
    rig.dial = "hold"
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 300_000)
    assert not client.transport.reading  # bounded memory while no upstream is attached
    rig.complete_dial()
    assert client.transport.reading


# --- responses ------------------------------------------------------------------------------------

def test_close_delimited_response_is_rechunked_for_http11(rig):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello ")
    upstream.send(b"world")
    upstream.disconnect()
    response = client.response()
    assert response.header("transfer-encoding") == "chunked" and response.body == b"hello world"
    assert not client.closed  # the client connection stays usable


def test_close_delimited_response_to_http10_closes(rig):
    client = rig.client()
    client.send(b"GET / HTTP/1.0\r\nHost: a.com\r\n\r\n")
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\n\r\nold")
    upstream.disconnect()
    response = client.response()
    assert response.header("connection") == "close" and response.body == b"old"
    assert client.closed


def test_head_response_has_no_body_and_the_connection_is_reused(rig):
    client = rig.client()
    client.send(b"HEAD / HTTP/1.1\r\nHost: a.com\r\n\r\n")
    rig.upstream().send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert client.response(head_only=True).status == 200
    assert rig.pool.count() == 1
    client.send(GET)
    rig.upstream().send(OK)
    assert client.received().endswith(b"\r\n\r\nok") and client.received().count(b"200 OK") == 2
    assert len(rig.upstreams) == 1


def test_https_responses_get_hsts_unless_the_upstream_set_it():
    rig = Rig(web_config())
    client = rig.client("https")
    client.send(GET)
    rig.upstream().send(OK)
    client.send(GET)
    rig.upstream().send(b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 0\r\n\r\n")
    first, second = client.responses()
    assert first.header("strict-transport-security") == "max-age=31536000; includeSubDomains"
    assert second.header("strict-transport-security") == "max-age=1"


def test_response_head_split_across_reads(rig):
    client = rig.client()
    client.send(GET)
    for piece in (b"HTTP/1.1 200 OK\r\nX-A", b": 1\r\nContent-Le", b"ngth: 2\r\n\r", b"\nok"):
        rig.upstream().send(piece)
    response = client.response()
    assert (response.status, response.header("x-a"), response.body) == (200, "1", b"ok")


def test_early_hints_are_forwarded_and_100_is_not(rig):
    client = rig.client()
    client.send(GET)
    rig.upstream().send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK)
    statuses = [r.status for r in client.responses()]
    assert statuses == [103, 200]


def test_invalid_response_is_a_502_and_the_connection_is_dropped(rig):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
    assert client.response().status == 502
    assert upstream.closed and rig.pool.count() == 0


def test_unsolicited_101_is_a_502(rig):
    client = rig.client()
    client.send(GET)
    rig.upstream().send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
    assert client.response().status == 502 and rig.upstream().closed


# --- upgrades -----------------------------------------------------------------------------------

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: a.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_websocket_tunnel_survives_configuration_changes_and_time(rig):
    client = rig.client()
    client.send(UPGRADE + b"early")
    upstream = rig.upstream()
    head = upstream.received()
    # bytes after the upgrade request wait for the 101 (hostile: tests/unit/test_dataplane_framing.py)
    assert b"Upgrade: websocket\r\nConnection: upgrade\r\n" in head and head.endswith(b"\r\n\r\n")
    upstream.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nfrom-upstream")
    assert upstream.received().endswith(b"\r\n\r\nearly")
    assert client.received().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert client.received().endswith(b"\r\n\r\nfrom-upstream")
    assert rig.recorder.upgraded == 1
    rig.ctx.config = compile_config()  # a new configuration without the route
    rig.advance(86_400)  # a day: no timeout applies to a tunnel
    client.send(b"ping")
    upstream.send(b"pong")
    assert upstream.received().endswith(b"ping") and client.received().endswith(b"pong")
    assert not client.closed and not upstream.closed
    upstream.disconnect()
    assert client.closed and rig.recorder.upgraded == 0


def test_refused_upgrade_closes_after_the_response(rig):
    client = rig.client()
    client.send(UPGRADE)
    rig.upstream().send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    response = client.response()
    assert response.status == 403 and response.header("connection") == "close" and client.closed


# --- backpressure -------------------------------------------------------------------------------

def test_a_slow_client_pauses_the_upstream(rig):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    client.conn.pause_writing()  # the client's socket buffer is full
    assert not upstream.transport.reading
    client.conn.resume_writing()
    assert upstream.transport.reading


def test_a_slow_upstream_pauses_the_client(rig):
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    rig.upstream().conn.pause_writing()
    assert not client.transport.reading
    rig.upstream().conn.resume_writing()
    assert client.transport.reading


# --- failures and retries ---------------------------------------------------------------------------

def test_refused_endpoints_are_tried_in_turn_then_502():
    rig = Rig(web_config(addresses=("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")))
    rig.dial = "refuse"
    client = rig.client()
    client.send(GET)
    assert len(rig.dialed) == 3  # nginx's proxy_next_upstream_tries
    assert client.response().status == 502


def test_pooled_connection_closed_by_the_upstream_is_retried_fresh(rig):
    client = rig.client()
    client.send(GET)
    rig.upstream().send(OK)
    client.send(GET)  # on the pooled connection...
    rig.upstream().disconnect()  # ...which the upstream had just closed
    assert len(rig.upstreams) == 2  # a replayable request goes on a new connection
    rig.upstream().send(OK)
    assert [r.status for r in client.responses()] == [200, 200]


def test_upstream_read_timeout_is_a_504(rig):
    client = rig.client()
    client.send(GET)
    rig.advance(61)
    assert client.response().status == 504 and rig.upstream().closed


def test_upstream_close_before_answering_is_a_502(rig):
    client = rig.client()
    client.send(GET)
    rig.upstream().disconnect()
    assert client.response().status == 502


def test_client_gone_mid_response_drops_the_upstream(rig):
    client = rig.client()
    client.send(GET)
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nxx")
    client.disconnect()
    assert upstream.closed and rig.pool.count() == 0


# --- client limits and timeouts -----------------------------------------------------------------------

def test_declared_body_over_the_limit_is_413_without_dialing(rig):
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 2000000\r\n\r\n")
    response = client.response()
    assert response.status == 413 and client.closed and rig.dialed == []


def test_chunked_body_over_the_limit_is_413_and_closes():
    rig = Rig(web_config({NGINX + "proxy-body-size": "10"}))
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n" + b"x" * 20 + b"\r\n")
    assert client.response().status == 413 and client.closed
    assert rig.upstream().closed


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: a.com\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(201)) + b"Host: a.com\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET /../x HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    (b"GET x HTTP/1.1\r\nHost: a.com\r\n\r\n", 400),
    (b"NOT HTTP\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a.com\r\nNo colon in this header line\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a.com\r\nContent-Length: abc\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),  # TLS on the HTTP port
])
def test_malformed_requests_are_refused_and_closed_without_dialing(rig, request_bytes, status):
    client = rig.client()
    client.send(request_bytes)
    assert client.response().status == status and client.closed and rig.dialed == []


def test_head_not_completed_in_time_is_closed(rig):
    client = rig.client()
    client.send(b"GET / HTTP/1.1\r\nHo")
    rig.advance(30)
    client.send(b"s")  # trickling does not extend the header timeout
    rig.advance(31)
    assert client.closed and rig.dialed == []


def test_idle_keep_alive_connection_is_closed_after_75s(rig):
    client = rig.client()
    client.send(GET)
    rig.upstream().send(OK)
    rig.advance(70)
    assert not client.closed
    rig.advance(6)
    assert client.closed


def test_body_not_received_in_time_is_408(rig):
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 10\r\n\r\nab")
    rig.advance(61)
    assert client.response().status == 408 and client.closed


def test_upstream_not_taking_the_body_is_a_504_not_a_408(rig):
    client = rig.client()
    client.send(b"POST / HTTP/1.1\r\nHost: a.com\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    rig.upstream().conn.pause_writing()  # the upstream stops reading
    rig.advance(61)
    assert client.response().status == 504


def test_half_closed_client_still_gets_its_response(rig):
    client = rig.client()
    client.send(GET)
    client.eof()
    rig.upstream().send(OK)
    assert client.response().status == 200 and client.closed


# --- local answers, in order ---------------------------------------------------------------------------

def test_local_answers_keep_their_place_among_pipelined_requests():
    config = compile_config(ingress("web", rule("a.com", path("/", "web")),
                                    annotations={NGINX + "force-ssl-redirect": "false"}),
                            svc_with_endpoints("web"))
    rig = Rig(config)
    client = rig.client()
    client.send(GET + b"GET / HTTP/1.1\r\nHost: unknown.com\r\n\r\n" + GET)
    rig.upstream().send(OK)
    rig.upstream().send(OK)
    assert [r.status for r in client.responses()] == [200, 404, 200]


def test_counted_once_per_request_with_the_route_labels(rig):
    client = rig.client()
    client.send(GET)
    rig.upstream().send(OK)
    client.send(b"GET / HTTP/1.1\r\nHost: unknown.com\r\n\r\n")
    counts = {(labels[1], status): stats.count for (labels, _, status), stats in rig.recorder.stats.items()}
    assert counts == {("web", 200): 1, ("", 404): 1}
