"""Data-plane worker processes, and the control plane's handle on them.

With ``--workers N`` (N > 1) the control plane (source, translator, certificates, metrics port)
runs in the main process and N worker processes serve traffic. The control plane binds the public
ports; every worker inherits the listening sockets and accepts from them (one accept queue, as
nginx's workers share theirs), and receives every configuration and set of ACME challenges over a
pipe. A worker that dies is started again with the current
configuration; its open connections die with it, the others' do not.

Messages are pickled tuples: to a worker ``("config", generation, Config)`` or ``("delta",
generation, base generation, ConfigDelta)`` (what changed since the previous one, see
``config_delta.py``), ``("challenges",
dict, generation)``, ``("counters", request_id)``, ``("activity", request_id)``, ``("stop",)``; from a
worker ``("started", pid)``, ``("listening", pid)``, ``("applied", generation)``,
``("challenges-applied", generation)``, ``("resync",)``, ``("counters", request_id, Counters)``,
``("activity", request_id, {path: monotonic time})``, ``("failed", reason)``.
"""

from __future__ import annotations

import asyncio
import copyreg
import dataclasses
import gc
import io
import logging
import multiprocessing
import operator
import os
import pickle
import signal
import time
from itertools import count
from multiprocessing.connection import Connection

from .config import Config
from .config_delta import delta
from .dataplane.stats import Counters
from .pipes import Channel

log = logging.getLogger("ingressd.workers")

RESTART_BACKOFF_MAX = 10.0
COUNTERS_TIMEOUT = 2.0


def _reducers() -> dict:
    """Pickle the routing objects as ``cls(*fields)``: dataclasses' own ``__getstate__`` (slots)
    calls ``fields()`` for every object, 4x slower over 10,000 hosts' routes. Only classes whose
    fields are all ``__init__`` arguments (so that the call rebuilds them whole)."""
    from .routing import Backend, HostRoutes, Route

    table = dict(copyreg.dispatch_table)
    for cls in (Route, HostRoutes, Backend):
        fields = dataclasses.fields(cls)
        if all(f.init for f in fields):
            get = operator.attrgetter(*(f.name for f in fields))
            table[cls] = lambda obj, cls=cls, get=get: (cls, get(obj))
    return table


_DISPATCH = _reducers()


