"""Client trust: forwarded headers and PROXY protocol settings (ingress-nginx's ConfigMap keys)."""

from __future__ import annotations

import ipaddress

import pytest

from ingressd.cli import _settings, build_parser
from ingressd.config import ClientTrust, parse_cidrs


def test_defaults_trust_nobody_as_ingress_nginx():
    trust = ClientTrust()
    assert not trust.use_forwarded_headers and not trust.enable_real_ip and not trust.use_proxy_protocol
    assert not trust.compute_full_forwarded_for and not trust.realip
    assert trust.forwarded_for_header == "X-Forwarded-For"
    assert trust.networks == (ipaddress.ip_network("0.0.0.0/0"),)


def test_cidrs_parse_and_bad_ones_are_named():
    assert parse_cidrs("10.0.0.0/8, 192.168.1.1,fd00::/8") == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"), ipaddress.ip_network("fd00::/8"))
    with pytest.raises(ValueError, match="'10.0.0.300' is not an IP address or CIDR"):
        ClientTrust(proxy_real_ip_cidr=("10.0.0.300",))
    with pytest.raises(ValueError, match="not a header name"):
        ClientTrust(forwarded_for_header="X-Bad: header")


def test_command_line_flags():
    args = build_parser().parse_args([
        "serve", "--manifests", "m", "--use-forwarded-headers", "--forwarded-for-header", "X-Client-IP",
        "--compute-full-forwarded-for", "--enable-real-ip", "--proxy-real-ip-cidr", "10.0.0.0/8,172.16.0.0/12",
        "--use-proxy-protocol"])
    assert _settings(args).trust == ClientTrust(
        use_forwarded_headers=True, forwarded_for_header="X-Client-IP", compute_full_forwarded_for=True,
        enable_real_ip=True, proxy_real_ip_cidr=("10.0.0.0/8", "172.16.0.0/12"), use_proxy_protocol=True)
    assert _settings(build_parser().parse_args(["serve", "--manifests", "m"])).trust == ClientTrust()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--manifests", "m", "--proxy-real-ip-cidr", "nope"])


# --- the data plane: forwarded headers (in process, see dataplanekit) ---------------------------

import struct  # noqa: E402

from dataplanekit import Rig  # noqa: E402
from unitkit import compile_config, ingress, path, rule, svc_with_endpoints  # noqa: E402

from ingressd.dataplane import proxyproto  # noqa: E402
from ingressd.dataplane.trust import is_trusted, real_ip  # noqa: E402

