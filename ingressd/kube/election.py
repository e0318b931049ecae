"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection`` does it.

Every replica serves traffic; only the one holding the Lease orders certificates and writes Ingress
status. :class:`LeaderElection` is the whole protocol as a small sans-IO state machine: it says what
to do next (:class:`Read` the Lease, :class:`Write` it, or :class:`Wait`), the caller does it and
reports the outcome (``read``, ``written``, ``failed``), passing the time on a monotonic clock. The
IO side (:mod:`ingressd.kube.elector`) only performs those steps against the API.

The rules (client-go's, with its default timings 15 s / 10 s / 2 s):

- A candidate reads the Lease every ``retry_period`` (jittered). It takes a Lease that is missing,
  released (no holder) or expired: not renewed for ``lease_duration`` as measured on *this* replica's
  clock since it last saw the record change (the holder's ``renewTime`` is never compared with our
  clock, so clock skew between nodes does not matter).
- Every write carries the ``resourceVersion`` that was read (optimistic concurrency): of two
  candidates racing for an expired Lease, the API server lets one win and answers the other 409.
- The leader renews every ``retry_period``, writing straight over the record it last wrote (no read
  first; a 409 makes it read again). It leads only until ``renew_deadline`` after the *start* of its
  last successful write: a leader that cannot renew in time stops leading at once, before anyone else
  may consider the Lease expired (``renew_deadline < lease_duration``), so two replicas never both
  believe they lead.
- On shutdown the leader releases the Lease (no holder, ``leaseDurationSeconds: 1``), so that the other
  replica takes over within a retry period instead of a lease duration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Union

DEFAULT_ELECTION_ID = "ingressd-leader"
MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # metav1.MicroTime, as the API server writes it
JITTER = 1.2  # client-go's wait.JitterUntil factor for candidates' retries


@dataclass(frozen=True)
class Timings:
    """client-go's defaults; ``for_ttl`` scales them (ingress-nginx's ``--election-ttl``)."""

    lease_duration: float = 15.0  # a Lease not renewed this long may be taken
    renew_deadline: float = 10.0  # a leader that has not renewed this long stops leading
    retry_period: float = 2.0  # how often candidates try and the leader renews

    def __post_init__(self):
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("election timings need 0 < retry period < renew deadline < lease duration")

    @classmethod
    def for_ttl(cls, lease_duration: float) -> "Timings":
        return cls(lease_duration, lease_duration * 2 / 3, lease_duration * 2 / 15)


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's ``spec``: who holds it, since when, renewed when."""

    holder: str = ""
    lease_duration: int = 15  # seconds
    acquire_time: str | None = None  # MicroTime strings, kept as the server wrote them
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict | None) -> "LeaseRecord":
        spec = spec or {}
        return cls(holder=spec.get("holderIdentity") or "", lease_duration=int(spec.get("leaseDurationSeconds") or 0),
                   acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
                   transitions=int(spec.get("leaseTransitions") or 0))

    def to_spec(self) -> dict:
        spec: dict = {"holderIdentity": self.holder, "leaseDurationSeconds": self.lease_duration,
                      "leaseTransitions": self.transitions}
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


@dataclass(frozen=True)
class ObservedLease:
    """A Lease as the API returned it."""

    record: LeaseRecord
    resource_version: str


@dataclass(frozen=True)
class Read:
    """GET the Lease; report ``read(now, ObservedLease)``, or ``read(now, None)`` on 404."""


