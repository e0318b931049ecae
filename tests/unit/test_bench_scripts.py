"""The benchmark's scripts run as scripts: bench/ is then first on sys.path, so a file named like
an installed package (bench/h2.py did, and broke bench/request_cost.py's import of ingressd's
HTTP/2 code) would shadow it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_no_bench_script_shadows_an_installed_module():
    shadowing = []
    for script in sorted(BENCH.glob("*.py")):
        saved = sys.path[:]
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
        try:
            spec = importlib.util.find_spec(script.stem)
        except (ImportError, ValueError):
            spec = None
        finally:
            sys.path[:] = saved
        # (a spec without origin is a namespace package: bench/ itself, seen from the repository root)
        if spec is not None and spec.origin is not None and Path(spec.origin).resolve() != script:
            shadowing.append(f"bench/{script.name} shadows {spec.origin}")
    assert not shadowing


def test_request_cost_runs_as_a_script():
    done = subprocess.run([sys.executable, str(BENCH / "request_cost.py"), "--once", "--requests", "200",
                           "--trusted-peer"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