def dumps(message: tuple) -> bytes:
    """A message for a worker (``pickle.loads`` reads it)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(message)
    return buffer.getvalue()


class Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, index: int):
        self.index = index
        self.process: multiprocessing.Process | None = None
        self.conn: Connection | None = None
        self.pid = 0
        self.applied = -1  # the last configuration generation it confirmed
        self.outbox: Channel | None = None  # the pipe to the process (pipes.Channel)
        self.failures = 0
        self.started_at = 0.0
        self.listening = False
        self.challenges_applied = 0  # the last challenge generation it confirmed


class WorkerPool:
    """Same surface as ``DataPlane`` for the control plane: apply, set_challenges, counters, ready."""

    def __init__(self, options, count_: int, sockets: dict):
        self.options = options
        self.sockets = sockets  # the listening sockets every worker accepts from
        self.workers = [Worker(i) for i in range(count_)]
        self.config: Config | None = None
        self.generation = 0
        self.challenges: dict[str, bytes] = {}
        self._payload: bytes | None = None
        self._requests = count()
        self._pending: dict[int, tuple[asyncio.Future, list[Counters]]] = {}
        self._closing = False
        self._context = multiprocessing.get_context("spawn")
        self._first_start: asyncio.Future | None = None
        self.challenge_generation = 0
        self._challenge_waiters: list[tuple[int, asyncio.Future]] = []

    # --- lifecycle -------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the worker processes now (before the first configuration exists): they import
        while the control plane reads its source, and accept connections only once they have the
        configuration. ``start`` does it if this was not called."""
        if self._first_start is not None:
            return
        self._first_start = asyncio.get_running_loop().create_future()
        for worker in self.workers:
            self._spawn(worker)

    async def start(self) -> None:
        """Start every worker (unless ``spawn`` did) and wait until all listen; raises OSError
        when they cannot listen (e.g. a port in use)."""
        self.spawn()
        try:
            await asyncio.wait_for(asyncio.shield(self._first_start), 30)
        except asyncio.TimeoutError:
            raise OSError("workers did not start within 30 s") from None

    def _spawn(self, worker: Worker) -> None:
        from .worker import run_worker

        loop = asyncio.get_running_loop()
        parent, child = self._context.Pipe()
        # The current configuration travels with the process, so that it serves it from its first
        # connection on; later ones come over the pipe.
        process = self._context.Process(target=run_worker,
                                        args=(child, self.options, worker.index, self.sockets, self._full_payload()),
                                        name=f"ingressd-worker-{worker.index}", daemon=True)
        process.start()
        child.close()
        worker.process, worker.conn, worker.pid = process, parent, process.pid
        worker.applied = -1
        worker.started_at = time.monotonic()
        # every message both ways, of any size, without blocking the loop (see pipes.py)
        worker.outbox = Channel(parent.fileno(), lambda data, worker=worker: self._on_message(worker, data),
                                lambda: None)  # a closed pipe: _on_exit (the process sentinel) handles it
        loop.add_reader(process.sentinel, self._on_exit, worker)
        worker.challenges_applied = 0
        if self.challenges:
            worker.outbox.put_nowait(pickle.dumps(("challenges", self.challenges, self.challenge_generation)))

    def _on_message(self, worker: Worker, data: bytes) -> None:
        message = pickle.loads(data)
        kind = message[0]
        if kind == "started":
            log.info("worker %d started (pid %d)", worker.index, message[1])
        elif kind == "listening":
            worker.listening = True
            if self._first_start is not None and not self._first_start.done() and all(
                    getattr(w, "listening", False) for w in self.workers):
                self._first_start.set_result(None)
        elif kind == "challenges-applied":
            worker.challenges_applied = message[1]
            self._check_challenge_waiters()
        elif kind == "applied":
            worker.applied = message[1]
            if time.monotonic() - worker.started_at > 10:
                worker.failures = 0  # it has been up a while: forget earlier crashes
        elif kind in ("counters", "activity"):
            pending = self._pending.get(message[1])
            if pending is not None:
                future, results = pending
                results.append(message[2])
                if len(results) >= sum(1 for w in self.workers if w.applied >= 0) and not future.done():
                    future.set_result(None)
        elif kind == "resync":  # a delta for another base (cannot happen on one ordered pipe): send it whole
            log.warning("worker %d asked for the whole configuration", worker.index)
            worker.outbox.put_nowait(self._full_payload())
        elif kind == "failed":
            log.error("worker %d cannot serve: %s", worker.index, message[1])
            if self._first_start is not None and not self._first_start.done():
                self._first_start.set_exception(OSError(message[1]))

    def _on_exit(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        process = worker.process
        loop.remove_reader(process.sentinel)
        worker.outbox.close()
        worker.conn.close()
        process.join(0)
        worker.pid = 0
        worker.listening = False
        self._check_challenge_waiters()  # a dead worker no longer holds anyone up
        if self._closing:
            return
        if self._first_start is not None and not self._first_start.done():
            self._first_start.set_exception(OSError(f"worker {worker.index} exited with {process.exitcode}"))
            return
        worker.failures += 1
        delay = min(RESTART_BACKOFF_MAX, 0.1 * 2 ** (worker.failures - 1))
        log.error("worker %d (pid %d) exited with %s; restarting in %.1f s", worker.index, process.pid,
                  process.exitcode, delay)
        loop.call_later(delay, self._restart, worker)

    def _restart(self, worker: Worker) -> None:
        if not self._closing:
            self._spawn(worker)

    async def drain(self, timeout: float) -> None:
        """worker-shutdown-timeout: every worker drains its connections (SIGTERM) within
        ``timeout``; no worker is started again, and the listening sockets close here (the
        workers close their copies)."""
        self._closing = True
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        for worker in self.workers:
            if worker.process is not None and worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + timeout + 5
        for worker in self.workers:
            if worker.process is not None:
                while worker.process.is_alive() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._closing = True
        for worker in self.workers:
            if worker.process is not None and worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + 10
        for worker in self.workers:
            if worker.process is not None:
                while worker.process.is_alive() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if worker.process.is_alive():
                    worker.process.kill()

    # --- the DataPlane surface -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return not self._closing and self.generation > 0 and all(w.applied >= 1 for w in self.workers if w.pid)

    def apply(self, config: Config) -> None:
        """Send ``config`` to every worker: what changed since the previous one when that is small
        (``config_delta``: a change of 10,000 Ingresses' is a few KB, the whole a few MB)."""
        previous, base = self.config, self.generation
        self.generation += 1
        self.config = config
        self._payload = None  # the whole configuration is pickled only for a worker that starts
        change = delta(previous, config) if previous is not None else None
        if change is None:
            payload = self._full_payload()
        else:
            payload = dumps(("delta", self.generation, base, change))
        for worker in self.workers:
            if worker.pid:
                worker.outbox.put_nowait(payload)
        # The control plane's objects (snapshot, configuration, translator index) are long-lived and
        # acyclic: keep them out of the cyclic collector, whose full passes over 10,000 Ingresses'
        # objects take a few hundred milliseconds (as DataPlane.apply does in a worker).
        gc.collect(1)
        gc.freeze()

    def _full_payload(self) -> bytes | None:
        if self._payload is None and self.config is not None:
            self._payload = dumps(("config", self.generation, self.config))
        return self._payload

    def set_challenges(self, challenges: dict[str, bytes]) -> asyncio.Future:
        """Send the HTTP-01 answers to every worker; the future resolves when all live workers
        serve them (so that the CA is asked to validate only then)."""
        self.challenges = dict(challenges)
        self.challenge_generation += 1
        payload = pickle.dumps(("challenges", self.challenges, self.challenge_generation))
        for worker in self.workers:
            if worker.pid:
                worker.outbox.put_nowait(payload)
        future = asyncio.get_running_loop().create_future()
        self._challenge_waiters.append((self.challenge_generation, future))
        self._check_challenge_waiters()
        return future

    def _check_challenge_waiters(self) -> None:
        live = [w for w in self.workers if w.pid]
        for generation, future in list(self._challenge_waiters):
            if all(w.challenges_applied >= generation for w in live):
                self._challenge_waiters.remove((generation, future))
                if not future.done():
                    future.set_result(None)

    async def gather_counters(self) -> Counters:
        """Every live worker's counters, added up (workers that do not answer in time are skipped)."""
        total = Counters()
        for counters in await self._ask("counters"):
            total.add(counters)
        return total

    async def gather_activity(self) -> dict[str, float]:
        """The proxy-API routes' last activity (monotonic time) by path, the latest of all workers."""
        stamps: dict[str, float] = {}
        for reported in await self._ask("activity"):
            for key, last in reported.items():
                if last > stamps.get(key, 0.0):
                    stamps[key] = last
        return stamps

    async def _ask(self, kind: str) -> list:
        """Every live worker's answer to ``kind`` (those that do not answer in time are skipped)."""
        loop = asyncio.get_running_loop()
        request = next(self._requests)
        future = loop.create_future()
        results: list = []
        self._pending[request] = (future, results)
        payload = pickle.dumps((kind, request))
        asked = 0
        for worker in self.workers:
            if worker.pid and worker.applied >= 0:
                worker.outbox.put_nowait(payload)
                asked += 1
        try:
            if asked:
                await asyncio.wait_for(future, COUNTERS_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("only %d of %d workers reported %s in time", len(results), asked, kind)
        finally:
            del self._pending[request]
        return results


def default_worker_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ignore_interrupts() -> None:
    """Workers stop when the control plane tells them (or dies), not on the terminal's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
