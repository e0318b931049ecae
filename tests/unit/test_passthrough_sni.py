"""The SNI of a ClientHello (ssl-passthrough), pure: real ClientHellos from Python's ssl module."""

import ssl

import pytest
from hypothesis import given, strategies as st

from ingressd.dataplane.passthrough import NeedMore, server_name


def client_hello(name: str | None, tls13: bool = True) -> bytes:
    """The first flight of a real TLS client (OpenSSL through the ssl module, no socket)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("tls13", [True, False])
def test_the_name_of_a_real_client_hello(tls13):
    assert server_name(client_hello("Secure.Example.COM", tls13)) == "secure.example.com"


def test_no_sni_and_not_tls():
    assert server_name(client_hello(None)) is None  # an IP address or no name: no SNI sent
    assert server_name(b"GET / HTTP/1.1\r\n\r\n") is None
    assert server_name(b"\x16\x03\x01\xff\xff" + b"\x00" * 100) is None  # longer than a record may be


def test_partial_records_ask_for_more():
    hello = client_hello("a.example.org")
    for cut in (1, 4, 5, 60, len(hello) - 1):
        with pytest.raises(NeedMore):
            server_name(hello[:cut])
    assert server_name(hello + b"trailing") == "a.example.org"


@given(st.binary(max_size=600))
def test_garbage_never_raises_anything_else(data):
    try:
        server_name(b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data)
    except NeedMore:
        pytest.fail("a complete record is never 'need more'")


@given(st.integers(min_value=5, max_value=400))
def test_truncated_inner_lengths_are_safe(cut):
    hello = bytearray(client_hello("b.example.org"))
    body = hello[:cut]
    body[3:5] = (len(body) - 5).to_bytes(2, "big")  # a record claiming to end early
    server_name(bytes(body))  # returns a name or None; never raises
