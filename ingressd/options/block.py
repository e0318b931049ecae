"""ingress-nginx's ``block-user-agents`` and ``block-referers``: requests whose User-Agent (Referer)
matches an entry get 403. Entries are comma-separated, each an exact string (compared ignoring
case, as nginx's map) or a regex after ``~`` (case-sensitive) or ``~*`` (ignoring case), run by
RE2 (linear time, whatever the pattern)."""

from __future__ import annotations

from dataclasses import dataclass

import re2

_MAX_MEM = 1 << 20


def _options(case_sensitive: bool):
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False
    options.max_mem = _MAX_MEM
    return options


@dataclass(frozen=True, slots=True, eq=False)
class Blocklist:
    exact: frozenset[str] = frozenset()  # lower-case
    regexes: tuple = ()  # compiled RE2 patterns
    source: str = ""

    def matches(self, value: bytes) -> bool:
        text = value.decode("latin-1")
        if text.lower() in self.exact:
            return True
        for regex in self.regexes:
            if regex.search(text) is not None:
                return True
        return False


def parse_blocklist(value: str) -> Blocklist:
    exact, regexes = set(), []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith("~"):
            insensitive = entry.startswith("~*")
            pattern = entry[2:] if insensitive else entry[1:]
            try:
                regexes.append(re2.compile(pattern, _options(not insensitive)))
            except re2.error as error:
                raise ValueError(f"{entry!r} is not a regex RE2 can run ({error})") from None
        else:
            exact.add(entry.lower())
    if not exact and not regexes:
        raise ValueError("expected a comma list of strings or ~regexes")
    return Blocklist(frozenset(exact), tuple(regexes), value)


@dataclass(frozen=True, slots=True, eq=False)
class Blocked:
    """The ConfigMap's block lists: checked for every request."""

    user_agents: Blocklist | None = None
    referers: Blocklist | None = None

    def refuses(self, user_agent: bytes, referer: bytes) -> bool:
        return ((self.user_agents is not None and self.user_agents.matches(user_agent))
                or (self.referers is not None and self.referers.matches(referer)))
