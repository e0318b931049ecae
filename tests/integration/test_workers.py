"""Issue 5: data-plane worker processes: shared ports, restart after a crash, aggregated metrics."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from support import manifests as m
from support.ingressd import launch, sample_value
from support.wait import wait_until

pytestmark = pytest.mark.timeout(120)


def children(pid: int) -> set[int]:
    """The worker processes of ingressd ``pid`` (multiprocessing's resource tracker excluded)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.add(int(entry.name))
    return found


def dead_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def files(backend) -> dict:
    return {
        "svc.yaml": backend.services("a"),
        "ing.yaml": [m.ingress("ing-w", [m.rule("w.example.com", m.path("/", "svc-a"))])],
    }


def test_a_killed_worker_is_replaced_and_serving_goes_on(tmp_path, backend):
    inst = launch(tmp_path, files(backend), args=["--workers", "2"])
    try:
        wait_until(lambda: len(children(inst.pid)) == 2, 10, message="two worker processes")
        workers = children(inst.pid)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        # Once the dead worker's sockets are gone (connections queued on them die with it), the
        # port keeps answering through the surviving worker while the other restarts.
        wait_until(lambda: dead_or_gone(victim), 5, message="the killed worker to be gone")
        for _ in range(20):
            assert inst.get("/", "w.example.com").status == 200
        wait_until(lambda: len(children(inst.pid)) == 2 and victim not in children(inst.pid), 15,
                   message="a replacement worker")
        assert "exited" in inst.stderr() and "restarting" in inst.stderr()
        # The replacement serves the current configuration, including later changes.
        inst.dir.write("ing2.yaml", [m.ingress("ing-w2", [m.rule("w2.example.com", m.path("/", "svc-a"))])])
        wait_until(lambda: all(inst.get("/", "w2.example.com").status == 200 for _ in range(10)), 10,
                   message="new route on every worker")
    finally:
        inst.stop()


def test_metrics_add_up_across_workers(tmp_path, backend):
    inst = launch(tmp_path, files(backend), args=["--workers", "2"])
    try:
        for _ in range(30):  # fresh connections: the kernel spreads them over both workers
            assert inst.get("/", "w.example.com").status == 200
        wait_until(lambda: sample_value(inst.metrics(), "nginx_ingress_controller_requests",
                                        ingress="ing-w", status="200") == 30, 10, message="30 requests counted")
        text = inst.metrics()
        assert sample_value(text, "nginx_ingress_controller_request_duration_seconds_count", ingress="ing-w") == 30
    finally:
        inst.stop()


def test_one_worker_serves_in_process(tmp_path, backend):
    inst = launch(tmp_path, files(backend), args=["--workers", "1"])
    try:
        assert inst.get("/", "w.example.com").status == 200
        assert not children(inst.pid)
    finally:
        inst.stop()


def test_port_in_use_is_a_clear_error(tmp_path, backend):
    import socket
    import subprocess
    import sys

    from support.ingressd import free_port, subprocess_env

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        mdir = tmp_path / "manifests"
        m.ManifestDir(mdir).write("ing.yaml", files(backend)["ing.yaml"])
        result = subprocess.run(
            [sys.executable, "-m", "ingressd", "serve", "--manifests", str(mdir), "--listen", "127.0.0.1",
             "--http-port", str(blocker.getsockname()[1]), "--https-port", str(free_port()),
             "--metrics-port", str(free_port()), "--workers", "2"],
            capture_output=True, text=True, timeout=60, env=subprocess_env())
        assert result.returncode == 1
        assert "address already in use" in result.stderr.lower()
    finally:
        blocker.close()


def test_a_configuration_larger_than_the_pipe_buffer_reaches_every_worker(tmp_path, backend):
    """2,000 Ingresses (a configuration of about a megabyte pickled): every worker gets it at
    start and gets each change, and none of them restarts (they used to stop on a partial read)."""
    ingresses = [m.ingress(f"ing-{i}", [m.rule(f"h{i}.big.example", m.path("/", "svc-a"))]) for i in range(2000)]
    inst = launch(tmp_path, {"svc.yaml": backend.services("a"), "ing.yaml": ingresses}, args=["--workers", "2"])
    try:
        wait_until(lambda: len(children(inst.pid)) == 2, 10, message="two worker processes")
        workers = children(inst.pid)
        for i in (0, 1999):
            assert inst.get("/", f"h{i}.big.example").status == 200
        ingresses[7] = m.ingress("ing-7", [m.rule("renamed.big.example", m.path("/", "svc-a"))])
        inst.dir.write("ing.yaml", ingresses)
        for _ in range(10):  # every worker: connections land on either
            wait_until(lambda: inst.get("/", "renamed.big.example").status == 200, 10,
                       message="the change served")
        assert children(inst.pid) == workers
        assert "restarting" not in inst.logs()
    finally:
        inst.stop()