FORGED = (b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-For: 6.6.6.6, 10.0.0.9\r\nX-Real-IP: 6.6.6.6\r\n"
          b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.com\r\nX-Forwarded-Port: 8443\r\n\r\n")


def rig_with(trust: ClientTrust = ClientTrust(), tls: bool = False) -> Rig:
    return Rig(compile_config(
        ingress("web", rule("a.com", path("/", "web")), tls=[{"hosts": ["a.com"]}] if tls else None),
        svc_with_endpoints("web"), trust=trust))


def upstream_fields(rig: Rig) -> dict[str, str]:
    head = rig.upstream().received().split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    fields: dict[str, str] = {}
    for line in head:
        name, _, value = line.partition(":")
        assert name.lower() not in fields, f"{name} twice"
        fields[name.lower()] = value.strip()
    return fields


def test_by_default_nothing_the_client_says_about_itself_is_believed():
    rig = rig_with()
    rig.client(peer=("10.0.0.5", 1000)).send(FORGED)
    fields = upstream_fields(rig)
    assert fields["x-forwarded-for"] == fields["x-real-ip"] == "10.0.0.5"
    assert fields["x-forwarded-proto"] == fields["x-forwarded-scheme"] == fields["x-scheme"] == "http"
    assert fields["x-forwarded-host"] == "a.com" and fields["x-forwarded-port"] == "80"
    assert fields["x-original-forwarded-for"] == "6.6.6.6, 10.0.0.9"


def test_use_forwarded_headers_from_a_trusted_proxy():
    rig = rig_with(ClientTrust(use_forwarded_headers=True, proxy_real_ip_cidr=("10.0.0.0/8",)))
    client = rig.client(peer=("10.0.0.5", 1000))
    client.send(FORGED)
    fields = upstream_fields(rig)
    # realip, recursive: 10.0.0.9 is a trusted proxy too, so the client is 6.6.6.6
    assert fields["x-forwarded-for"] == fields["x-real-ip"] == "6.6.6.6" and client.conn.client_ip == "6.6.6.6"
    assert fields["x-forwarded-proto"] == fields["x-scheme"] == "https" and fields["x-forwarded-port"] == "8443"
    assert fields["x-forwarded-host"] == "evil.com" and fields["host"] == "a.com"  # Host stays the routed one


def test_forwarded_headers_from_an_untrusted_peer_are_not_believed():
    rig = rig_with(ClientTrust(use_forwarded_headers=True, proxy_real_ip_cidr=("10.0.0.0/8",)))
    rig.client(peer=("203.0.113.7", 1000)).send(FORGED)
    fields = upstream_fields(rig)
    assert fields["x-forwarded-for"] == "203.0.113.7" and fields["x-forwarded-proto"] == "http"
    assert fields["x-forwarded-host"] == "a.com"


def test_trusted_https_proto_is_not_redirected_again():
    """A TLS-terminating load balancer forwards https requests as http: with use-forwarded-headers
    the ssl-redirect does not loop (ingress-nginx's $pass_access_scheme)."""
    request = b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-Proto: https\r\n\r\n"
    trusted = rig_with(ClientTrust(use_forwarded_headers=True), tls=True)
    trusted.client(peer=("10.0.0.5", 1)).send(request)
    assert trusted.dialed and upstream_fields(trusted)["x-forwarded-proto"] == "https"
    untrusted = rig_with(tls=True)
    client = untrusted.client(peer=("10.0.0.5", 1))
    client.send(request)
    assert client.response().status == 308 and not untrusted.dialed


def test_enable_real_ip_takes_only_the_address_from_the_named_header():
    rig = rig_with(ClientTrust(enable_real_ip=True, forwarded_for_header="CF-Connecting-IP"))
    rig.client(peer=("10.0.0.5", 1)).send(b"GET / HTTP/1.1\r\nHost: a.com\r\nCF-Connecting-IP: 198.51.100.1\r\n"
                                          b"X-Forwarded-Proto: https\r\n\r\n")
    fields = upstream_fields(rig)
    assert fields["x-real-ip"] == fields["x-forwarded-for"] == "198.51.100.1"
    assert fields["x-forwarded-proto"] == "http"  # only use-forwarded-headers believes the scheme


def test_compute_full_forwarded_for_appends_the_peer():
    rig = rig_with(ClientTrust(use_forwarded_headers=True, compute_full_forwarded_for=True))
    rig.client(peer=("10.0.0.5", 1)).send(b"GET / HTTP/1.1\r\nHost: a.com\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n")
    fields = upstream_fields(rig)
    assert fields["x-forwarded-for"] == "1.1.1.1, 10.0.0.5" and fields["x-real-ip"] == "1.1.1.1"


def test_real_ip_walks_from_the_right_past_trusted_proxies():
    trust = ClientTrust(proxy_real_ip_cidr=("10.0.0.0/8", "fd00::/8"))
    assert real_ip(trust, "10.0.0.1", [b"1.1.1.1, 2.2.2.2", b"10.0.0.2"]) == "2.2.2.2"
    assert real_ip(trust, "10.0.0.1", [b"10.0.0.3, 10.0.0.2"]) == "10.0.0.3"  # all trusted: the left-most
    assert real_ip(trust, "10.0.0.1", [b"1.1.1.1, junk, 10.0.0.2"]) == "10.0.0.2"  # junk stops the walk
    assert real_ip(trust, "10.0.0.1", [b"[fd00::1], 2001:db8::1"]) == "2001:db8::1"
    assert is_trusted(trust, "::ffff:10.1.2.3") and not is_trusted(trust, "11.0.0.1") and not is_trusted(trust, "x")
    assert not is_trusted(ClientTrust(), "2001:db8::1")  # 0.0.0.0/0 is IPv4 only, as nginx


# --- PROXY protocol --------------------------------------------------------------------------------

def v2(command=1, family=0x11, addresses=b"\xc6\x33\x64\x01\x0a\x00\x00\x01\x30\x39\x00\x50", tlv=b""):
    body = addresses + tlv
    return proxyproto.V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


@pytest.mark.parametrize("data, source, port", [
    (b"PROXY TCP4 198.51.100.1 10.0.0.1 12345 80\r\n", "198.51.100.1", 12345),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 12345 443\r\n", "2001:db8::1", 12345),
    (b"PROXY UNKNOWN\r\n", None, 0),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None, 0),
    (v2(), "198.51.100.1", 12345),
    (v2(tlv=b"\x01\x00\x02h2"), "198.51.100.1", 12345),
    (v2(family=0x21, addresses=bytes(range(16)) + bytes(16) + b"\x00\x07\x00\x50"), "1:203:405:607:809:a0b:c0d:e0f", 7),
    (v2(command=0, family=0, addresses=b""), None, 0),
])
def test_proxy_headers_parse(data, source, port):
    for split in range(1, len(data)):
        assert proxyproto.parse(data[:split]) is None, split  # incomplete: read more
    header = proxyproto.parse(data + b"GET /")
    assert (header.source, header.source_port, header.length) == (source, port, len(data))


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP4 198.51.100.1 10.0.0.1 12345\r\n",
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 198.51.100.300 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 198.51.100.1 10.0.0.1 65536 80\r\n",
    b"PROXY TCP4 198.51.100.1 10.0.0.1 +1 80\r\n",
    b"PROXY TCP5 198.51.100.1 10.0.0.1 1 80\r\n",
    b"PROXY TCP4 198.51.100.1 10.0.0.1 1 80\n",
    b"PROXY " + b"1" * 200,
    b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",
    v2()[:12] + b"\x31" + v2()[13:],  # version 3
    v2(command=2),
    v2(family=0x11, addresses=b"\x01\x02\x03"),
    proxyproto.V2_SIGNATURE + b"\x21\x11\xff\xff",  # longer than ingressd buffers
])
def test_bad_proxy_headers_are_refused(data):
    with pytest.raises(proxyproto.ProxyProtocolError):
        proxyproto.parse(data)


