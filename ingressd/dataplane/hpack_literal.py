"""A stateless HPACK encoder for requests to HTTP/2 upstreams: the static table and literals only.

``hpack.Encoder`` searches and grows a dynamic table for every field, Huffman-codes every string and
was the largest part of a proxied gRPC call's CPU time. To an upstream on a fast network, bytes
matter less: as nginx's grpc_pass does, this encoder sends each field as an indexed static entry
when the static table has the exact pair, else as a "literal without indexing" (RFC 7541 §6.2.2)
with the static name index when there is one, and plain (not Huffman-coded) strings. It keeps no
state, so it can never disagree with the decoder's dynamic table; its first header block (and the
first after ``header_table_size`` is set) starts with a size update to 0 (§6.3) to say so.
"""

from __future__ import annotations

from hpack.table import HeaderTable

_PAIRS: dict[tuple[bytes, bytes], bytes] = {}
_NAMES: dict[bytes, bytes] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _PAIRS.setdefault((_name, _value), bytes((0x80 | _index,)))  # indexed field, 7-bit prefix
    # literal without indexing, indexed name: 4-bit prefix, so 15 and above continue in a byte
    _NAMES.setdefault(_name, bytes((_index,)) if _index < 15 else bytes((0x0F, _index - 15)))
_TABLE_SIZE_ZERO = b"\x20"


def _string(data: bytes) -> bytes:
    """A plain string literal: its length (7-bit prefix, H bit clear), then the bytes."""
    length = len(data)
    if length < 127:
        return bytes((length,)) + data
    out = bytearray(b"\x7f")
    length -= 127
    while length >= 128:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + data


class LiteralEncoder:
    """Stands in for ``hpack.Encoder`` on an ``h2`` connection (``conn.encoder = LiteralEncoder()``)."""

    def __init__(self) -> None:
        self._announce = True  # the size update to 0 is still to be sent

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:  # the peer's SETTINGS_HEADER_TABLE_SIZE
        self._announce = True

    def encode(self, headers, huffman: bool = True) -> bytes:
        """``headers``: (name, value) byte pairs, names lower-case."""
        parts = []
        if self._announce:
            self._announce = False
            parts.append(_TABLE_SIZE_ZERO)
        pairs, names = _PAIRS, _NAMES
        for field in headers:
            name, value = field[0], field[1]
            indexed = pairs.get((name, value))
            if indexed is not None:
                parts.append(indexed)
                continue
            prefix = names.get(name)
            if prefix is None:
                parts += (b"\x00", _string(name), _string(value))
            else:
                parts += (prefix, _string(value))
        return b"".join(parts)
