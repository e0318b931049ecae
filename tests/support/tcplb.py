#!/usr/bin/env python3
"""A round-robin TCP load balancer for tests: what a cloud load balancer does in front of the
replicas, so that a CA's HTTP-01 validation may reach any of them.

    python tests/support/tcplb.py --listen 127.0.0.1:PORT --backend 127.0.0.1:P1 --backend 127.0.0.1:P2

Each new connection goes to the next backend that accepts it (a refused one is skipped, as a
load balancer's health check would). Prints ``listening PORT`` once bound; every connection's
backend is logged on stderr (``conn N -> HOST:PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001
            pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--backend", action="append", required=True)
    args = parser.parse_args()
    backends = [(b.rsplit(":", 1)[0], int(b.rsplit(":", 1)[1])) for b in args.backend]
    turn = itertools.cycle(range(len(backends)))
    counter = itertools.count(1)

    async def handle(reader, writer):
        number = next(counter)
        for _ in range(len(backends)):
            host, port = backends[next(turn)]
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            print(f"conn {number} -> {host}:{port}", file=sys.stderr, flush=True)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return
        writer.close()

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), reuse_address=True)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
