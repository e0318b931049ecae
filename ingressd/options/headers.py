"""Headers from named ConfigMaps and lists: ingress-nginx's ``add-headers`` (response headers for
every response), ``proxy-set-headers`` (request headers for every upstream), ``hide-headers``
(response headers of upstreams removed) and the ``custom-headers`` annotation (response headers
of one Ingress, each allowed by ``global-allowed-response-headers``).

A ConfigMap's keys are the header names and its values the header values, taken literally: nginx
variables in a value are not expanded (reported). Response headers replace an upstream's header
of the same name (headers-more's ``more_set_headers``); request headers replace the client's
(``proxy_set_header``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*")


def parse_ref(value: str) -> str:
    """A ConfigMap named NAME or NAMESPACE/NAME."""
    value = value.strip()
    if not re.match(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", value):
        raise ValueError("expected NAMESPACE/NAME or NAME of a ConfigMap")
    return value


def parse_names(value: str) -> tuple[str, ...]:
    """hide-headers, global-allowed-response-headers: a comma list of header names."""
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    for name in names:
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a header name")
    return names


def header_lines(data: dict[str, str], what: str) -> tuple[tuple[tuple[bytes, bytes], ...], list[str]]:
    """((lower-case name, b"Name: value\\r\\n"), ...) of a ConfigMap's data, and a warning per entry
    not used as written."""
    lines, warnings = [], []
    for name, value in sorted(data.items()):
        value = str(value).strip()
        if not _TOKEN.match(name):
            warnings.append(f"{what}: {name!r} is not a header name; ignored")
            continue
        if any(ord(c) < 0x20 and c != "\t" for c in value) or any(ord(c) > 0xff for c in value):
            warnings.append(f"{what}: the value of {name} has control characters; ignored")
            continue
        if _VARIABLE.search(value):
            warnings.append(f"{what}: the value of {name} is sent literally (nginx variables are not expanded)")
        lines.append((name.lower().encode(), b"%s: %s\r\n" % (name.encode(), value.encode("latin-1"))))
    return tuple(lines), warnings


@dataclass(frozen=True, slots=True, eq=False)
class ResponseHeaders:
    """What is done to every response head of the routes that have it: ``strip`` removes the
    upstream's headers (hidden ones and those replaced), ``lines`` are added."""

    added: tuple = ()  # (lower-case name, line), in order
    hidden: tuple[bytes, ...] = ()  # lower-case names removed (hide-headers)
    lines: bytes = b""
    strip: object = None  # compiled regex over the head's field lines, or None

    @classmethod
    def build(cls, added: tuple = (), hidden: tuple = ()) -> "ResponseHeaders | None":
        if not added and not hidden:
            return None
        names = list(dict.fromkeys([*hidden, *(name for name, _ in added)]))
        strip = re.compile(rb"^(?:" + b"|".join(re.escape(n) for n in names) + rb")[ \t]*:[^\n]*\n",
                           re.IGNORECASE | re.MULTILINE)
        return cls(tuple(added), tuple(hidden), b"".join(line for _, line in added), strip)

    def merged(self, added: tuple) -> "ResponseHeaders":
        """These headers with ``added`` on top (the same name: ``added``'s value)."""
        names = {name for name, _ in added}
        return ResponseHeaders.build(tuple(a for a in self.added if a[0] not in names) + tuple(added), self.hidden)

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append("add=" + "+".join(n.decode() for n, _ in self.added))
        if self.hidden:
            parts.append("hide=" + "+".join(n.decode() for n in self.hidden))
        return ",".join(parts)
