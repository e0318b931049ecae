"""Leader election's state machine (ingressd.kube.election) against an in-memory Lease with the API
server's optimistic concurrency (409 on a stale resourceVersion, 409 on creating an existing Lease),
on a fake clock. The real API calls are covered by the integration tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from ingressd.kube.election import (LeaderElection, LeaseRecord, ObservedLease, Read, Timings, Wait, Write,
                                    microtime)

T = Timings()
EPOCH = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self):
        self.now = 0.0

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)


class LeaseServer:
    """One Lease as the API server keeps it: create fails if it exists, update needs the current
    resourceVersion (both 409 otherwise); every write gets a new resourceVersion."""

    def __init__(self):
        self.lease: ObservedLease | None = None
        self.version = 0
        self.writes = 0

    def get(self) -> ObservedLease | None:
        return self.lease

    def write(self, action: Write) -> ObservedLease | None:
        """The stored Lease, or None for a 409."""
        current = self.lease.resource_version if self.lease is not None else None
        if action.resource_version != current:
            return None
        self.version += 1
        self.writes += 1
        self.lease = ObservedLease(action.record, str(self.version))
        return self.lease


class Replica:
    """Drives one LeaderElection against the server, answering requests after ``latency``; while
    ``partitioned`` its requests time out after ``timeout``."""

    def __init__(self, name: str, server: LeaseServer, clock: Clock, seed: int = 0, latency: float = 0.0):
        self.election = LeaderElection(name, T, wall_clock=clock.wall, rng=random.Random(seed).random)
        self.server = server
        self.clock = clock
        self.latency = latency
        self.partitioned = False
        self.timeout = 1.0
        self.in_flight: tuple[float, object] | None = None  # (answer time, action)

    def step(self) -> None:
        now = self.clock.now
        for _ in range(10):  # a zero-latency answer lets the next request go at once
            if self.in_flight is not None:
                due, action = self.in_flight
                if now < due:
                    return
                self.in_flight = None
                self.answer(now, action)
            action = self.election.next(now)
            if not isinstance(action, (Read, Write)):
                return
            self.in_flight = (now + (self.timeout if self.partitioned else self.latency), action)

    def answer(self, now: float, action) -> None:
        election = self.election
        if self.partitioned:
            election.failed(now, "timeout")
        elif isinstance(action, Read):
            election.read(now, self.server.get())
        else:
            stored = self.server.write(action)
            if stored is None:
                election.failed(now, "409 Conflict")
            else:
                election.written(now, stored)

    def leading(self) -> bool:
        return self.election.leading(self.clock.now)


def run(replicas: list[Replica], clock: Clock, until: float, dt: float = 0.05, check=True) -> list[tuple]:
    """Advance time to ``until``; return the leadership changes (time, name, leading), checking at
    every step that no two replicas lead at once."""
    changes = []
    state = {r.election.identity: r.leading() for r in replicas}
    while clock.now < until - 1e-9:
        clock.now = round(clock.now + dt, 6)
        for replica in replicas:
            replica.step()
        leaders = [r.election.identity for r in replicas if r.leading()]
        if check:
            assert len(leaders) <= 1, f"two leaders at {clock.now}: {leaders}"
        for r in replicas:
            name = r.election.identity
            if r.leading() != state[name]:
                state[name] = r.leading()
                changes.append((clock.now, name, state[name]))
    return changes


def test_default_timings_are_client_gos_and_ttl_scales_them():
    assert (T.lease_duration, T.renew_deadline, T.retry_period) == (15.0, 10.0, 2.0)
    assert Timings.for_ttl(15) == T
    with pytest.raises(ValueError):
        Timings(10, 10, 2)
    with pytest.raises(ValueError):
        LeaderElection("", T)


def test_first_replica_creates_the_lease_and_renews_it_every_retry_period():
    clock, server = Clock(), LeaseServer()
    a = Replica("a", server, clock)
    run([a], clock, 0.1)
    assert a.leading()
    record = server.lease.record
    assert (record.holder, record.lease_duration, record.transitions) == ("a", 15, 0)
    assert record.acquire_time == record.renew_time == microtime(EPOCH + timedelta(seconds=0.05))
    run([a], clock, 20.1)
    assert a.leading()
    assert server.writes == 11  # created at 0.05, renewed every 2 s: no extra reads or writes
    assert server.lease.record.acquire_time == record.acquire_time  # renewals keep the acquire time
    assert server.lease.record.renew_time == microtime(EPOCH + timedelta(seconds=20.05))


def test_spec_round_trip():
    record = LeaseRecord("pod-a", 15, "2026-12-03T12:00:00.000000Z", "2026-12-03T12:00:02.000000Z", 3)
    assert LeaseRecord.from_spec(record.to_spec()) == record
    assert record.to_spec() == {"holderIdentity": "pod-a", "leaseDurationSeconds": 15, "leaseTransitions": 3,
                                "acquireTime": "2026-12-03T12:00:00.000000Z",
                                "renewTime": "2026-12-03T12:00:02.000000Z"}
    assert LeaseRecord.from_spec(None) == LeaseRecord(lease_duration=0)


def test_two_replicas_exactly_one_leads_and_the_other_never_takes_a_renewed_lease():
    clock, server = Clock(), LeaseServer()
    a, b = Replica("a", server, clock, seed=1), Replica("b", server, clock, seed=2)
    changes = run([a, b], clock, 120)
    assert changes == [(0.05, "a", True)]  # a stepped first; b only ever sees a valid, renewed Lease
    assert server.lease.record.transitions == 0


def test_a_leader_that_cannot_renew_stops_at_its_deadline_and_the_other_takes_over_after_the_lease():
    clock, server = Clock(), LeaseServer()
    a, b = Replica("a", server, clock, seed=1), Replica("b", server, clock, seed=2)
    run([a, b], clock, 30)
    last_renewal = 30.05 - 2.0  # renewals start at 0.05 + 2k
    a.partitioned = True  # a's renewal at 30.05 never arrives
    changes = run([a, b], clock, 60)
    lost = next(t for t, name, leading in changes if name == "a" and not leading)
    taken = next(t for t, name, leading in changes if name == "b" and leading)
    assert lost == pytest.approx(last_renewal + T.renew_deadline, abs=0.01)  # counted from the write's start
    # b saw the record change at one of its (jittered) reads after a's last renewal, and may take the
    # Lease lease_duration after that read, at its next read
    retry = 2 * (1 + 1.2)
    assert last_renewal + T.lease_duration < taken <= last_renewal + retry + T.lease_duration + retry
    assert taken > lost
    assert server.lease.record.holder == "b"
    assert server.lease.record.transitions == 1
    a.partitioned = False  # a comes back: it reads b's Lease and stays a candidate
    changes = run([a, b], clock, 90)
    assert changes == []


def test_two_candidates_racing_for_an_expired_lease_one_wins_the_other_gets_409():
    clock, server = Clock(), LeaseServer()
    stale = LeaseRecord("gone", 15, microtime(EPOCH), microtime(EPOCH), 4)
    server.lease = ObservedLease(stale, "7")
    a = LeaderElection("a", T, wall_clock=clock.wall, rng=lambda: 0.0)
    b = LeaderElection("b", T, wall_clock=clock.wall, rng=lambda: 0.0)
    for e in (a, b):
        assert e.next(0.0) == Read()
        e.read(0.0, server.get())
        assert isinstance(e.next(0.0), Wait)  # held by "gone", not yet expired on our clock
    clock.now = 15.0
    for e in (a, b):
        assert e.next(15.0) == Read()
        e.read(15.0, server.get())  # same record: still observed since 0.0, so expired now
    write_a, write_b = a.next(15.0), b.next(15.0)
    assert isinstance(write_a, Write) and write_a.resource_version == write_b.resource_version == "7"
    a.written(15.1, server.write(write_a))
    assert server.write(write_b) is None  # the API server's 409: b wrote over a stale version
    b.failed(15.1, "409 Conflict")
    assert a.leading(15.1) and not b.leading(15.1)
    assert server.lease.record.transitions == 5 and server.lease.record.holder == "a"
    assert b.next(15.1) == Wait(15.1 + 2.0)  # retries a retry period later (jitter 0 here)


def test_creating_an_existing_lease_is_a_conflict_too():
    clock, server = Clock(), LeaseServer()
    a = LeaderElection("a", T, wall_clock=clock.wall, rng=lambda: 0.5)
    a.next(0.0)
    a.read(0.0, None)
    write = a.next(0.0)
    assert write.resource_version is None
    server.lease = ObservedLease(LeaseRecord("b", 15), "1")  # b created it meanwhile
    assert server.write(write) is None
    a.failed(0.1)
    assert not a.leading(0.1)
    assert a.next(0.1) == Wait(0.1 + 2.0 * (1 + 1.2 * 0.5))
    assert a.next(3.31) == Read()


def test_a_leader_that_reads_another_holder_stops_at_once():
    clock, server = Clock(), LeaseServer()
    a = Replica("a", server, clock)
    run([a], clock, 4)
    assert a.leading()
    # someone overwrote the Lease (e.g. an operator's kubectl edit): a's fast-path renewal gets 409,
    # it reads the new holder and stops immediately, well before its own deadline
    server.lease = ObservedLease(LeaseRecord("intruder", 15, "x", "x", 9), "99")
    changes = run([a], clock, 8.1)
    assert changes == [(4.05, "a", False)]
    assert a.election.next(clock.now).__class__ is Wait


def test_release_lets_the_other_replica_take_over_within_a_retry_period():
    clock, server = Clock(), LeaseServer()
    a, b = Replica("a", server, clock, seed=1), Replica("b", server, clock, seed=2)
    run([a, b], clock, 10)
    release = a.election.release(clock.now)
    assert not a.leading()  # stops leading before the write: never two leaders
    assert release.record.holder == "" and release.record.lease_duration == 1
    a.election.written(clock.now, server.write(release))
    assert a.election.next(clock.now) == Wait(float("inf"))
    released_at = clock.now
    changes = run([a, b], clock, 20)
    (taken, name, leading), = changes
    assert name == "b" and leading
    assert taken - released_at <= 2.0 * (1 + 1.2) + 0.05
    assert server.lease.record.transitions == 1
    assert a.election.release(clock.now) is None  # not leading: nothing to release


@pytest.mark.parametrize("seed", range(8))
def test_never_two_leaders_with_latency_partitions_and_restarts(seed):
    """Random partitions and latencies for three replicas over ten simulated minutes: at most one
    leader at every instant (``run`` checks), and someone leads most of the time."""
    rng = random.Random(seed)
    clock, server = Clock(), LeaseServer()
    replicas = [Replica(name, server, clock, seed=seed * 10 + i, latency=rng.uniform(0, 0.3))
                for i, name in enumerate("abc")]
    led = 0.0
    while clock.now < 600:
        for replica in replicas:
            if rng.random() < 0.05:
                replica.partitioned = not replica.partitioned
        run(replicas, clock, clock.now + 5)
        led += 5 if any(r.leading() for r in replicas) else 0
    assert led >= 0.3 * 600
