"""The body of one data-plane worker process (see ``workers.py`` for the protocol)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import signal
from multiprocessing.connection import Connection

from .config_delta import apply_delta
from .dataplane.server import DataPlane
from .pipes import Channel
from .logs import configure_logging

log = logging.getLogger("ingressd.worker")


def run_worker(conn: Connection, options, index: int, sockets: dict, initial: bytes | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the control plane decides when workers stop
    configure_logging(options.log_level, options.log_format)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    try:
        runner(_serve(conn, options, index, sockets, initial))
    except Exception as error:  # report, so that the control plane can say why
        try:
            conn.send(("failed", f"worker {index}: {error}"))
        except OSError:
            pass
        raise SystemExit(1)


def _loads(data: bytes):
    """A message; a whole configuration (megabytes, millions of acyclic objects) with the cyclic
    collector off, whose passes over the growing heap would cost a fifth of the time for nothing
    (DataPlane.apply then freezes the configuration out of its reach)."""
    if len(data) < 1 << 20 or not gc.isenabled():
        return pickle.loads(data)
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        gc.enable()


async def _serve(conn: Connection, options, index: int, sockets: dict, initial: bytes | None) -> None:
    loop = asyncio.get_running_loop()
    plane = DataPlane.from_options(options)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def send(message: tuple) -> None:
        channel.send(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    applied = [0]  # the generation of plane.config
    configured = asyncio.Event()

    def handle(message: tuple) -> None:
        kind = message[0]
        if kind == "config":
            plane.apply(message[2])
            applied[0] = message[1]
            configured.set()
            send(("applied", message[1]))
        elif kind == "delta":  # what changed since generation message[2] (config_delta.py)
            if plane.config is None or applied[0] != message[2]:
                send(("resync",))
                return
            plane.apply(apply_delta(plane.config, message[3]))
            applied[0] = message[1]
            send(("applied", message[1]))
        elif kind == "challenges":
            plane.set_challenges(message[1])
            send(("challenges-applied", message[2]))
        elif kind == "counters":
            send(("counters", message[1], plane.counters()))
        elif kind == "activity":  # JupyterHub proxy-API routes' last_activity (ingressd.chp.hub)
            from .chp.routes import activity_stamps

            send(("activity", message[1], activity_stamps()))
        elif kind == "stop":
            stop.set()

    # every message both ways, of any size (a configuration: megabytes), never blocking (pipes.py);
    # the pipe closed: the control plane is gone, and so are we
    channel = Channel(conn.fileno(), lambda data: handle(_loads(data)), stop.set)
    if initial is not None:
        handle(_loads(initial))
    send(("started", os.getpid()))
    # Started before the first configuration (WorkerPool.spawn): accept nothing until it is here,
    # so that nothing partial is served (the connections wait in the shared listen queue).
    while plane.config is None and not stop.is_set():
        configured.clear()
        await asyncio.wait({asyncio.ensure_future(configured.wait()), asyncio.ensure_future(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set() and plane.config is None:
        return
    await plane.listen(sockets)
    send(("listening", os.getpid()))
    await stop.wait()
    channel.close()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # a second SIGTERM does not cut the drain
    await plane.drain(plane.config.shutdown_timeout)
    await plane.close()
