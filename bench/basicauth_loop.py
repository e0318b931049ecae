"""How long bcrypt basic-auth verification holds the event loop: inline (the old path) vs ``BasicAuth.verify``.

    python bench/basicauth_loop.py [N]

N distinct wrong passwords (so no verdict is cached) are checked against one bcrypt (cost 10) entry
while a ticker task measures the loop's largest stall; prints both stalls and the wall time.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingressd.options.basicauth import BasicAuth  # noqa: E402


async def measure(n: int, off_loop: bool) -> tuple[float, float]:
    from passlib.hash import bcrypt
    auth = BasicAuth({"u": bcrypt.using(rounds=10).hash("right")})
    stall = 0.0
    running = True

    async def ticker():
        nonlocal stall
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stall = max(stall, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    values = [b"Basic " + base64.b64encode(b"u:wrong%d" % i) for i in range(n)]
    if off_loop:
        results = await asyncio.gather(*(auth.verify(v) for v in values))
    else:
        results = []
        for v in values:
            results.append(auth.admits(v))
            await asyncio.sleep(0.002)  # let the ticker run between checks
    elapsed = time.perf_counter() - start
    running = False
    await task
    assert not any(results)
    return stall, elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for off_loop in (False, True):
        stall, elapsed = asyncio.run(measure(n, off_loop))
        print(f"{'off-loop (verify)' if off_loop else 'inline (admits)  '}: {n} bcrypt checks in {elapsed * 1000:.0f} ms, "
              f"largest event-loop stall {stall * 1000:.1f} ms")


if __name__ == "__main__":
    main()
