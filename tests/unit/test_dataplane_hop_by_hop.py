"""The response fields a client never gets from an upstream (RFC 9110 §7.6.1), cut without a regex
in the usual case: the fast path must agree with the regular expression on every input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingressd.dataplane.forward import new_request_id
from ingressd.dataplane.http import _HOP_BY_HOP, without_hop_by_hop

NAMES = [b"Connection", b"connection", b"CONNECTION ", b"Connectionx", b"X-Connection", b"Keep-Alive", b"TE",
         b"Trailer", b"Transfer-Encoding", b"Upgrade", b"Proxy-Connection", b"Server", b"Text", b"Tex",
         b"Content-Length", b"Date"]
line = st.tuples(st.sampled_from(NAMES), st.sampled_from([b":", b": ", b"\t:"]),
                 st.binary(max_size=8).filter(lambda v: b"\n" not in v and b"\r" not in v))


@settings(max_examples=400, deadline=None)
@given(st.lists(line, max_size=6), st.booleans())
def test_fast_path_agrees_with_the_regex(lines, crlf):
    end = b"\r\n" if crlf else b"\n"
    fields = b"".join(name + sep + value + end for name, sep, value in lines)
    assert without_hop_by_hop(fields, b"\n" + fields.lower()) == _HOP_BY_HOP.sub(b"", fields)


def test_the_usual_response_loses_only_its_connection_line():
    fields = b"Server: nginx\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
    assert without_hop_by_hop(fields, b"\n" + fields.lower()) == b"Server: nginx\r\nContent-Length: 2\r\n"


def test_request_ids_are_32_hex_digits_and_unique():
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:16] for i in ids}) == 1  # one per-process half, the counter below it
