"""Run ``ingressd serve`` under cProfile.

    python bench/profile_serve.py OUT.prof serve --workers 1 --manifests DIR ...

Profiling starts disabled; SIGUSR1 starts it (so start-up and warm-up stay out of the profile).
ingressd stops cleanly on SIGTERM; the stats are then written to OUT.prof (pstats format).
"""

from __future__ import annotations

import cProfile
import signal
import sys



def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    profile = cProfile.Profile()
    state = {"on": False}

    def start(signum, frame):
        if not state["on"]:
            state["on"] = True
            profile.enable()

    signal.signal(signal.SIGUSR1, start)
    from ingressd.cli import main as ingressd_main

    try:
        return ingressd_main(argv)
    finally:
        if state["on"]:
            profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
