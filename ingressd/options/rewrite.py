"""``use-regex`` paths and ``rewrite-target``, on RE2: matching costs linear time, whatever the pattern.

ingress-nginx turns every path of a host that uses ``use-regex`` or ``rewrite-target`` into
``location ~* "^PATH"`` (case-insensitive, anchored at the start only), tried longest path first,
and rewrites with ``rewrite "(?i)PATH" TARGET break;``: when PATH matches anywhere in the
(decoded, normalized) URI, the *whole* URI becomes TARGET with ``$1``..``$9`` filled in from the
groups, and the query string is kept (appended after TARGET's own, unless TARGET ends with ``?``).

Python's ``re`` can backtrack for ever on a hostile pattern such as ``(a+)+$``; RE2 cannot, and
refuses what it cannot run in linear time (backreferences, lookaround): such a path is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import re2

_OPTIONS = re2.Options()
_OPTIONS.case_sensitive = False
_OPTIONS.log_errors = False  # the error becomes a diagnostic, not a line on stderr
_OPTIONS.max_mem = 1 << 20  # a bound on one compiled pattern

_GROUP_RE = re.compile(r"\$(\d|\{\d\})")
_TARGET_RE = re.compile(r"^/[^\s\x00-\x1f\"\\]*$")
_SAFE = "/:@!$&'()*+,;=-._~"  # what stays as is when the rewritten path is quoted


def compile_path(path: str):
    """The location regex of one path; ValueError with RE2's reason when it cannot be used."""
    try:
        return re2.compile("^" + path, _OPTIONS)
    except re2.error as error:
        raise ValueError(f"path {path!r} is not a regex RE2 can run ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    text = error.args[0] if error.args else str(error)
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


def parse_target(value: str) -> tuple:
    """``rewrite-target``: a path with ``$N`` references: alternating literal text and group numbers."""
    value = value.strip()
    if not _TARGET_RE.match(value):
        raise ValueError("expected a path starting with / (with $1..$9 for the path's groups), "
                         "without spaces or control characters")
    parts: list = []
    last = 0
    for match in _GROUP_RE.finditer(value):
        parts += [value[last:match.start()], int(match.group(1).strip("{}"))]
        last = match.end()
    parts.append(value[last:])
    rest = "".join(p for p in parts if isinstance(p, str))
    if "$" in rest:
        raise ValueError("only $1..$9 (the path's groups) may be used in rewrite-target")
    return tuple(parts)


@dataclass(frozen=True, slots=True, eq=False)
class Rewrite:
    """One path's rewrite: its regex (searched, as nginx's ``rewrite``) and the target's parts."""

    path: str
    target: tuple  # from parse_target
    regex: object = None

    def __post_init__(self) -> None:
        if self.regex is None:
            try:
                regex = re2.compile(self.path, _OPTIONS)
            except re2.error as error:
                raise ValueError(f"path {self.path!r} is not a regex RE2 can run ({_reason(error)})") from None
            object.__setattr__(self, "regex", regex)
        groups = self.regex.groups
        for part in self.target[1::2]:
            if part > groups:
                raise ValueError(f"rewrite-target uses ${part} but path {self.path!r} has {groups} group(s)")

    @property
    def template(self) -> str:
        return "".join(p if isinstance(p, str) else f"${p}" for p in self.target)

    def apply(self, path: str, query: str) -> bytes | None:
        """The request target sent upstream for a (decoded, normalized) path, or None when the
        path does not match (nginx leaves it as it is)."""
        match = self.regex.search(path)
        if match is None:
            return None
        if len(self.target) == 1:
            new = self.target[0]
        else:
            new = "".join(p if isinstance(p, str) else (match.group(p) or "") for p in self.target)
        new_path, mark, new_query = new.partition("?")
        out = quote(new_path, safe=_SAFE, errors="surrogateescape")
        if mark:
            if new_query.endswith("?") or not query:
                query = new_query.rstrip("?")
            else:
                query = new_query + "&" + query
        if query:
            out += "?" + query
        return out.encode("latin-1", "replace")
