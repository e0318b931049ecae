"""Errors and warnings about user input, each naming where it came from.

A diagnostic never stops anything: the control plane reports it (log line, ``ingressd check``,
status page) and keeps serving the last good configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

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
