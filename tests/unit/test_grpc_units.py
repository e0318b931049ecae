"""The pure parts of gRPC proxying: status mapping, trailers-only answers, grpc-timeout, and the
conversion of request and response heads between HTTP/1.1 field lines and HTTP/2 fields."""

from __future__ import annotations

import pytest

from ingressd.dataplane import grpcstatus
from ingressd.dataplane.h2upstream import request_fields, response_fields
from ingressd.dataplane.policy import answer_for
from unitkit import NGINX, compile_config, ingress, lookup, path, rule


@pytest.mark.parametrize("http_status, code", [(502, 14), (503, 14), (504, 4), (404, 12), (400, 13), (401, 16),
                                               (403, 7), (429, 14), (500, 2), (413, 8)])
def test_status_mapping(http_status, code):
    assert grpcstatus.status_for(http_status) == code


def test_trailers_only_lines():
    lines = grpcstatus.trailers_only(502, "cannot connect to upstream web: Connection refused")
    assert lines == (b"Content-Type: application/grpc\r\ngrpc-status: 14\r\n"
                     b"grpc-message: cannot connect to upstream web: Connection refused\r\n")
    assert b"grpc-status: 4\r\n" in grpcstatus.trailers_only(504, "slow")


def test_grpc_message_is_percent_encoded():
    assert grpcstatus.encode_message("100% sûr\r\n") == b"100%25 s%C3%BBr%0D%0A"


@pytest.mark.parametrize("value, seconds", [(b"1H", 3600.0), (b"2M", 120.0), (b"3S", 3.0), (b"500m", 0.5),
                                            (b"250000u", 0.25), (b"99999999n", 0.099999999)])
def test_grpc_timeout(value, seconds):
    assert grpcstatus.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [b"", b"S", b"1", b"1s", b"123456789S", b"-1S", b"1.5S", b"1 S", b"x5m"])
def test_malformed_grpc_timeout_is_ignored(value):
    assert grpcstatus.parse_timeout(value) is None


def test_request_head_to_h2_fields():
    head = (b"POST /pkg.Svc/Call?x=1 HTTP/1.1\r\nHost: grpc.example.com:8443\r\ncontent-type: application/grpc\r\n"
            b"Grpc-Timeout: 5S\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.1\r\n"
            b"X-Empty:\r\n\r\n")
    fields, timeout = request_fields(head, b"https")
    assert fields == [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"grpc.example.com:8443"),
                      (b":path", b"/pkg.Svc/Call?x=1"), (b"content-type", b"application/grpc"),
                      (b"grpc-timeout", b"5S"), (b"x-forwarded-for", b"10.0.0.1"), (b"x-empty", b""),
                      (b"te", b"trailers")]
    assert timeout == b"5S"


def test_response_fields_to_lines():
    status, lines, length = response_fields([(b":status", b"200"), (b"content-type", b"application/grpc"),
                                             (b"grpc-encoding", b"identity")])
    assert (status, lines, length) == (200, b"content-type: application/grpc\r\ngrpc-encoding: identity\r\n", False)
    assert response_fields([(b":status", b"404"), (b"content-length", b"3")])[2] is True


def test_a_grpc_route_without_endpoints_answers_unavailable_trailers_only():
    config = compile_config(ingress("g", rule("g.com", path("/", "gone")), annotations={
        NGINX + "backend-protocol": "GRPC"}))
    route = lookup(config, "g.com", "/pkg.Svc/Call")
    answer = answer_for(route, "g.com", "/pkg.Svc/Call", b"/pkg.Svc/Call", tls=True, scheme="https", body_length=-1,
                        challenges={}, https_port=443)
    assert answer.status == 200 and answer.body == b"" and answer.content_type == b""
    assert b"Content-Type: application/grpc\r\n" in answer.headers and b"grpc-status: 14\r\n" in answer.headers
    assert b"service default/gone not found" in answer.headers


def test_literal_encoder_round_trips_through_a_real_hpack_decoder():
    import hpack

    from ingressd.dataplane.hpack_literal import LiteralEncoder
    encoder, decoder = LiteralEncoder(), hpack.Decoder()  # lengths past one and two continuation bytes:
    blocks = [
        [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"grpc.example.com"), (b":path", b"/a.B/C"),
         (b"content-type", b"application/grpc"), (b"te", b"trailers"), (b"x-request-id", b"0123456789abcdef")],
        [(b":method", b"GET"), (b":path", b"/"), (b"user-agent", b"u" * 126), (b"x-long", b"v" * 127),
         (b"x-longer", b"w" * 20_000), (b"x-" + b"n" * 200, b""), (b"accept-encoding", b"gzip, deflate")],
    ]
    first = encoder.encode(blocks[0])
    assert first[:1] == b"\x20"  # a dynamic table of size 0, announced once
    assert b"grpc.example.com" in first  # plain strings, no Huffman coding
    assert decoder.decode(first, raw=True) == blocks[0]
    second = encoder.encode(blocks[1])
    assert second[:1] != b"\x20" and decoder.decode(second, raw=True) == blocks[1]
    encoder.header_table_size = 1024  # the upstream's SETTINGS_HEADER_TABLE_SIZE changed
    again = encoder.encode(blocks[0])
    assert again[:1] == b"\x20" and decoder.decode(again, raw=True) == blocks[0]
    assert len(decoder.header_table.dynamic_entries) == 0  # nothing was ever indexed