@dataclass(frozen=True)
class Write:
    """Create the Lease (``resource_version`` None) or replace it carrying ``resource_version``;
    report ``written(now, ObservedLease)``, or ``failed(now, reason)`` (409 included)."""

    record: LeaseRecord
    resource_version: str | None


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until`` (monotonic seconds)."""

    until: float


Action = Union[Read, Write, Wait]


def microtime(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime(MICROTIME)


class LeaderElection:
    """One replica's side of the election. Sans-IO: every call gets the current monotonic time.

    >>> e = LeaderElection("pod-a", wall_clock=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> e.next(0.0)
    Read()
    >>> e.read(0.0, None)           # no Lease yet: create it
    >>> e.next(0.0).record.holder
    'pod-a'
    >>> e.written(0.1, ObservedLease(e.next_record, "1")); e.leading(0.1), e.leader_until
    (True, 10.0)
    """

    def __init__(self, identity: str, timings: Timings = Timings(), *,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 rng: Callable[[], float] = random.random):
        if not identity:
            raise ValueError("leader election needs an identity (POD_NAME)")
        self.identity = identity
        self.timings = timings
        self.wall_clock = wall_clock
        self.rng = rng
        self.observed: ObservedLease | None = None  # the Lease as last read or written
        self.observed_at = 0.0  # when (our clock) its record last changed
        self.leader_until: float | None = None  # leading while now < leader_until
        self.next_record: LeaseRecord | None = None  # the record of the write in flight
        self._must_read = True  # the next attempt starts with a read (not leading, or after a failure)
        self._write_due = False  # a read decided to write: the next attempt is that write
        self._fast_path = False  # the write in flight renews without a read first
        self._pending: Read | Write | None = None
        self._attempt_started = 0.0
        self._next_attempt = 0.0
        self._released = False

    # --- what to do ----------------------------------------------------------------------------------

    def leading(self, now: float) -> bool:
        return self.leader_until is not None and now < self.leader_until

    def next(self, now: float) -> Action:
        """The next step. While a Read or Write is outstanding, Wait (the caller reports first)."""
        self._expire(now)
        if self._pending is not None:
            return Wait(self.leader_until if self.leading(now) else now + self.timings.retry_period)
        if self._released:
            return Wait(float("inf"))
        if now < self._next_attempt:
            return Wait(min(self._next_attempt, self.leader_until) if self.leading(now) else self._next_attempt)
        self._attempt_started = now
        if self._write_due or not (self._must_read or self.observed is None):
            self._fast_path = not self._write_due
            self._write_due = False
            return self._write(self.observed)  # after a read, or the leader's fast path: renew over what it wrote
        self._pending = Read()
        return self._pending

    def release(self, now: float) -> Write | None:
        """On shutdown: give the Lease up if we hold it (the caller performs the Write, once)."""
        self._released = True
        was_leading = self.leading(now)
        self.leader_until = None
        if not was_leading or self.observed is None:
            return None
        record = replace(self.observed.record, holder="", lease_duration=1, renew_time=microtime(self.wall_clock()))
        self._pending = Write(record, self.observed.resource_version)
        self.next_record = record
        return self._pending

    # --- outcomes --------------------------------------------------------------------------------------

    def read(self, now: float, lease: ObservedLease | None) -> None:
        """The GET answered: ``lease`` is None when there is no such Lease (404)."""
        self._pending = None
        if lease is None:
            self.observed = None
            self._decide(now, None)
            return
        if self.observed is None or lease.record != self.observed.record:
            self.observed_at = now  # the record moved: its holder is alive (or it changed hands)
        self.observed = lease
        self._decide(now, lease)

    def written(self, now: float, lease: ObservedLease) -> None:
        """The create or update succeeded; ``lease`` is what the server stored."""
        self._pending = None
        self.observed = lease
        self.observed_at = now
        if self._released:
            return
        self.leader_until = self._attempt_started + self.timings.renew_deadline
        self._must_read = False
        self._next_attempt = self._attempt_started + self.timings.retry_period

    def failed(self, now: float, reason: str = "") -> None:
        """The read or write failed: a 409 Conflict (someone else wrote first), an error, a timeout.
        A leader keeps leading until its deadline and retries; a candidate retries later."""
        fast_path = isinstance(self._pending, Write) and self._fast_path
        self._pending = None
        self._must_read = True
        self._write_due = False
        self._expire(now)
        if fast_path and self.leading(now):
            self._next_attempt = now  # client-go's slow path at once: read what is there now
        else:
            self._schedule_retry(now)

    # --- inside ------------------------------------------------------------------------------------------

    def _decide(self, now: float, lease: ObservedLease | None) -> None:
        """After a read: write (take or renew) or wait."""
        if lease is not None:
            holder = lease.record.holder
            if holder and holder != self.identity:
                if self.leader_until is not None:  # someone else holds it now: stop at once
                    self.leader_until = None
                duration = lease.record.lease_duration or self.timings.lease_duration  # the holder's own
                if now < self.observed_at + duration:
                    self._schedule_retry(now)  # held and not expired
                    return
        self._next_attempt = now  # write right away (next() returns the Write)
        self._write_due = True

    def _write(self, lease: ObservedLease | None) -> Write:
        stamp = microtime(self.wall_clock())
        duration = round(self.timings.lease_duration)
        if lease is not None and lease.record.holder == self.identity:
            record = replace(lease.record, lease_duration=duration, renew_time=stamp)
        else:
            transitions = lease.record.transitions + 1 if lease is not None else 0
            record = LeaseRecord(self.identity, duration, stamp, stamp, transitions)
        self.next_record = record
        self._pending = Write(record, lease.resource_version if lease is not None else None)
        return self._pending

    def _schedule_retry(self, now: float) -> None:
        period = self.timings.retry_period
        if self.leading(now):  # renewals are not jittered: the deadline is close
            self._next_attempt = now + period
        else:
            self._next_attempt = now + period * (1 + JITTER * self.rng())

    def _expire(self, now: float) -> None:
        if self.leader_until is not None and now >= self.leader_until:
            self.leader_until = None
            self._must_read = True
