"""An idle ingressd must not burn CPU (regression: a reconcile loop spun without --state-dir)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support import manifests as m
from support.ingressd import launch

pytestmark = pytest.mark.timeout(60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


@pytest.mark.parametrize("workers", ["1", "2"])
def test_idle_process_uses_almost_no_cpu(tmp_path, backend, workers):
    inst = launch(tmp_path, {
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing-idle", [m.rule("idle.example.com", m.path("/", "svc-a"))])],
    }, args=["--workers", workers])
    try:
        time.sleep(1)  # let start-up work (imports, first configuration) finish
        before = cpu_seconds(inst.pid)
        time.sleep(2)
        used = cpu_seconds(inst.pid) - before
        # Polling the manifests and the timers costs milliseconds; a busy loop would cost ~2 s.
        assert used < 0.5, f"the control plane used {used:.2f} s of CPU in 2 s while idle"
    finally:
        inst.stop()
