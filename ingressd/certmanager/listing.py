"""What each managed certificate is doing: rows for ``ingressd certs`` and the status page."""

from __future__ import annotations

import datetime
import time

from ..config import Settings, Snapshot
from .decide import TLS_TYPE, SecretFacts, decide, facts_of
from .plan import CertSettings, Plan, plan
from .store import CertStatus, SecretStore, StatusStore

COLUMNS = ("secret", "hosts", "issuer", "not_after", "next_renewal", "state", "last_error")
HEADER = ("SECRET", "HOSTS", "ISSUER", "NOT-AFTER", "NEXT-RENEWAL", "STATE", "LAST-ERROR")


def _time(timestamp: float | None) -> datetime.datetime | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).replace(microsecond=0)


def certificate_entries(result: Plan, facts: dict[tuple[str, str], SecretFacts], statuses: dict[str, CertStatus],
                        now: float, issuing: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """One entry per managed certificate (pure): the fields of ``COLUMNS``, times as datetimes."""
    groups: dict[str, list] = {}
    for cert in result.issuable:
        groups.setdefault(cert.group, []).append(cert)
    entries = []
    for cert in result.certificates:
        current = facts.get(cert.key_)
        entry = {"secret": f"{cert.namespace}/{cert.secret_name}", "hosts": list(cert.hosts),
                 "issuer": str(cert.issuer_ref) if cert.issuer_ref else None,
                 "not_after": _time(current.not_after) if current is not None and current.usable else None,
                 "next_renewal": None, "state": "Error", "last_error": cert.problem}
        entries.append(entry)
        if cert.problem is not None:
            continue
        status = statuses.get(cert.group) or CertStatus()
        namespace_facts = {k: f for k, f in facts.items() if k[0] == cert.namespace}
        decision = decide(groups[cert.group], namespace_facts, status, now)
        if cert.group in issuing:
            state = "Issuing"
        elif decision.copy_from is not None:
            state = "Renewal due" if decision.issue_at <= now else "Ready"
            if current is None or current.fingerprint != decision.copy_from.fingerprint:
                state = "Copying"  # a valid certificate with the same names exists in another Secret
        elif current is not None and current.temporary:
            state = "Temporary"
        elif current is not None and current.valid_at(now):
            state = f"Reissuing: {decision.reason}"
        else:
            state = "Pending"
        if status.failures and decision.issue_at is not None and decision.issue_at > now:
            state += f" (backoff after {status.failures} failure(s))"
        entry.update(state=state, next_renewal=_time(decision.issue_at), last_error=status.last_error or None)
    return entries


def certificate_rows(snapshot: Snapshot, settings: Settings, cert_settings: CertSettings,
                     store: SecretStore | None, status_store: StatusStore | None,
                     now: float | None = None) -> list[dict]:
    """Entries for what the manifests and the state directory hold (``ingressd certs``)."""
    now = time.time() if now is None else now
    stored = store.list() if store is not None else []
    facts = {s.key: facts_of(s) for s in stored if s.type == TLS_TYPE}
    statuses = status_store.load() if status_store is not None else {}
    owns = store.owns if store is not None else None
    return certificate_entries(plan(snapshot, settings, cert_settings, owns=owns), facts, statuses, now)


def render(entries: list[dict]) -> str:
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(value, list):
            return ",".join(value)
        return str(value)

    table = [HEADER] + [tuple(cell(e[c]) for c in COLUMNS) for e in entries]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip() for row in table)
