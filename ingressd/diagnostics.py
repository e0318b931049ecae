"""Errors and warnings about user input, each naming where it came from.

A diagnostic never stops anything: the control plane reports it (log line, ``ingressd check``,
status page) and keeps serving the last good configuration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: str  # ERROR or WARNING
    message: str
    origin: str | None = None  # the manifest file, when known
    object: str | None = None  # "Kind namespace/name", when known
    code: str = ""  # a stable category for metrics: unparsable, invalid, duplicate, conflict, annotation, reference

    @property
    def kind(self) -> str:
        """The object's kind, or "file" for problems with a whole file."""
        return self.object.split(" ", 1)[0] if self.object else ("file" if self.origin else "setting")

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.origin, self.object) if part)
        return f"{self.severity}: {where}: {self.message}" if where else f"{self.severity}: {self.message}"


class InvalidObject(ValueError):
    """A Kubernetes object that cannot be used; the message says why."""


class Reporter:
    """The one owner of diagnostics output.

    Sources, the translator and the certificate planner only *return* diagnostics; whoever runs
    them hands each new set to :meth:`update` under a channel name ("config", "certificates").
    A diagnostic is logged once, when it first appears in any channel, and again only after it
    has gone away and come back. Sinks (a Kubernetes Event recorder) get the same new ones."""

    def __init__(self, logger: logging.Logger | None = None):
        self.log = logger or logging.getLogger("ingressd")
        self.sinks: list[Callable[[Diagnostic], None]] = []
        self._channels: dict[str, frozenset[Diagnostic]] = {}

    def update(self, channel: str, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """Set ``channel``'s current diagnostics; returns (and reports) those that are new."""
        before = frozenset().union(*self._channels.values())
        ordered = list(dict.fromkeys(diagnostics))
        self._channels[channel] = frozenset(ordered)
        new = [d for d in ordered if d not in before]
        for diagnostic in new:
            self.log.log(logging.ERROR if diagnostic.severity == ERROR else logging.WARNING, "%s", diagnostic,
                         extra={"object": diagnostic.object, "file": diagnostic.origin,
                                "event": "rejected" if diagnostic.severity == ERROR else "warning"})
            for sink in self.sinks:
                try:
                    sink(diagnostic)
                except Exception:  # noqa: BLE001 - reporting must never stop the control plane
                    self.log.exception("reporting %s failed", diagnostic)
        return new

    def current(self) -> frozenset[Diagnostic]:
        return frozenset().union(*self._channels.values())
