"""``parse_host``: the Host header as a routing key (lower-case, no port, no trailing dot)."""

from __future__ import annotations

import pytest

from ingressd.dataplane.forward import parse_host


@pytest.mark.parametrize("raw, expected", [
    (b"foo.com", "foo.com"),
    (b"Foo.COM", "foo.com"),
    (b"foo.com:8080", "foo.com"),
    (b"FOO.com:443", "foo.com"),
    (b"foo.com.", "foo.com"),
    (b"foo.com.:80", "foo.com"),
    (b" foo.com ", "foo.com"),
    (b"bar.foo.com", "bar.foo.com"),
    (b"my-host_1.example", "my-host_1.example"),
    (b"localhost", "localhost"),
    (b"127.0.0.1", "127.0.0.1"),
    (b"127.0.0.1:8080", "127.0.0.1"),
    (b"[::1]", "[::1]"),
    (b"[::1]:8443", "[::1]"),
    (b"[2001:DB8::1]:80", "[2001:db8::1]"),
])
def test_valid_hosts(raw, expected):
    assert parse_host(raw) == expected


@pytest.mark.parametrize("raw", [
    b"foo com",
    b"foo.com:http",
    b"foo.com:80:90",
    b"foo.com/path",
    b"user@foo.com",
    b"foo.com\x00",
    b"foo.com\r\nx",
    b"<script>",
    b"[::1",
    b"[::1]x",
    b"[::1]:abc",
    b"[not an address]",
    b"[foo.com]",
])
def test_garbage_is_rejected(raw):
    assert parse_host(raw) is None


def test_repeated_calls_agree():
    # parse_host caches; the cache must not change answers
    for _ in range(3):
        assert parse_host(b"Foo.com:1") == "foo.com"
        assert parse_host(b"bad host") is None