def test_proxy_protocol_sets_the_client_address_for_a_trusted_peer():
    rig = rig_with(ClientTrust(use_proxy_protocol=True, proxy_real_ip_cidr=("10.0.0.0/8",)))
    client = rig.client(peer=("10.0.0.5", 1), proxy_protocol=True)
    header = b"PROXY TCP4 198.51.100.1 10.0.0.1 12345 80\r\n"
    for byte in header:  # trickled: still one header
        client.send(bytes([byte]))
    client.send(FORGED)
    fields = upstream_fields(rig)
    assert fields["x-forwarded-for"] == fields["x-real-ip"] == "198.51.100.1" and client.conn.client_ip == "198.51.100.1"
    assert fields["x-forwarded-proto"] == "http"  # use-forwarded-headers is off


def test_proxy_protocol_from_an_untrusted_peer_is_read_but_not_believed():
    rig = rig_with(ClientTrust(use_proxy_protocol=True, proxy_real_ip_cidr=("10.0.0.0/8",)))
    rig.client(peer=("203.0.113.7", 1), proxy_protocol=True).send(
        b"PROXY TCP4 198.51.100.1 10.0.0.1 12345 80\r\n" + FORGED)
    assert upstream_fields(rig)["x-forwarded-for"] == "203.0.113.7"


def test_a_connection_without_the_proxy_header_is_closed():
    rig = rig_with(ClientTrust(use_proxy_protocol=True))
    client = rig.client(peer=("10.0.0.5", 1), proxy_protocol=True)
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\n\r\n")
    assert client.closed and client.received() == b"" and rig.dialed == []


def test_proxy_protocol_with_forwarded_headers_the_proxy_header_wins():
    rig = rig_with(ClientTrust(use_proxy_protocol=True, use_forwarded_headers=True))
    rig.client(peer=("10.0.0.5", 1), proxy_protocol=True).send(v2() + FORGED)
    fields = upstream_fields(rig)
    assert fields["x-real-ip"] == "198.51.100.1" and fields["x-forwarded-proto"] == "https"


@pytest.mark.parametrize("trust", [
    ClientTrust(use_forwarded_headers=True, proxy_real_ip_cidr=("10.0.0.0/8",)),
    ClientTrust(use_forwarded_headers=True, compute_full_forwarded_for=True),
    ClientTrust(use_forwarded_headers=True, compute_full_forwarded_for=True, address_from_headers=False),  # chp
])
def test_a_request_without_forwarded_headers_after_one_with_them(trust):
    """The connection's own forwarding lines serve a trusted peer's request that forwards nothing
    (trust.for_request is skipped): they must equal what for_request would make, and the address
    an earlier request on the same keep-alive connection gave is not kept."""
    rig = rig_with(trust)
    client = rig.client(peer=("10.0.0.5", 1000))
    client.send(FORGED)
    upstream = rig.upstream()
    upstream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    upstream.take()
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\nUser-Agent: t\r\n\r\n")
    fields = upstream_fields(rig)
    assert fields["x-forwarded-for"] == fields["x-real-ip"] == "10.0.0.5" == client.conn.client_ip
    assert fields["x-forwarded-proto"] == fields["x-forwarded-scheme"] == fields["x-scheme"] == "http"
    assert fields["x-forwarded-host"] == "a.com" and fields["x-forwarded-port"] == "80"
    exchange = type("E", (), {"headers": [(b"Host", b"a.com"), (b"User-Agent", b"t")]})()
    from ingressd.dataplane.trust import for_request
    slow = for_request(trust, exchange, "10.0.0.5", "http", 80)
    assert client.conn.forwarded == slow.lines and slow.host is None and slow.client_ip == "10.0.0.5"


def test_a_custom_forwarded_for_header_is_always_read():
    rig = rig_with(ClientTrust(enable_real_ip=True, forwarded_for_header="CF-Connecting-IP"))
    client = rig.client(peer=("10.0.0.5", 1))
    client.send(b"GET / HTTP/1.1\r\nHost: a.com\r\nCF-Connecting-IP: 198.51.100.1\r\n\r\n")
    assert upstream_fields(rig)["x-real-ip"] == "198.51.100.1"
